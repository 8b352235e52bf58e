"""validate: every key of params.yaml checked, with nothing else done and nothing written.

Run by `dvc repro` as `python -m torchtrack validate` whenever any value of params.yaml
changed (its params dep is the whole file). Every stage validates the whole file before its
work, but a key that no stage reads, such as a typo added with `dvc exp run -S +train.lrr=0.1`,
makes no other stage stale: without this one it would be recorded with no word.
"""

from __future__ import annotations

from torchtrack.config import Config


def run(config: Config) -> dict[str, float]:
    """Nothing left to do: the command line validated `config` (config.load_config) to get here."""
    return {}
