"""predict: new rows -> predictions from the trained checkpoint, columns matched by name."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from torchtrack.cli import main
from torchtrack.data import Scaler, read_split
from torchtrack.errors import InputError
from torchtrack.evaluation import predict
from torchtrack.models import load_checkpoint
from torchtrack.predict import PREDICTION_COLUMN, Predictor, check_columns, predict_file, row_blocks
from torchtrack.preprocessing import OTHER, Column, Preprocessor
from torchtrack.tables import read_csv

pytest_plugins = ["trained_project"]


@pytest.fixture(scope="module")
def predictor(trained_project) -> Predictor:
    return Predictor.load(trained_project.model_path)


def test_raw_rows_are_scaled_with_the_train_split_statistics(trained_project, predictor):
    test = read_split(trained_project.root / "data" / "prepared", "test")  # scaled, as evaluate reads it
    preprocessor = Preprocessor.load(trained_project.root / "data" / "prepared" / "preprocessing.json")
    scaler = preprocessor.scaler
    raw = test[scaler.features] * scaler.std + scaler.mean  # what the user would have
    model, _ = load_checkpoint(trained_project.model_path)
    outputs = predict(model, torch.tensor(test[scaler.features].to_numpy(np.float32)))
    expected = preprocessor.target_values(outputs)
    np.testing.assert_allclose(predictor(raw), expected, rtol=1e-5, atol=1e-5)


def test_columns_are_matched_by_name_not_position(trained_project, predictor):
    rows = trained_project.raw_rows(20)
    reversed_columns = rows[rows.columns[::-1]]
    np.testing.assert_array_equal(predictor(reversed_columns), predictor(rows))


def test_the_target_column_may_be_present_and_does_not_change_predictions(trained_project, predictor):
    rows = trained_project.raw_rows(20)
    without_target = rows.drop(columns=["y"])
    np.testing.assert_array_equal(predictor(rows), predictor(without_target))


def test_a_missing_column_is_named_and_other_columns_are_let_be():
    frame = pd.DataFrame({"x0": [1.0], "x2": [2.0], "colour": [3.0]})
    with pytest.raises(InputError, match=r"missing column\(s\): x1\. The model reads: x0, x1, x2"):
        check_columns(frame, columns=["x0", "x1", "x2"])
    check_columns(frame, columns=["x0", "x2"])


def test_extra_columns_and_gaps_are_taken(trained_project, predictor):
    rows = trained_project.raw_rows(5).assign(id=["a", "b", "c", "d", "e"])
    rows.loc[2, "x0"] = np.nan
    predictions = predictor(rows)
    assert np.isfinite(predictions).all()
    filled = rows.assign(x0=rows["x0"].fillna(predictor.preprocessor.columns[0].fill[0]))
    np.testing.assert_array_equal(predictions, predictor(filled))  # the gap is the train median


@pytest.mark.parametrize(
    ("values", "problem"),
    [(["1.5", "b"], r"row 2: 'b' is not a number"), ([1.0, np.inf], r"row 2: inf is infinite")],
)
def test_a_value_that_cannot_be_used_names_its_column_and_row(trained_project, predictor, values, problem):
    rows = trained_project.raw_rows(2).assign(x1=values)
    with pytest.raises(InputError, match=f"column 'x1', {problem}"):
        predictor(rows)


def test_the_model_runs_in_eval_mode_without_gradients():
    seen = {}

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen.update(training=self.training, grad=torch.is_grad_enabled())
            return x.sum(dim=1, keepdim=True) * self.weight

    spy = Spy().train()
    columns = [Column("a", "numeric", "numbers", fill=[0.0]), Column("b", "numeric", "numbers", fill=[0.0])]
    scaler = Scaler(["a", "b"], "y", mean=[1.0, 0.0], std=[2.0, 1.0])
    predictor = Predictor(spy, Preprocessor("y", columns, scaler))
    out = predictor(pd.DataFrame({"a": [3.0], "b": [5.0]}))
    assert seen == {"training": False, "grad": False}
    assert out.tolist() == [(3.0 - 1.0) / 2.0 + 5.0]


def test_no_rows_give_no_predictions(predictor):
    empty = pd.DataFrame({name: pd.Series(dtype="float64") for name in predictor.columns})
    assert predictor(empty).shape == (0,)


def test_row_blocks_reports_a_missing_or_empty_file(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        list(row_blocks(tmp_path / "absent.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="is empty"):
        list(row_blocks(tmp_path / "empty.csv"))


def test_cli_writes_the_input_columns_plus_prediction(trained_project, predictor, tmp_path):
    rows = trained_project.raw_rows(50)
    rows.to_csv(tmp_path / "new.csv", index=False)
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == [*rows.columns, PREDICTION_COLUMN]
    pd.testing.assert_frame_equal(out[rows.columns], rows)
    np.testing.assert_allclose(
        out[PREDICTION_COLUMN], predictor(rows), rtol=1e-6, atol=1e-6
    )  # the CSV round trip rounds the inputs


def test_cli_writes_every_input_cell_back_as_the_file_holds_it(trained_project, predictor, tmp_path):
    rows = trained_project.raw_rows(4).round(3).astype(str)
    cells = [["007", "50", "NA"], ["008", "", "n/a"], ["009", "50.10", '"a, b"'], ["010", "1e3", "?"]]
    rows.loc[1, "x1"] = "NA"  # a gap the model fills; the output still says NA
    lines = ["id,x0,x1,x2,weight,comment"]
    lines += [
        ",".join([cell[0], *row[["x0", "x1", "x2"]], *cell[1:]])
        for cell, (_, row) in zip(cells, rows.iterrows(), strict=True)
    ]
    (tmp_path / "new.csv").write_text("\n".join(lines) + "\n")
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    written = (tmp_path / "out.csv").read_text().splitlines()
    assert written[0] == f"{lines[0]},{PREDICTION_COLUMN}"
    assert [line.rsplit(",", 1)[0] for line in written[1:]] == lines[
        1:
    ]  # each input line, then its prediction
    out = pd.read_csv(tmp_path / "out.csv")
    expected = predictor(read_csv(tmp_path / "new.csv"))
    np.testing.assert_allclose(out[PREDICTION_COLUMN], expected, rtol=1e-6, atol=1e-6)


def test_parquet_columns_keep_their_types_whole_numbers_with_gaps_included(trained_project, tmp_path):
    rows = trained_project.raw_rows(3).assign(weight=pd.array([50, None, 7], dtype="Int64"))
    rows.to_parquet(tmp_path / "new.parquet")
    model = str(trained_project.model_path)
    for output in ("out.csv", "out.parquet"):
        argv = ["predict", "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / output)]
        assert main([*argv, "--model", model]) == 0
    text = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert text["weight"].tolist() == ["50", "", "7"]
    assert pd.read_parquet(tmp_path / "out.parquet")["weight"].tolist() == [50, pd.NA, 7]


def test_a_parquet_input_of_many_row_groups_streams_to_the_output_a_whole_read_gives(
    trained_project, predictor, tmp_path
):
    rows = trained_project.raw_rows(250).assign(
        id=pd.array([None if i % 9 == 0 else i for i in range(250)], dtype="Int64"),
        note=[None if i % 7 == 0 else f"row {i}" for i in range(250)],
    )
    pq.write_table(pa.Table.from_pandas(rows), tmp_path / "new.parquet", row_group_size=40)
    # What predict wrote when it read the whole file at once.
    frame = pd.read_parquet(tmp_path / "new.parquet")
    written = pd.read_parquet(tmp_path / "new.parquet", dtype_backend="pyarrow")
    whole = written.assign(**{PREDICTION_COLUMN: predictor(frame)})
    whole.to_csv(tmp_path / "whole.csv", index=False)
    whole.to_parquet(tmp_path / "whole.parquet", index=False)
    model = trained_project.model_path
    for block_rows in (7, 100, 1000):
        assert predict_file(model, tmp_path / "new.parquet", tmp_path / "out.csv", block_rows) == 250
        assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
        assert predict_file(model, tmp_path / "new.parquet", tmp_path / "out.parquet", block_rows) == 250
        for types in ("numpy_nullable", "pyarrow"):  # the same values, and the same types
            out = pd.read_parquet(tmp_path / "out.parquet", dtype_backend=types)
            want = pd.read_parquet(tmp_path / "whole.parquet", dtype_backend=types)
            pd.testing.assert_frame_equal(out, want)


def test_a_csv_input_streams_to_the_output_a_whole_read_gives(trained_project, predictor, tmp_path):
    rows = trained_project.raw_rows(250).round(4).astype(str)
    rows.insert(0, "id", [f"{i:03d}" for i in range(250)])  # text the output keeps as written: 007
    rows["note"] = ["" if i % 7 == 0 else "NA" if i % 11 == 0 else f"row {i}" for i in range(250)]
    rows.to_csv(tmp_path / "new.csv", index=False)
    predictions = predictor(read_csv(tmp_path / "new.csv"))  # what predict wrote reading it whole
    text = pd.read_csv(tmp_path / "new.csv", dtype=str, keep_default_na=False)
    text.assign(**{PREDICTION_COLUMN: predictions}).to_csv(tmp_path / "whole.csv", index=False)
    for block_rows in (7, 100, 1000):
        assert (
            predict_file(trained_project.model_path, tmp_path / "new.csv", tmp_path / "out.csv", block_rows)
            == 250
        )
        assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_a_csv_cut_short_names_its_last_row_counted_over_every_block(trained_project, tmp_path):
    rows = trained_project.raw_rows(30)
    text = rows.to_csv(index=False)
    (tmp_path / "new.csv").write_text(text[: text.rstrip("\n").rfind(",")])  # the last row cut short
    with pytest.raises(InputError, match=rf"row 30 has {rows.shape[1] - 1} of {rows.shape[1]} fields"):
        predict_file(trained_project.model_path, tmp_path / "new.csv", tmp_path / "out.csv", 8)
    assert not (tmp_path / "out.csv").exists()


def test_a_bad_value_in_a_later_block_names_its_row_in_the_file(trained_project, tmp_path):
    rows = trained_project.raw_rows(30).assign(x1=[1.0] * 25 + [np.inf] + [1.0] * 4)
    rows.to_parquet(tmp_path / "new.parquet")
    with pytest.raises(InputError, match=r"column 'x1', row 26: inf is infinite"):
        predict_file(trained_project.model_path, tmp_path / "new.parquet", tmp_path / "out.csv", 10)
    assert not (tmp_path / "out.csv").exists()


def penguin_predictor() -> Predictor:
    """A model of two text columns, each with the train split's rarer values counted as OTHER."""
    columns = [
        Column("species", "categorical", "text", kind="text", categories=["Adelie", "Gentoo"], other=True),
        Column("island", "categorical", "text", kind="text", categories=["Biscoe", "Dream"], other=True),
    ]
    features = [f for c in columns for f in c.features]  # (6,)
    model = nn.Linear(len(features), 1)
    with torch.no_grad():
        model.weight.copy_(torch.arange(1.0, len(features) + 1).reshape(1, -1))
        model.bias.zero_()
    scaler = Scaler(features, "body_mass_g", mean=[0.0] * len(features), std=[1.0] * len(features))
    return Predictor(model, Preprocessor("body_mass_g", columns, scaler))


