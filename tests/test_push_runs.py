"""`torchtrack push-runs` from a trained project's store to a second SQLite store: each run's
dataset inputs, its logged model and its registered model versions (tags, aliases) arrive with
it, once; a copy that an interrupted push left half-made is made again, its version not doubled.
The same push to a real team server (PostgreSQL, S3) is checked in test_team_server.py.
"""

from __future__ import annotations

import sqlite3

import pytest

from helpers import dataset_inputs
from torchtrack.tracking.backend import registry
from torchtrack.tracking.backend.push_runs import INCOMPLETE_TAG, PARENT_TAG, SOURCE_TAG, push_runs

pytest_plugins = ["trained_project"]

NAME = "tiny"  # the registered model, named after trained_project's experiment


@pytest.fixture
def stores(trained_project, tmp_path, monkeypatch):
    """(source, target) URIs: a copy of the trained project's store with a champion, and a new store."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # the new store's artifacts: tmp_path/mlruns
    source = tmp_path / "source.db"
    with sqlite3.connect(trained_project.root / "mlflow.db") as given, sqlite3.connect(source) as copy:
        given.backup(copy)
    source_uri = f"sqlite:///{source}"
    registry.promote(MlflowClient(source_uri), NAME)
    return source_uri, f"sqlite:///{tmp_path / 'target.db'}"


def every_run(client) -> dict[str, object]:
    return {
        run.info.run_id: run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    }


def copies(target) -> dict[str, object]:
    """Source run id -> its copy."""
    return {
        run.data.tags[SOURCE_TAG]: run for run in every_run(target).values() if SOURCE_TAG in run.data.tags
    }


def test_push_copies_datasets_models_versions_and_aliases_once(stores):
    from mlflow import MlflowClient

    source_uri, target_uri = stores
    source, target = MlflowClient(source_uri), MlflowClient(target_uri)
    sources = every_run(source)
    report = push_runs(source_uri, target_uri)
    assert (len(report.copied), report.models, report.versions) == (len(sources), 1, 1)

    copied = copies(target)
    assert copied.keys() == sources.keys()
    with_data = [run_id for run_id, run in sources.items() if run.inputs.dataset_inputs]
    assert with_data  # prepare's splits, at least
    for run_id, run in sources.items():
        assert dataset_inputs(copied[run_id]) == dataset_inputs(run), run.info.run_name

    versions = source.search_model_versions(f"name = '{NAME}'")
    copied_versions = target.search_model_versions(f"name = '{NAME}'")
    assert len(copied_versions) == len(versions) == 1
    version = source.get_model_version(NAME, versions[0].version)  # with its aliases
    copy = target.get_model_version(NAME, copied_versions[0].version)
    assert copy.run_id == copied[version.run_id].info.run_id
    assert copy.tags == version.tags and any(key.startswith("test_") for key in copy.tags)
    model = target.get_logged_model(copy.source.removeprefix("models:/"))
    assert model.source_run_id == copy.run_id
    assert f"models:/{model.tags[SOURCE_TAG]}" == version.source  # the copy of the version's model
    assert sorted(copy.aliases) == sorted(version.aliases) == [registry.CHALLENGER, registry.CHAMPION]
    for alias in version.aliases:
        assert target.get_model_version_by_alias(NAME, alias).version == copy.version

    again = push_runs(source_uri, target_uri)
    assert (again.copied, again.models, again.versions, again.already) == ([], 0, 0, len(sources))
    assert len(every_run(target)) == len(sources)
    assert len(target.search_model_versions(f"name = '{NAME}'")) == 1


def test_a_half_made_copy_is_made_again_without_a_second_version(stores):
    from mlflow import MlflowClient

    source_uri, target_uri = stores
    target = MlflowClient(target_uri)
    push_runs(source_uri, target_uri)
    version = target.search_model_versions(f"name = '{NAME}'")[0]
    half_made = target.get_run(version.run_id)  # as if the push had stopped before its last tag,
    target.set_tag(half_made.info.run_id, INCOMPLETE_TAG, half_made.data.tags[SOURCE_TAG])
    target.delete_tag(half_made.info.run_id, SOURCE_TAG)
    children = [run for run in every_run(target).values() if run.data.tags.get(PARENT_TAG) == version.run_id]
    for child in children:  # before its stages' runs, copied after it
        target.delete_run(child.info.run_id)

    report = push_runs(source_uri, target_uri)
    assert (len(report.copied), report.models, report.versions) == (1 + len(children), 1, 1)
    (remade,) = target.search_model_versions(f"name = '{NAME}'")
    assert remade.run_id != half_made.info.run_id
    assert target.get_model_version_by_alias(NAME, registry.CHAMPION).version == remade.version
