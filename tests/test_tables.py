"""tables: a user's CSV read whatever its common delimiter and encoding, header names
trimmed, and a file that is no CSV (or is cut short) named as what it looks like, in one line;
a Parquet file damaged or cut short named with the rows that cannot be read; columns kept on
disk and read back a column at a time; a CSV read a piece at a time into them as it reads whole."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from real_tables import write_decimal_commas, write_messy
from torchtrack import tables
from torchtrack.errors import DataError
from torchtrack.tables import (
    ColumnFile,
    TableColumns,
    csv_blocks,
    parquet_blocks,
    parquet_columns,
    parquet_rows,
    read_csv,
    read_table,
)

ROWS = pd.DataFrame({"city": ["Zürich", "Nîmes"], "size": [1.5, 2.0], "y": [3, 4]})


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"])
def test_common_delimiters_and_encodings_are_found(tmp_path, delimiter, encoding):
    path = tmp_path / "rows.csv"
    ROWS.to_csv(path, sep=delimiter, index=False, encoding=encoding)
    pd.testing.assert_frame_equal(read_csv(path), ROWS)


def test_a_file_not_in_utf8_is_read_and_says_so(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    ROWS.to_csv(path, sep=";", index=False, encoding="cp1252")
    read_csv(path)
    err = capsys.readouterr().err
    assert "is not UTF-8; read it as cp1252" in err and "columns separated by ';'" in err


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
def test_the_file_is_judged_and_read_whole_a_few_bytes_at_a_time(tmp_path, monkeypatch, encoding):
    """The encoding is judged on every byte, not the first chunk's (a non-UTF-8 byte on the last
    line), and a character cut by a chunk's end still reads: the file is never held as text."""
    monkeypatch.setattr(tables, "READ_CHUNK", 3)
    rows = pd.concat([ROWS.assign(city="Bern")] * 40 + [ROWS], ignore_index=True)  # Zürich comes last
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False, encoding=encoding)
    pd.testing.assert_frame_equal(read_csv(path), rows)
    assert tables.file_encoding(path) == (encoding if encoding != "utf-8" else "utf-8-sig", True)


