"""End to end: the default recipe fits a real-sized table, not only the synthetic 50,000 rows.

A numeric CSV of a few hundred rows shaped like the classic cars table (392 rows, 7 numeric
columns, fuel consumption around 23 with a spread of about 8, and a consumption that falls
with weight as 1 / weight does), run through `dvc repro` with only the data keys set: the
default model beats the least-squares baseline that evaluate scores beside it, in the
target's own units, and evaluate warns about nothing.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from pipeline_copy import BIN, copy_repo, pipeline_env, store, update_params
from torchtrack.baseline import WORSE_TAG
from torchtrack.tracking.backend.lineage import find_model_run

pytestmark = pytest.mark.slow


def cars_like_table(rows: int = 392, seed: int = 2) -> pd.DataFrame:
    """Seeded rows with the cars table's kinds of columns: one size factor behind cylinders,
    displacement, horsepower, weight and acceleration, a model year, an origin code, and
    `mpg` = 1 / (weight and power) with a yearly gain, plus noise."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=rows)
    weight = 2970 * np.exp(0.28 * size + rng.normal(0, 0.08, rows))  # pounds: about 1,600 to 5,100
    horsepower = 104 * np.exp(0.33 * size + rng.normal(0, 0.12, rows))
    year = rng.integers(70, 83, rows).astype(float)
    return pd.DataFrame(
        {
            "cylinders": np.clip(np.round(5.5 + 1.7 * size + rng.normal(0, 0.5, rows)), 3, 8),
            "displacement": 194 * np.exp(0.5 * size + rng.normal(0, 0.1, rows)),
            "horsepower": horsepower,
            "weight": weight,
            "acceleration": 15.5 - 1.5 * size + rng.normal(0, 2, rows),
            "year": year,
            "origin": rng.integers(1, 4, rows).astype(float),
            "mpg": np.exp(0.03 * (year - 76)) / (weight / 80000 + horsepower / 11000)
            + rng.normal(0, 2.5, rows),
        }
    )


def test_cars_like_table_has_the_shape_of_the_cars_table():
    table = cars_like_table()
    assert table.shape == (392, 8)
    assert 20 < table.mpg.mean() < 26 and 6 < table.mpg.std() < 10


def test_default_recipe_beats_least_squares_on_a_few_hundred_rows(tmp_path):
    repo = copy_repo(tmp_path)
    (repo / "data" / "raw").mkdir(parents=True, exist_ok=True)
    cars_like_table().to_csv(repo / "data" / "raw" / "cars.csv", index=False)
    update_params(repo, data={"source": "csv", "path": "data/raw/cars.csv", "target": "mpg"})
    result = subprocess.run(
        [str(BIN / "dvc"), "repro"],
        cwd=repo,
        env=pipeline_env(repo),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    evaluation = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert evaluation["test_mse"] < evaluation["test_mse_least_squares"]
    assert "torchtrack evaluate: warning" not in result.stdout + result.stderr
    assert WORSE_TAG not in find_model_run(repo / "models" / "model.pt", store(repo)).data.tags
