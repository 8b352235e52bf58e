"""tables: a user's CSV read whatever its common delimiter and encoding, header names
trimmed, and a file that is no CSV named as what it looks like, in one line."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from torchtrack import tables
from torchtrack.errors import DataError
from torchtrack.tables import read_csv, read_table

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
    assert tables.file_encoding(path, quiet=True) == (encoding if encoding != "utf-8" else "utf-8-sig", True)


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
    ],
    ids=["empty", "blank", "parquet", "xlsx", "binary", "ragged", "repeated-header"],
)
def test_a_file_that_is_not_a_readable_table_gets_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "rows.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        read_csv(path)
    assert str(excinfo.value).startswith(f"{path}: ") and message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


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
def test_a_folder_whose_files_disagree_names_the_file_and_the_column(tmp_path, second, message):
    (tmp_path / "first.csv").write_text("x,city,y\n1,a,1\n2,b,2\n")
    (tmp_path / "second.csv").write_text(second)
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / message}") + "$"):
        read_table(tmp_path)


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