def test_unseen_categories_are_named_in_one_line_and_counted_as_other(tmp_path, monkeypatch, capsys):
    predictor = penguin_predictor()
    monkeypatch.setattr("torchtrack.predict.load_predictor", lambda model: predictor)
    rows = pd.DataFrame(
        {
            "species": ["Adelie", "Emperor", "Gentoo", "Emperor", None, "Adelie"],
            "island": ["Atlantis", "Dream", "Atlantis", "Mu", "Lemuria", "Avalon"],
        }
    )
    rows.to_csv(tmp_path / "new.csv", index=False)
    assert predict_file("model.pt", tmp_path / "new.csv", tmp_path / "out.csv") == 6
    assert capsys.readouterr().err.splitlines() == [
        f"torchtrack: {tmp_path / 'new.csv'}: categories the model was not trained on, counted as {OTHER}: "
        "species: 'Emperor'; island: 'Atlantis', 'Avalon', 'Lemuria' and 1 more"
    ]
    out = pd.read_csv(tmp_path / "out.csv")
    seen_as_other = rows.assign(
        species=rows["species"].replace("Emperor", "Chinstrap")
    )  # a rarer train value
    np.testing.assert_allclose(out[PREDICTION_COLUMN], predictor(seen_as_other), rtol=1e-6)