def test_header_names_are_trimmed_and_question_marks_are_gaps(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(" a , b ,y\n1,?,3\n4,5,6\n")
    frame = read_csv(path)
    assert list(frame.columns) == ["a", "b", "y"] and frame["b"].isna().tolist() == [True, False]


def test_decimal_commas_in_a_semicolon_file_are_numbers_and_say_so(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    path.write_text("price;size;code;y\n1.234,5;1,5;1,5a;3\n-2,25;;2;4\n7;2;3;5\n")
    frame = read_csv(path)
    assert frame["price"].tolist() == [1234.5, -2.25, 7.0]
    assert frame["size"].tolist()[::2] == [1.5, 2.0] and frame["size"].isna().tolist() == [False, True, False]
    assert frame["code"].tolist() == ["1,5a", "2", "3"]  # not every value a number: left as text
    assert "read 'price', 'size' with a decimal comma" in capsys.readouterr().err


def test_a_quoted_comma_in_a_comma_file_stays_text(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('price,y\n"1,234",3\n"2,5",4\n')
    assert read_csv(path)["price"].tolist() == ["1,234", "2,5"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the CSV file is empty"),
        (b"\n\n  \n", "the CSV file is empty"),
        (b"PAR1\x15\x04\x15", "not a CSV file (it looks like a Parquet file)"),
        (b"PK\x03\x04\x14\x00", "not a CSV file (it looks like a zip archive (an .xlsx workbook?))"),
        (b"a,b\n\x00\x01\x02,3\n", "not a CSV file (it looks like binary data)"),
        (b"a,b\n1,2\n3,4,5\n", "not a readable CSV file"),
        (b"a,a \n1,2\n", "column name(s) used twice: 'a'"),
        (b"a,b,y\n1,2,3\n4,5", "row 2 has 2 of 3 fields and ends the file without a line break"),
        (b"a;b;y\r\n1;2;3\r\n4", "row 2 has 1 of 3 fields and ends the file without a line break"),
        (b'a,b,y\n1,2,3\n"4","5', "EOF inside string starting at row 2"),
    ],
    ids=[
        *["empty", "blank", "parquet", "xlsx", "binary", "ragged", "repeated-header"],
        *["cut-short", "cut-short-crlf", "cut-short-quoted"],
    ],
)
@pytest.mark.parametrize(
    "read",
    [read_csv, lambda path: list(csv_blocks(path, 1)), TableColumns.survey],
    ids=["whole", "a-row-at-a-time", "a-piece-at-a-time"],
)
def test_a_file_that_is_not_a_readable_table_gets_one_line_naming_it(tmp_path, content, message, read):
    path = tmp_path / "rows.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        read(path)
    assert str(excinfo.value).startswith(f"{path}: ") and message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_csv_blocks_are_the_whole_read_cut_into_rows_each_with_its_text_as_written(tmp_path, capsys):
    """Values as `read_csv` reads them (notes said once), and every cell's text, block by block."""
    path = tmp_path / "rows.csv"
    path.write_text("id ; price;note\n007;1,5;NA\n008;2;\n009;3,25;n/a\n010;4;x\n011;?;y\n")
    whole = read_csv(path)
    capsys.readouterr()
    blocks = list(csv_blocks(path, 2))
    assert [len(values) for values, _ in blocks] == [2, 2, 1]
    # The same values; each block's types are pandas' guess at its own rows (a block with only
    # gaps in `note` reads it as numbers), which preprocessing reads alike.
    pd.testing.assert_frame_equal(pd.concat([values for values, _ in blocks]), whole, check_dtype=False)
    text = pd.concat([written for _, written in blocks])
    assert list(text.columns) == ["id", "price", "note"]
    assert text.to_numpy().tolist() == [
        ["007", "1,5", "NA"],
        ["008", "2", ""],
        ["009", "3,25", "n/a"],
        ["010", "4", "x"],
        ["011", "?", "y"],
    ]
    assert capsys.readouterr().err.count("columns separated by ';'") == 1
    path.write_text("a,b\n")  # a header and no rows: one empty block
    ((values, written),) = csv_blocks(path, 2)
    assert list(values.columns) == list(written.columns) == ["a", "b"] and len(values) == 0


def test_a_parquet_file_or_a_folder_of_files_reads_as_one_table_in_name_order(tmp_path):
    rows = pd.DataFrame({" x ": [1.0, 2.0, 3.0, 4.0, 5.0], "city": list("abcde"), "y": [1, 2, 3, 4, 5]})
    rows.iloc[:2].to_csv(tmp_path / "01-first.csv", index=False, sep=";")
    rows.iloc[2:4].to_parquet(tmp_path / "02-second.parquet", index=False)
    rows.iloc[4:].to_csv(tmp_path / "03-third.csv", index=False)
    (tmp_path / "notes.txt").write_text("not a table")
    (tmp_path / ".hidden.csv").write_text("x,city,y\n9,z,9\n")
    trimmed = rows.rename(columns={" x ": "x"})
    second = trimmed.iloc[2:4].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_table(tmp_path / "02-second.parquet"), second)
    pd.testing.assert_frame_equal(read_table(tmp_path), trimmed)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("x,y\n3,4\n", "second.csv: its columns are not those of first.csv (missing: 'city')"),
        ("city,x,y\na,3,4\n", "second.csv: its columns are not those of first.csv (in another order)"),
        ("x,city,y\nthree,c,3\n", "second.csv: column 'x' holds text, where first.csv holds numbers"),
    ],
    ids=["missing-column", "order", "type"],
)
@pytest.mark.parametrize("read", [read_table, TableColumns.survey], ids=["whole", "a-piece-at-a-time"])
def test_a_folder_whose_files_disagree_names_the_file_and_the_column(tmp_path, second, message, read):
    (tmp_path / "first.csv").write_text("x,city,y\n1,a,1\n2,b,2\n")
    (tmp_path / "second.csv").write_text(second)
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / message}") + "$"):
        read(tmp_path)


def test_an_empty_folder_or_a_damaged_parquet_file_gets_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "cut.parquet").write_bytes(b"PAR1 cut short")
    for path, message in [
        (tmp_path / "empty", "a folder with no .csv or .parquet file in it"),
        (tmp_path / "cut.parquet", "not a readable Parquet file"),
    ]:
        with pytest.raises(DataError) as excinfo:
            read_table(path)
        assert str(excinfo.value).startswith(f"{path}: ") and message in str(excinfo.value)
        assert "\n" not in str(excinfo.value)


