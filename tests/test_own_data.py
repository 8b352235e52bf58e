"""A user's own tables (real_tables.py: names, categories, dates, gaps, identifiers) through
`dvc repro` with only data.path and data.target set: what each column became, and a default
model no worse than the least-squares fit on the same features."""

from __future__ import annotations

import pytest

from real_tables import TABLES
from torchtrack.baseline import no_worse_than_least_squares

pytest_plugins = ["table_projects"]

# What prepare must make of each table's columns (the rest are numeric).
EXPECTED_ROLES = {
    "cars": {"name": "dropped", "origin": "categorical", "horsepower": "numeric"},
    "houses": {
        "id": "dropped",
        "description": "dropped",
        "sold_on": "date",
        "neighbourhood": "categorical",
        "garage": "categorical",
    },
    "shop": {
        "transaction": "dropped",
        "store": "categorical",
        "day": "date",
        "weekday": "categorical",
        "promotion": "categorical",
    },
}
GAPS = {"cars": ["horsepower"], "houses": ["neighbourhood", "area_m2"], "shop": ["temperature"]}
MISSING_TARGETS = {"cars": 0, "houses": 5, "shop": 0}
# houses has every kind of column and gap (make test); each other table costs a `dvc repro` (test-all).
EACH_TABLE = [name if name == "houses" else pytest.param(name, marks=pytest.mark.full) for name in TABLES]


@pytest.mark.slow
@pytest.mark.parametrize("name", EACH_TABLE)
def test_each_column_gets_its_role_and_each_gap_its_indicator(table_project, name):
    project = table_project(name)
    columns = project.json("data/prepared/columns.json")
    roles = {column: entry["role"] for column, entry in columns.items()}
    assert roles | EXPECTED_ROLES[name] == roles, roles
    assert roles[project.target] == "target" and columns[project.target]["standardized"]
    for column in GAPS[name]:
        assert f"{column}=(missing)" in columns[column]["features"], columns[column]
    for column, entry in columns.items():
        if entry["role"] == "dropped":
            assert f"column {column!r} not used: {entry['why']}" in project.output
    prepare = project.json("metrics/prepare.json")
    assert prepare["rows_dropped_missing_target"] == MISSING_TARGETS[name]
    assert prepare["columns_dropped"] == list(roles.values()).count("dropped")
    if name == "shop":  # 30 stores: the 20 most frequent kept, the rest counted as other
        assert len(columns["store"]["features"]) == 21 and "store=(other)" in columns["store"]["features"]


@pytest.mark.slow
@pytest.mark.parametrize("name", EACH_TABLE)
def test_the_default_model_is_no_worse_than_least_squares(table_project, name):
    metrics = table_project(name).json("metrics/evaluate.json")
    assert no_worse_than_least_squares(metrics["test_mse"], metrics["test_mse_least_squares"]), metrics