def test_cli_reads_and_writes_parquet(trained_project, tmp_path):
    trained_project.raw_rows(10).to_parquet(tmp_path / "new.parquet")
    argv = ["predict", "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "out.parquet")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 10


def test_cli_a_damaged_parquet_input_exits_2_naming_its_rows_and_leaves_the_output(
    trained_project, tmp_path, capsys
):
    trained_project.raw_rows(100).to_parquet(tmp_path / "new.parquet", row_group_size=40)
    content = bytearray((tmp_path / "new.parquet").read_bytes())
    page = pq.ParquetFile(tmp_path / "new.parquet").metadata.row_group(1).column(0).data_page_offset
    content[page : page + 8] = b"\xff" * 8  # a page header no reader can read
    (tmp_path / "new.parquet").write_bytes(bytes(content))
    (tmp_path / "out.csv").write_text("the previous predictions\n")
    argv = ["predict", "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1, stderr
    assert f"{tmp_path / 'new.parquet'}: rows 41-80 (row group 2 of 3) cannot be read (" in stderr
    assert (tmp_path / "out.csv").read_text() == "the previous predictions\n"


def test_cli_bad_columns_exit_2_name_them_and_write_nothing(trained_project, tmp_path):
    trained_project.raw_rows(5).rename(columns={"x1": "x9"}).to_csv(tmp_path / "new.csv", index=False)
    command = [
        sys.executable,
        "-m",
        "torchtrack",
        "predict",
        "--input",
        str(tmp_path / "new.csv"),
        "--output",
        str(tmp_path / "out.csv"),
        "--model",
        str(trained_project.model_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "missing column(s): x1. The model reads: x0, x1, x2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_cli_without_a_trained_model_exits_2(tmp_path, capsys):
    (tmp_path / "new.csv").write_text("x0\n1.0\n")
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(tmp_path / "absent.pt")]) == 2
    assert "run the train stage first" in capsys.readouterr().err


def test_cli_matches_header_names_trimmed_and_replaces_a_prediction_column(
    trained_project, predictor, tmp_path, capsys
):
    rows = trained_project.raw_rows(10).assign(prediction=-1.0)
    rows.rename(columns=lambda c: f" {c} ").to_csv(tmp_path / "new.csv", index=False)
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(trained_project.model_path)]) == 0
    assert "'prediction' column is replaced" in capsys.readouterr().err
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == list(rows.columns)
    np.testing.assert_allclose(out[PREDICTION_COLUMN], predictor(rows), rtol=1e-6, atol=1e-6)


class NotWeights:
    """An object torch.save pickles as code, which weights_only=True refuses to load."""


@pytest.mark.parametrize("content", [b"not a model", b"", "pickle"], ids=["text", "empty", "pickled-object"])
def test_a_model_argument_that_is_not_a_model_file_gets_one_line(trained_project, tmp_path, capsys, content):
    path = tmp_path / "model.pt"
    if content == "pickle":
        torch.save({"state_dict": NotWeights(), "model": {}}, path)
    else:
        path.write_bytes(content)
    trained_project.raw_rows(3).to_csv(tmp_path / "new.csv", index=False)
    argv = ["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*argv, "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{path}: not a torchtrack model file" in err, err
    assert "weights_only" not in err
