"""Bad input, property-based: hypothesis feeds the params validator and the CSV loader
malformed values and files. Every case ends in success or one clear line naming the key or
column, never a traceback; a stage stopped by bad input leaves no output and no run RUNNING."""

from __future__ import annotations

import math
import string

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchtrack.cli import main
from torchtrack.config import Config, DataConfig, config_from_dict, load_config
from torchtrack.data import Scaler, load_table, make_synthetic, store_table, write_splits
from torchtrack.errors import ConfigError, DataError
from torchtrack.paths import PREPARED_DIR, split_file
from torchtrack.preprocessing import Preprocessor, drop_missing_target
from torchtrack.tables import NotKept

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SECTIONS: dict[str, list[str]] = {}  # every known key by section, so new keys get fuzzed too
for dotted in Config().flat():
    section, _, name = dotted.partition(".")
    if name:
        SECTIONS.setdefault(section, []).append(name)

# Anything YAML can produce, the right type or not.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["1e-3", "nan", "-inf", "0x10", "synthetic", "csv", "adam", "cpu", "identity", "1_000"]),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
keys = st.one_of(st.text(max_size=12), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False))


@st.composite
def params(draw):
    """A params mapping: mostly known sections and keys, some unknown, values of any type."""
    raw = {}
    for section, names in SECTIONS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
            body = {name: draw(values) for name in chosen}
            for _ in range(draw(st.integers(0, 2))):
                body[draw(keys)] = draw(values)
            raw[section] = body if draw(st.integers(0, 19)) else draw(values)
    if draw(st.booleans()):
        raw["seed"] = draw(values)
    for _ in range(draw(st.integers(0, 2))):
        raw[draw(keys)] = draw(values)
    return raw if draw(st.integers(0, 29)) else draw(values)


def assert_one_clear_line(message: str, *names: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert any(name in message for name in names), f"{message!r} names none of {names}"


def dotted_keys(raw) -> list[str]:
    """Every key of a params mapping as the validator would name it."""
    if not isinstance(raw, dict):
        return ["top level"]
    names = ["top level"]
    for key, value in raw.items():
        names.append(str(key))
        names.append(repr(key))
        if isinstance(value, dict):
            names += [f"{key}.{inner}" for inner in value] + [f"{key}.{inner!r}" for inner in value]
    return names


@SETTINGS
@given(raw=params())
def test_the_validator_accepts_or_names_the_bad_key_in_one_line(raw):
    try:
        config = config_from_dict(raw)
    except ConfigError as error:
        assert_one_clear_line(str(error), *dotted_keys(raw))
    else:
        assert isinstance(config, Config)
        assert all(math.isfinite(v) for v in config.flat().values() if isinstance(v, float))


@SETTINGS
@given(
    content=st.text(max_size=200).map(str.encode)
    | st.binary(max_size=64)
    | st.builds(yaml.safe_dump, params()).map(str.encode)
)
def test_any_params_file_loads_or_fails_in_one_line(tmp_path, content):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError as error:
        assert_one_clear_line(str(error), str(path))


cells = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", "nan", "NaN", "inf", "-inf", "NULL", "true", "1e400", " 1 ", '"2"', "x", "1,5", '"']
    ),
    st.text(alphabet=string.printable, max_size=6),
)
names = st.one_of(st.sampled_from(["a", "b", "y", "target", "", "a", "1", "Unnamed: 0"]), st.text(max_size=6))


@st.composite
def csv_texts(draw):
    """CSV-like text: a header and rows, ragged, quoted, empty or junk."""
    width = draw(st.integers(0, 4))
    header = draw(st.lists(names, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(cells, min_size=max(width - 1, 0), max_size=width + 1), max_size=6))
    sep = draw(st.sampled_from([",", ",", ";", "\t"]))
    lines = [sep.join(header)] + [sep.join(row) for row in rows]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))


@SETTINGS
@given(
    content=csv_texts() | st.binary(max_size=64),
    target=st.one_of(st.none(), names),
)
def test_the_csv_reader_and_preprocessing_make_finite_features_or_name_the_problem_in_one_line(
    tmp_path, content, target
):
    path = written_input(tmp_path, content)
    try:
        frame, chosen = load_table(path, target)
        frame, _ = drop_missing_target(frame, chosen)
        prepared = Preprocessor.fit(frame, chosen, DataConfig(source="csv")).transform(frame)
    except DataError as error:
        assert_one_clear_line(str(error), str(path), "column")
    else:
        assert chosen in frame.columns and frame.shape[1] >= 2 and len(frame) >= 1
        assert np.isfinite(prepared.to_numpy(np.float64)).all()


