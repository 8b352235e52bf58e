"""The tracking layer: where every record of a run goes, TensorBoard and MLflow.

Two sides, each a folder, so that a file's place says what it may import:

- this package, the stage side: `tracker.Tracker` (the one door a stage logs through),
  `client` (a stage's end of the store daemon), TensorBoard's writer and layout, the hashes
  and tags that tie runs to files, where the store is. It never imports MLflow.
- `backend/`, the MLflow side: the store and its calls (`run_store`), the store daemon, the
  registry, datasets, lineage queries, `push-runs`. Only it imports MLflow.

The contracts in pyproject.toml (`[tool.importlinter]`, run by `make lint`) hold both.
"""