def test_a_short_last_row_with_a_line_break_after_it_is_read_with_gaps(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,y\n1,2,3\n4,5\n")  # ended as written: its missing cells are gaps
    assert read_csv(path)["y"].isna().tolist() == [False, True]


def parquet_of_four_row_groups(path):
    """100 rows of a and y in row groups of 25 rows: (path, the file's bytes, its footer)."""
    frame = pd.DataFrame({"a": np.arange(100.0), "y": np.arange(100.0) * 2})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=25)
    return path.read_bytes(), pq.ParquetFile(path).metadata


def test_a_parquet_file_cut_short_is_named_in_one_line(tmp_path):
    path = tmp_path / "rows.parquet"
    content, _ = parquet_of_four_row_groups(path)
    path.write_bytes(content[: len(content) // 2])  # its footer gone
    for read in (parquet_rows, parquet_columns, lambda p: list(parquet_blocks(p, 10))):
        with pytest.raises(DataError) as excinfo:
            read(path)
        assert str(excinfo.value).startswith(f"{path}: not a readable Parquet file (")
        assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("rows", [10, 1_000])  # blocks within a row group, and across all of them
def test_a_damaged_page_of_a_parquet_file_is_named_by_its_rows(tmp_path, rows):
    path = tmp_path / "rows.parquet"
    content, footer = parquet_of_four_row_groups(path)
    damaged = bytearray(content)
    page = footer.row_group(2).column(1).data_page_offset  # y's first page in the third row group
    damaged[page : page + 8] = b"\xff" * 8  # a page header no reader can read
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError) as excinfo:
        list(parquet_blocks(path, rows))
    assert str(excinfo.value).startswith(f"{path}: rows 51-75 (row group 3 of 4) cannot be read (")
    assert "\n" not in str(excinfo.value)
    assert sum(block.num_rows for block in parquet_blocks(path, rows, ["a"])) == 100  # a's pages are whole


def test_columns_written_a_block_of_rows_at_a_time_read_back_whole_or_at_some_rows(tmp_path):
    X = np.random.default_rng(0).normal(size=(1_000, 3))  # (N, F)
    table = ColumnFile(tmp_path / "rows.arrow")
    for start in range(0, len(X), 64):  # blocks that do not divide the rows
        table.append({name: X[start : start + 64, j] for j, name in enumerate(["a", "b", "c"])})
    assert (table.names, table.rows) == (["a", "b", "c"], 1_000)
    assert table.column("b").tobytes() == X[:, 1].tobytes()
    rows = np.flatnonzero(np.arange(1_000) % 7 == 3)  # ascending, across every block
    assert table.column("c", rows).tobytes() == X[rows, 2].tobytes()
    assert table.column("a", np.array([999])).tolist() == [X[999, 0]]
    middle = np.arange(130, 200)  # rows of the third and fourth blocks only
    assert table.column("b", middle).tobytes() == X[middle, 1].tobytes()
    assert table.column("a", np.array([], np.int64)).size == 0
    with pytest.raises(ValueError, match="ascending"):
        table.column("a", np.array([5, 2]))
    blocks = list(table.blocks())  # as appended: 64 rows each, the last 40
    assert [len(block["a"]) for block in blocks] == [64] * 15 + [40]
    for j, name in enumerate(["a", "b", "c"]):
        assert np.concatenate([block[name] for block in blocks]).tobytes() == X[:, j].tobytes()


def test_columns_of_every_kind_read_back_as_they_went_in(tmp_path):
    mixed = np.array([1, 2.5, "x", None, np.nan, True, 7, "8"], object)  # a column pandas made of pieces
    block = {
        "f": np.linspace(0, 1, 8),
        "i": np.arange(8) - 3,
        "b": np.arange(8) % 3 == 0,
        "t": pd.array(["a", None, "c", "d", "é", "f\ng", "", "h"], dtype="str"),
        "m": mixed,
    }
    table = ColumnFile(tmp_path / "rows.arrow")
    table.append({name: values[:5] for name, values in block.items()})
    table.append({name: values[5:] for name, values in block.items()})
    rows = np.array([1, 4, 5, 7])
    for name, values in block.items():
        for got, want in [(table.column(name), values), (table.column(name, rows), values[rows])]:
            pd.testing.assert_series_equal(pd.Series(got), pd.Series(want))
            assert [type(v) for v in got] == [type(v) for v in want]
    with pytest.raises(tables.NotKept, match="datetime"):
        ColumnFile(tmp_path / "dates.arrow").append({"d": pd.date_range("2020-01-01", periods=2).array})


def test_csv_piece_rows_are_the_rows_pandas_converts_at_a_time(tmp_path):
    """Numbers in every piece but the last, which has text: the whole read keeps each piece of
    numbers as numbers (1.5), and the last piece's cells as written ("1.50")."""
    piece = tables.csv_piece_rows(40)
    rows = 2 * piece + 10
    frame = pd.DataFrame(
        {f"c{i}": np.zeros(rows, int) for i in range(39)} | {"v": ["1.50"] * (rows - 1) + ["x"]}
    )
    frame.to_csv(tmp_path / "rows.csv", index=False)
    values = read_csv(tmp_path / "rows.csv")["v"].tolist()
    assert values[2 * piece - 1 : 2 * piece + 1] == [1.5, "1.50"]


def table_of(tmp_path, kind):
    """A table `TableColumns` must read as `read_table` does: its path."""
    if kind == "messy":
        write_messy(tmp_path / "messy.csv")
        return tmp_path / "messy.csv"
    if kind == "numbers":  # three pieces of 40 columns, of one kind each
        rows = 2 * tables.csv_piece_rows(40) + 10
        frame = pd.DataFrame(
            {f"c{i}": np.arange(rows) % (i + 2) for i in range(39)} | {"y": np.arange(rows) / 4}
        )
        frame.to_csv(tmp_path / "numbers.csv", index=False)
        return tmp_path / "numbers.csv"
    if kind == "parquet":  # blocks of a Parquet file that read as different kinds alone, beside a CSV
        rows = tables.PARQUET_BLOCK_ROWS + 100
        ints, flags = pd.array(np.arange(rows), "Int64"), pd.array(np.arange(rows) % 2 == 0, "boolean")
        ints[rows - 3], flags[rows - 5] = None, None  # a gap in the last block only
        text = pd.Series(np.array(["a", "b", None], object)[np.arange(rows) % 3])
        frame = pd.DataFrame({"ints": ints, "flags": flags, "text": text, "small": np.ones(rows, np.float32)})
        folder = tmp_path / "parts"
        folder.mkdir()
        table = pa.Table.from_pandas(frame.assign(y=np.arange(rows) / 3), preserve_index=False)
        pq.write_table(table.replace_schema_metadata(), folder / "1.parquet")  # pandas' kinds from the file's
        frame.iloc[:4].assign(ints=range(4), flags=[True, None, False, True], y=0.5).to_csv(
            folder / "2.csv", index=False
        )
        return folder
    if kind == "decimal-commas":
        write_decimal_commas(tmp_path / "prices.csv")
        return tmp_path / "prices.csv"
    folder = tmp_path / "parts"  # a folder: integers with gaps in one file only, true/false in another
    folder.mkdir()
    write_messy(folder / "1.csv", n=70_000)
    second = pd.read_csv(folder / "1.csv", nrows=5).assign(
        int_gap=range(5), later_text="grp1", flag=[True, None, False, True, True], early_gaps="lo"
    )
    second.to_csv(folder / "2.csv", index=False)
    return folder


@pytest.mark.parametrize("kind", ["numbers", "messy", "decimal-commas", "folder", "parquet"])
def test_a_table_kept_as_columns_reads_back_as_read_table_gives_it(tmp_path, kind, capsys):
    path = table_of(tmp_path, kind)
    whole = read_table(path)
    said = capsys.readouterr().err
    columns = ColumnFile(tmp_path / "table.arrow")
    table = TableColumns.survey(path, columns)
    assert capsys.readouterr().err == said  # the same notes
    assert table.complete == (kind == "numbers")  # read once where every column's pieces agree
    table.write()
    assert (table.names, table.rows) == (columns.names, columns.rows) == (list(whole.columns), len(whole))
    rows = np.flatnonzero(np.random.default_rng(0).random(len(whole)) < 0.3).astype(np.int32)
    for name in whole.columns:
        for got, want in [
            (columns.column(name), whole[name]),
            (columns.column(name, rows), whole[name].iloc[rows]),
        ]:
            pd.testing.assert_series_equal(pd.Series(got, name=name), want.reset_index(drop=True))
            if want.dtype == object:  # numbers as numbers, text as text, where the whole read has them so
                assert [type(v) for v in got] == [type(v) for v in want]