def written_input(tmp_path, content: str | bytes):
    """`content` (text, or bytes that may not be text) as the file input.csv in `tmp_path`."""
    path = tmp_path / "input.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def prepared_or_error(load, path, target) -> tuple[str, object]:
    """What prepare makes of the CSV at `path` read by `load` (load_table, or store_table in a
    folder): the features' bytes and the preprocessing, or the one line that stops it."""
    try:
        rows, chosen = load(path, target)
        rows, dropped = drop_missing_target(rows, chosen)
        preprocessor = Preprocessor.fit(rows, chosen, DataConfig(source="csv"))
        features = preprocessor.transform(rows).to_numpy(np.float64).tobytes()
    except DataError as error:
        return "error", str(error)
    return "prepared", (features, preprocessor.to_dict(), dropped)


@SETTINGS
@given(content=csv_texts() | st.binary(max_size=64), target=st.one_of(st.none(), names))
def test_a_csv_kept_as_columns_prepares_as_the_table_held_or_is_refused_in_the_same_words(
    tmp_path, content, target
):
    path = written_input(tmp_path, content)
    held = prepared_or_error(load_table, path, target)
    (tmp_path / "scratch").mkdir(exist_ok=True)
    try:
        stored = prepared_or_error(
            lambda path, target: store_table(path, tmp_path / "scratch", target), path, target
        )
    except NotKept:  # prepare reads such a file whole
        return
    assert stored == held


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("a,b,y\n1,2,3\n4,,\n7,8,\n", "1 rows are too few to split"),
        ("a,b,y\n1,2,3\n4,inf,6\n7,8,9\n2,3,4\n", "column 'b', row 2: inf is infinite"),
        ("a,b,y\n1,2,3\n4,5,6,7\n", "not a readable CSV file"),
        ("a,y\n1,2\n3,4\n", "2 rows are too few to split"),
        ("a,y\n\x00\x01,2\n", "not a CSV file (it looks like binary data)"),
        ("a,y\n1,\n2,\n3,\n", "target column 'y' has no values"),
        ("a,y\n1,2\n2,x\n3,4\n", "target column 'y', row 2: 'x' is not a number"),
        ("a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,2", "row 4 has 2 of 3 fields and ends the file without a line break"),
        ("a,b,y\n1,2,3\n4,5,6\n7,8,9\n", "3 rows are too few to split into train, val and test (train needs"),
    ],
    ids=[
        *["missing-target", "infinite", "ragged", "too-few", "binary", "all-missing-target", "text-target"],
        "cut-short",
        "one-train-row",
    ],
)
def test_a_prepare_stage_stopped_by_bad_csv_leaves_no_output_and_no_run(workdir, capsys, content, named):
    (workdir / "input.csv").write_text(content)
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "csv", "path": "input.csv"}}))
    assert main(["prepare"]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1 and named in stderr, stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["input.csv", "params.yaml"]  # no outputs, no store


def test_a_train_stage_stopped_by_a_damaged_split_names_its_rows_and_writes_nothing(workdir, capsys):
    frame, truth = make_synthetic(300, 2, seed=0)
    scaler = Scaler.fit(frame, "y")
    parts = {"train": frame.iloc[:200], "val": frame.iloc[200:250], "test": frame.iloc[250:]}
    write_splits({name: scaler.transform(part) for name, part in parts.items()}, scaler, PREPARED_DIR, truth)
    split = split_file(PREPARED_DIR, "train")
    damaged = bytearray(split.read_bytes())
    page = pq.ParquetFile(split).metadata.row_group(0).column(1).data_page_offset
    damaged[page : page + 8] = b"\xff" * 8  # a page header no reader can read
    split.write_bytes(bytes(damaged))
    (workdir / "params.yaml").write_text(yaml.safe_dump({"seed": 0}))
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert main(["train"]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1, stderr
    assert f"{split}: rows 1-200 (row group 1 of 1) cannot be read (" in stderr
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before  # no outputs, no store
