"""The team's set-up with the real parts, one of each for the whole module: PostgreSQL, an S3
stand-in (moto) and `mlflow server --app-name basic-auth` on both, started by `torchtrack
server`. Four experiments queued with `dvc exp run --queue` and run by `dvc queue start -j 2`
with MLFLOW_TRACKING_URI at the server all land whole (checked through MLflow's REST API and
in the bucket); a wrong password fails in one line and creates nothing; `torchtrack push-runs`
copies a local store's runs with their datasets, model and registered version (tags, aliases),
once; a DVC remote on the same S3 gives a fresh clone the data and model, after which `dvc
repro` runs nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import dataset_inputs
from pipeline_copy import BIN, copy_repo, dvc, pipeline_env, stages_run, update_params
from team_services import (
    ADMIN,
    S3_ENV,
    bucket_keys,
    postgres_server,
    s3_client,
    s3_server,
    tracking_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.full]

RATES = ("0.005", "0.01", "0.02", "0.04")
EPOCHS = 2
USER, PASSWORD = "alice", "alice-password-1234"  # MLflow wants at least 12 characters
WRONG = "not-alices-password-987"
MODEL_RUNS = "tags.`torchtrack.kind` = 'model'"


# -- the services, once per module ------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("services")
    with postgres_server() as store, s3_server(folder) as s3, tracking_server(store, s3, folder) as running:
        created = requests.post(
            f"{running.url}/api/2.0/mlflow/users/create",
            json={"username": USER, "password": PASSWORD},
            auth=(ADMIN, running.admin_password),
            timeout=30,
        )
        assert created.status_code == 200, created.text
        yield running


def rest(server, method: str, endpoint: str, login=(USER, PASSWORD), **body) -> dict:
    """One call to MLflow's REST API (`endpoint` under /api/2.0/mlflow/), as `login`."""
    send = {"json": body} if method == "POST" else {"params": body}
    response = requests.request(
        method, f"{server.url}/api/2.0/mlflow/{endpoint}", auth=login, timeout=60, **send
    )
    assert response.status_code == 200, f"{endpoint}: {response.status_code} {response.text[:500]}"
    return response.json()


