"""notebooks/journal.ipynb: the journal's weeks 1-3 on the project's components, run headless."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from helpers import isolate_env

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "journal.ipynb"
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_opens_tensorboard_inline_but_not_when_headless(notebook):
    sources = {cell.source: cell.metadata.get("tags", []) for cell in code_cells(notebook)}
    assert SKIP_TAG not in sources["%load_ext tensorboard"]
    assert SKIP_TAG in sources["%tensorboard --logdir runs"]  # it starts a server that outlives the kernel


def test_notebook_is_stored_without_outputs(notebook):
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells(notebook))


@pytest.mark.slow
def test_notebook_runs_headless_top_to_bottom(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    isolate_env(monkeypatch)  # the kernel inherits this environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # a fresh copy: execute() fills in outputs
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    executed = client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    assert (tmp_path / "mlflow.db").is_file()  # outside a repository, the notebook's folder is the root
    assert any((tmp_path / "runs" / "notebook").glob("week1-*/events.out.tfevents.*"))
    assert any((tmp_path / "runs" / "notebook").glob("*/events.out.tfevents.*"))
    outputs = [output for cell in code_cells(executed) for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the predictions figure
    assert any("1 model run(s), best val_loss first" in output.get("text", "") for output in outputs)
