"""The prepared splits as MLflow datasets: what the UI's Datasets column shows for a run.

Each split is logged with its context (training / validation / testing), its schema and row
count, and, as digest, the hash DVC records for `data/prepared` in dvc.lock: runs on the same
data show the same dataset, runs on other data another. The source names that DVC output
and its hash, which `dvc checkout` at the run's commit turns back into the rows. A split is read
a block of rows at a time (its schema from a sample, its row count from the file's footer): the
store daemon holds no split whole, however large.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from torchtrack.tables import parquet_blocks

SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # MLflow's contexts
SOURCE_TYPE = "dvc"
BLOCK_ROWS = 65_536  # rows of a split read at a time


def dvc_output_source(path: Path, md5: str) -> Any:
    """An mlflow DatasetSource naming a DVC output (its path in the repo) and its content hash."""
    from mlflow.data.dataset_source import DatasetSource

    class DvcOutput(DatasetSource):
        """Rows that DVC keeps: restore them with `dvc checkout` at the run's commit."""

        @staticmethod
        def _get_source_type() -> str:
            return SOURCE_TYPE

        def load(self, **kwargs: Any) -> Any:
            raise NotImplementedError(f"restore {path} with `dvc checkout` at the run's commit")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"path": Path(path).as_posix(), "md5": md5}

        @classmethod
        def from_dict(cls, source_dict: dict[str, Any]) -> Any:
            return dvc_output_source(Path(source_dict["path"]), source_dict["md5"])

    return DvcOutput()


def split_inputs(split_files: dict[str, Path], prepared_dir: Path, md5: str, target: str) -> list[Any]:
    """One mlflow DatasetInput per split's Parquet file (name `prepared-<split>`), for
    `MlflowClient.log_inputs`; `md5` is `prepared_dir`'s hash (recipe.directory_md5). The schema
    and profile are those MLflow gives the whole split (`mlflow.data.from_pandas`)."""
    import mlflow.data
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source = dvc_output_source(prepared_dir, md5)
    inputs = []
    for split, path in split_files.items():
        rows, sample = schema_sample(path)
        record = mlflow.data.from_pandas(
            sample, source=source, targets=target, name=f"prepared-{split}", digest=md5
        ).to_dict()
        # PandasDataset.profile, of every row rather than of the sample's
        profile = json.dumps({"num_rows": rows, "num_elements": rows * len(sample.columns)})
        dataset = Dataset(
            name=record["name"],
            digest=record["digest"],
            source_type=record["source_type"],
            source=record["source"],
            schema=record["schema"],
            profile=profile,
        )
        context = InputTag(MLFLOW_DATASET_CONTEXT, SPLIT_CONTEXTS[split])
        inputs.append(DatasetInput(dataset=dataset, tags=[context]))
    return inputs


def schema_sample(path: Path) -> tuple[int, pd.DataFrame]:
    """(the rows of the Parquet file at `path`, the rows MLflow infers its schema from): each
    block's `schema_rows`, read a block at a time; every row when a column holds Python objects."""
    samples, rows = [], 0
    for block in parquet_blocks(path, BLOCK_ROWS):
        frame = block.to_pandas()
        if any(dtype.kind == "O" for dtype in frame.dtypes):  # MLflow looks at each value
            whole = pd.read_parquet(path)
            return len(whole), whole
        samples.append(schema_rows(frame))
        rows += len(frame)
    return rows, pd.concat(samples, ignore_index=True)


def schema_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of `frame` that MLflow infers `frame`'s own schema from: the first, and each column's
    first gap (None, NaN, NaT, NA); all of it when a column holds Python objects.

    MLflow takes a column's type from its dtype, except for objects, and makes it optional when it
    has a gap, which it looks for value by value in Python: over half a second for train's splits.
    """
    if len(frame) == 0 or any(dtype.kind == "O" for dtype in frame.dtypes):
        return frame
    gaps = frame.isna().to_numpy()
    first_gaps = gaps.argmax(axis=0)[gaps.any(axis=0)]
    return frame.iloc[sorted({0, *first_gaps.tolist()})]