def experiment_id(server, name: str) -> str:
    return rest(server, "GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]


def search_runs(server, experiment_ids: list[str], filter_string: str = "", login=(USER, PASSWORD)) -> list:
    runs, token = [], None
    while True:
        body = {"experiment_ids": experiment_ids, "filter": filter_string, "max_results": 1000}
        page = rest(
            server, "POST", "runs/search", login=login, **body, **({"page_token": token} if token else {})
        )
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def every_run(server) -> list:
    """Every run on the server, seen by the admin."""
    admin = (ADMIN, server.admin_password)
    experiments = rest(server, "POST", "experiments/search", login=admin, max_results=1000)["experiments"]
    return search_runs(server, [e["experiment_id"] for e in experiments], login=admin)


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def client_env(repo: Path, server, password: str = PASSWORD) -> dict[str, str]:
    """A pipeline's environment pointed at the server as alice; no S3 credentials at all,
    since the server carries every artifact to the bucket."""
    env = {k: v for k, v in pipeline_env(repo).items() if not k.startswith("AWS_")}
    return env | {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": USER,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def run_dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def small_copy(repo: Path) -> Path:
    """A copy of the repository with little data and few epochs, committed."""
    repo.mkdir(parents=True, exist_ok=True)
    copy_repo(repo)
    update_params(repo, data={"n_samples": 2000}, train={"epochs": EPOCHS})
    subprocess.run(["git", "commit", "-qam", "small data"], cwd=repo, env=pipeline_env(repo), check=True)
    return repo


def queue_tasks(repo: Path) -> dict[str, str]:
    """`dvc queue status` as experiment name -> status."""
    lines = dvc(repo, "queue", "status").splitlines()
    rows = lines[1 : lines.index("")] if "" in lines else lines[1:]
    return {row.split()[1]: row.split()[-1] for row in rows if row.strip()}


@pytest.fixture(scope="module")
def queued(server, tmp_path_factory):
    """Four experiments queued and run two at a time against the server; their names and logs."""
    repo = small_copy(tmp_path_factory.mktemp("queued"))
    env = client_env(repo, server)
    for lr in RATES:
        run_dvc(repo, env, "exp", "run", "--queue", "-S", f"train.lr={lr}")
    try:
        run_dvc(repo, env, "queue", "start", "-j", "2")
        deadline = time.monotonic() + 1200
        while (tasks := queue_tasks(repo)) and {"Queued", "Running"} & set(tasks.values()):
            assert time.monotonic() < deadline, tasks
            time.sleep(3)
    finally:
        subprocess.run([str(BIN / "dvc"), "queue", "stop"], cwd=repo, env=env, capture_output=True)
    logs = {name: dvc(repo, "queue", "logs", name) for name in tasks}
    failed = {name: logs[name] for name, status in tasks.items() if status != "Success"}
    assert len(tasks) == len(RATES) and not failed, failed
    return logs


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A copy of the repo after `dvc repro` on the local store (mlflow.db), committed."""
    repo = small_copy(tmp_path_factory.mktemp("local") / "repo")
    dvc(repo, "repro")
    subprocess.run(["git", "add", "-A"], cwd=repo, env=pipeline_env(repo), check=True)
    subprocess.run(["git", "commit", "-qm", "run"], cwd=repo, env=pipeline_env(repo), check=True)
    return repo


def model_runs(server) -> list[dict]:
    return search_runs(server, [experiment_id(server, "torchtrack")], MODEL_RUNS)


# -- a pipeline on the server ---------------------------------------------------------------
def test_four_queued_experiments_on_two_workers_all_land(server, queued):
    runs = [run for run in model_runs(server) if "torchtrack.pushed_from" not in tags(run)]
    assert sorted(params(run)["train.lr"] for run in runs) == sorted(RATES)
    assert {tags(run)["dvc.exp_name"] for run in runs} == set(queued)
    assert {run["info"]["status"] for run in runs} == {"FINISHED"}


def test_each_model_run_lands_whole_with_its_stages_metrics_and_model(server, queued):
    torchtrack = experiment_id(server, "torchtrack")
    for run in (r for r in model_runs(server) if tags(r).get("dvc.exp_name") in queued):
        run_id, name = run["info"]["run_id"], tags(run)["dvc.exp_name"]
        assert {"train_loss", "val_loss", "test_mse", "test_r2"} <= set(metrics(run)), name
        assert params(run)["train.epochs"] == str(EPOCHS)
        children = search_runs(server, [torchtrack], f"tags.`mlflow.parentRunId` = '{run_id}'")
        by_stage = {tags(child)["dvc.stage"]: child for child in children}
        assert sorted(by_stage) == ["evaluate", "train"], name
        history = rest(
            server,
            "GET",
            "metrics/get-history",
            run_id=by_stage["train"]["info"]["run_id"],
            metric_key="val_loss",
        )["metrics"]
        assert len({m["step"] for m in history}) == EPOCHS  # one value per epoch, each with its step
        prepare = rest(server, "GET", "runs/get", run_id=tags(run)["torchtrack.prepare_run_id"])["run"]
        assert tags(prepare)["dvc.stage"] == "prepare"
        found = rest(server, "POST", "logged-models/search", experiment_ids=[torchtrack], max_results=100)
        models = [m for m in found["models"] if m["info"]["source_run_id"] == run_id]
        assert [m["info"]["status"] for m in models] == ["LOGGED_MODEL_READY"], name


def test_the_artifacts_are_objects_in_the_bucket(server, queued):
    torchtrack = experiment_id(server, "torchtrack")
    keys = set(bucket_keys(server.s3_endpoint, server.bucket, f"mlartifacts/{torchtrack}/"))
    for run in (r for r in model_runs(server) if tags(r).get("dvc.exp_name") in queued):
        run_id = run["info"]["run_id"]
        assert f"mlartifacts/{torchtrack}/{run_id}/artifacts/figures/predictions.png" in keys
        listed = rest(server, "GET", "artifacts/list", run_id=run_id)["files"]
        assert "figures" in {f["path"] for f in listed}
        train = search_runs(
            server, [torchtrack], f"tags.`mlflow.parentRunId` = '{run_id}' AND tags.`dvc.stage` = 'train'"
        )[0]
        prefix = f"mlartifacts/{torchtrack}/{train['info']['run_id']}/artifacts/"
        assert f"{prefix}figures/loss.png" in keys
        assert any(key.startswith(f"{prefix}tensorboard/events.out.tfevents.") for key in keys)
    model_files = {key.rsplit("/artifacts/", 1)[1] for key in keys if "/models/m-" in key}
    assert {"MLmodel", "served_model.py", "model.pt"} <= model_files  # model.pt under artifacts/


def test_the_logged_model_loads_from_the_server_and_predicts(server, queued, monkeypatch):
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd

    for name, value in client_env(Path.cwd(), server).items():
        if name.startswith("MLFLOW_"):
            monkeypatch.setenv(name, value)
    torchtrack = experiment_id(server, "torchtrack")
    found = rest(server, "POST", "logged-models/search", experiment_ids=[torchtrack], max_results=1)
    model = mlflow.pyfunc.load_model(f"models:/{found['models'][0]['info']['model_id']}")
    columns = model.metadata.get_input_schema().input_names()  # raw rows, by column name
    rows = pd.DataFrame({name: np.zeros(3) for name in columns})
    assert np.isfinite(np.asarray(model.predict(rows), dtype=float)).all() and len(model.predict(rows)) == 3


def test_compare_reads_the_server(server, queued, tmp_path):
    env = client_env(tmp_path, server)
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "compare", "--experiment", "torchtrack"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in queued)


def test_the_password_is_in_no_param_tag_artifact_or_log(server, queued):
    for run in every_run(server):
        assert not any(PASSWORD in value for value in (*params(run).values(), *tags(run).values()))
    s3 = s3_client(server.s3_endpoint)
    for key in bucket_keys(server.s3_endpoint, server.bucket):
        assert PASSWORD.encode() not in s3.get_object(Bucket=server.bucket, Key=key)["Body"].read(), key
    assert not any(PASSWORD in log for log in queued.values())
    assert PASSWORD not in server.output() and server.admin_password not in server.output()


# -- logins ---------------------------------------------------------------------------------
def test_a_wrong_password_fails_in_one_line_and_creates_nothing(server, tmp_path):
    repo = small_copy(tmp_path / "repo")
    before = len(every_run(server))
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "prepare"],
        cwd=repo, env=client_env(repo, server, WRONG), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"torchtrack prepare: error: the MLflow tracking server at {server.url} refused the login of "
        f"user '{USER}' (HTTP 401): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    ]
    assert WRONG not in result.stdout + result.stderr
    assert len(every_run(server)) == before
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    assert status.stdout == ""  # no outputs written


def test_a_second_login_may_log_into_the_experiment_the_first_created(server, queued, monkeypatch):
    """`torchtrack server --auth` lets every login edit (MLflow's default: only read)."""
    from mlflow import MlflowClient

    admin = (ADMIN, server.admin_password)
    rest(server, "POST", "users/create", login=admin, username="bob", password=WRONG)
    torchtrack = experiment_id(server, "torchtrack")  # alice's queued experiments created it
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG)
    run = MlflowClient(server.url).create_run(torchtrack, run_name="bob's")
    rest(server, "POST", "runs/delete", login=admin, run_id=run.info.run_id)


# -- moving a local store to the server -----------------------------------------------------
def push(repo: Path, server) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "torchtrack", "push-runs"],
        cwd=repo, env=client_env(repo, server), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_push_runs_copies_the_local_runs_whole_and_only_once(server, local_run, monkeypatch):
    from mlflow import MlflowClient

    from torchtrack.tracking.backend.registry import promote

    local = MlflowClient(f"sqlite:///{local_run / 'mlflow.db'}")
    promote(local, "torchtrack")  # champion and challenger, both on the local version
    sources = {
        run.info.run_id: run
        for experiment in local.search_experiments()
        for run in local.search_runs([experiment.experiment_id])
    }
    pushed = push(local_run, server).stderr
    assert f"copied {len(sources)} run(s), 1 logged model(s) and 1 registered model version(s)" in pushed

    ids = [experiment_id(server, name) for name in ("torchtrack", "torchtrack-prepare")]
    copies = {
        tags(c)["torchtrack.pushed_from"]: c
        for c in search_runs(server, ids, "tags.`torchtrack.pushed_from` LIKE '%'")
    }
    assert copies.keys() == sources.keys()
    copy_of = {source: copy["info"]["run_id"] for source, copy in copies.items()}
    for source_id, source in sources.items():
        copy = copies[source_id]
        assert copy["info"]["run_name"] == source.info.run_name
        assert (copy["info"]["status"], int(copy["info"]["start_time"])) == (
            "FINISHED",
            source.info.start_time,
        )
        assert params(copy) == source.data.params
        assert metrics(copy) == pytest.approx(source.data.metrics)
        expected_tags = {k: copy_of.get(v, v) for k, v in source.data.tags.items()}
        assert tags(copy) == expected_tags | {
            "torchtrack.pushed_from": source_id
        }  # parent and prepare remapped
        for key in source.data.metrics:
            history = rest(server, "GET", "metrics/get-history", run_id=copy_of[source_id], metric_key=key)
            got = sorted((m["step"], int(m["timestamp"]), m["value"]) for m in history["metrics"])
            want = sorted((m.step, m.timestamp, m.value) for m in local.get_metric_history(source_id, key))
            assert got == want, key
        listed = {a.path for a in local.list_artifacts(source_id)}
        assert {
            f["path"]
            for f in rest(server, "GET", "artifacts/list", run_id=copy_of[source_id]).get("files", [])
        } == listed

    model_run = next(s for s, run in sources.items() if run.data.tags["torchtrack.kind"] == "model")
    found = rest(server, "POST", "logged-models/search", experiment_ids=[ids[0]], max_results=100)["models"]
    models = [m for m in found if m["info"]["source_run_id"] == copy_of[model_run]]
    assert [m["info"]["status"] for m in models] == ["LOGGED_MODEL_READY"]
    model_id = models[0]["info"]["model_id"]
    assert any(
        key.endswith(f"/models/{model_id}/artifacts/artifacts/model.pt")
        for key in bucket_keys(server.s3_endpoint, server.bucket)
    )

    for name, value in client_env(local_run, server).items():
        if name.startswith("MLFLOW_"):
            monkeypatch.setenv(name, value)
    team = MlflowClient(server.url)
    for source_id, source in sources.items():
        assert dataset_inputs(team.get_run(copy_of[source_id])) == dataset_inputs(source)
    assert any(source.inputs.dataset_inputs for source in sources.values())
    (version,) = local.search_model_versions("name = 'torchtrack'")
    version = local.get_model_version("torchtrack", version.version)  # with its aliases
    (copy,) = team.search_model_versions(f"name = 'torchtrack' AND run_id = '{copy_of[model_run]}'")
    assert version.run_id == model_run and copy.source == f"models:/{model_id}"
    assert copy.tags == version.tags and "test_mse" in copy.tags
    for alias in ("champion", "challenger"):
        assert alias in version.aliases
        assert team.get_model_version_by_alias("torchtrack", alias).version == copy.version

    before = len(every_run(server)), len(team.search_model_versions("name = 'torchtrack'"))
    again = push(local_run, server).stderr
    assert (
        f"copied 0 run(s), 0 logged model(s) and 0 registered model version(s) to {server.url}; "
        f"{len(sources)} already there"
    ) in again
    assert (len(every_run(server)), len(team.search_model_versions("name = 'torchtrack'"))) == before


# -- data and model storage -----------------------------------------------------------------
@pytest.mark.parametrize("remote", ["team", "local"])
def test_a_fresh_clone_pulls_from_the_remote_and_has_nothing_to_run(server, local_run, remote):
    """`team`: s3:// on the stand-in, its endpoint and credentials outside git; `local`: the folder
    remote that .dvc/config keeps for trying this out."""
    env = pipeline_env(local_run) | S3_ENV  # the credentials: in the environment, never in git
    if remote == "team":
        run_dvc(local_run, env, "remote", "add", "-f", "team", f"s3://{server.bucket}/dvc")
        run_dvc(local_run, env, "remote", "modify", "team", "endpointurl", server.s3_endpoint)
        subprocess.run(["git", "commit", "-qam", "team remote"], cwd=local_run, env=env, check=True)
    run_dvc(local_run, env, "push", "-r", remote)
    if remote == "team":
        assert any(
            key.startswith("dvc/files/md5/") for key in bucket_keys(server.s3_endpoint, server.bucket, "dvc/")
        )
    else:
        assert any((local_run.parent / "torchtrack-dvc-storage" / "files" / "md5").iterdir())

    clone = local_run.parent / f"clone-{remote}"  # beside it, as the folder remote expects
    subprocess.run(["git", "clone", "-q", str(local_run), str(clone)], env=env, check=True)
    assert not (clone / "models" / "model.pt").exists()
    run_dvc(clone, env, "pull", "-r", remote)
    assert (clone / "models" / "model.pt").read_bytes() == (local_run / "models" / "model.pt").read_bytes()
    assert "Data and pipelines are up to date." in run_dvc(clone, env, "status")
    assert stages_run(run_dvc(clone, env, "repro")) == []
