"""Reading tables: a user's CSV file (its encoding and delimiter found, header names trimmed,
one line naming the problem when it is not a table the pipeline can read), a Parquet file
a block of rows at a time, and a table of float columns kept on disk a column at a time.

prepare reads the training table through `read_csv`, and `torchtrack predict` its input rows;
evaluate and `torchtrack predict` stream Parquet files through `parquet_blocks`; prepare keeps
the synthetic rows it makes in a `ColumnFile`.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from torchtrack.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

DELIMITERS = ",;\t|"  # tried in this order; the first that splits every sampled line alike wins
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # utf-8 (with or without a BOM), then Windows, then any byte
MISSING_MARKERS = ["?"]  # gaps on top of pandas' own: an empty cell, NA, NaN, null, n/a, ...
SAMPLE_LINES = 50  # lines the delimiter is judged on
# parquet_blocks reads a column chunk through a buffer of this many bytes, page by page, rather
# than pre-buffering whole row groups (pyarrow's default: ~80 MB per 1M-row group of 16 floats,
# several read ahead, 660 MB peak to stream a 7M-row split against 190 MB so, and slower).
PARQUET_READ_BUFFER = 1 << 20
# A number written with a decimal comma, as a spreadsheet set to most European locales saves
# it in a `;`-separated file: 1,5 or -1.234,5 (dots group thousands). Only a column where
# every value reads so, and one at least has the comma, is taken for numbers.
DECIMAL_COMMA = re.compile(r"[+-]?(\d+|\d{1,3}(\.\d{3})+)(,\d+)?")
# The first bytes of the files most often given instead of a CSV.
BINARY_KINDS = {
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a zip archive (an .xlsx workbook?)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"SQLite format 3": "an SQLite database",
}


def note(message: str) -> None:
    """A line on stderr about what was done to the user's data."""
    print(f"torchtrack: {message}", file=sys.stderr, flush=True)


def decode(raw: bytes, path: Path, quiet: bool = False) -> str:
    """The text of a file's bytes in the first encoding of ENCODINGS (UTF-16 by its BOM) that
    reads it; a note unless it is UTF-8 or `quiet`."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    kind = next((kind for magic, kind in BINARY_KINDS.items() if raw.startswith(magic)), None)
    if kind is not None or b"\x00" in raw[:4096]:
        raise DataError(f"{path}: not a CSV file (it looks like {kind or 'binary data'})")
    for encoding in ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != ENCODINGS[0] and not quiet:
            note(f"{path} is not UTF-8; read it as {encoding}")
        return text
    raise AssertionError("latin-1 decodes any bytes")


def sniff_delimiter(text: str) -> str:
    """The delimiter of DELIMITERS that cuts every sampled line into the same number (> 1) of
    fields, the most fields winning; a comma when none does (a one-column file)."""
    lines = text.splitlines()[: SAMPLE_LINES + 1]
    if len(lines) > SAMPLE_LINES:
        lines = lines[:-1]  # the sample's last line may continue past it (a quoted newline)
    elif len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the file's last line may be cut short (`check_last_row` names it)
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        widths = {len(row) for row in csv.reader(lines, delimiter=delimiter) if row}
        if len(widths) == 1 and (fields := widths.pop()) > best_fields:
            best, best_fields = delimiter, fields
    return best


def read_csv(path: str | Path, what: str = "CSV file", as_written: bool = False) -> pd.DataFrame:
    """The table in `path`, every header name trimmed of spaces; DataError in one line if it
    cannot be read (missing, empty, binary, ragged, cut short, a header repeated).

    `as_written`: every cell the text the file holds (`NA`, `50`, `007` and an empty cell kept
    as they are), for columns passed through untouched; the notes a first read printed are
    not repeated."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    raw = path.read_bytes()
    text = decode(raw, path, quiet=as_written)
    if not text.strip():
        raise DataError(f"{path}: the {what} is empty")
    delimiter = sniff_delimiter(text)
    try:
        rows = io.StringIO(text)
        if as_written:
            frame = pd.read_csv(rows, sep=delimiter, dtype=str, na_filter=False, skipinitialspace=True)
        else:
            frame = pd.read_csv(rows, sep=delimiter, na_values=MISSING_MARKERS, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the {what} is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({' '.join(str(exc).split())})") from None
    check_last_row(text, delimiter, frame, path)
    frame.columns = [str(c).strip() for c in frame.columns]
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise DataError(f"{path}: column name(s) used twice: {', '.join(map(repr, repeated))}")
    if delimiter != "," and not as_written:
        note(f"{path}: columns separated by {delimiter!r}")
        read_decimal_commas(frame, path)
    return frame


def check_last_row(text: str, delimiter: str, frame: pd.DataFrame, path: Path) -> None:
    """DataError naming the file and the row when the file ends inside its last row: a line
    with fewer fields than the header and no line break after it, what a copy or download cut
    short leaves (pandas would read the missing cells as gaps). A line with quotes is let be:
    it may end a quoted value that began lines above."""
    if not frame.shape[0] or text.endswith(("\n", "\r")):
        return
    last = text[max(text.rfind("\n"), text.rfind("\r")) + 1 :]
    fields = len(last.split(delimiter))
    if last.strip() and '"' not in last and fields < frame.shape[1]:
        raise DataError(
            f"{path}: row {frame.shape[0]} has {fields} of {frame.shape[1]} fields and ends the file"
            " without a line break: the file looks cut short"
        )


def read_decimal_commas(frame: pd.DataFrame, path: Path) -> None:
    """Turn, in place, each text column whose values all read as DECIMAL_COMMA numbers (1,5)
    into numbers, with a line naming them. Not in a comma-separated file, where a quoted
    "1,234" is more likely a thousand and thirty-four."""
    converted = []
    for name in frame.columns:
        if not pd.api.types.is_string_dtype(frame[name]):  # text (object or str dtype) only
            continue
        values = frame[name].dropna().astype(str).str.strip()
        if not values.str.contains(",").any() or not values.str.fullmatch(DECIMAL_COMMA).all():
            continue
        numbers = values.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        frame[name] = pd.to_numeric(numbers).reindex(frame.index)
        converted.append(name)
    if converted:
        note(f"{path}: read {', '.join(map(repr, converted))} with a decimal comma (1,5 = 1.5)")


def parquet_rows(path: str | Path) -> int:
    """The rows of a Parquet file, from its footer: nothing else is read."""
    return open_parquet(path).metadata.num_rows


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a Parquet file, in order, from its footer."""
    return open_parquet(path).schema_arrow.names


def open_parquet(path: str | Path, **options: object) -> pq.ParquetFile:
    """`pyarrow.parquet.ParquetFile(path, **options)`: its footer read; DataError in one line
    naming the file when it cannot be (cut short, or not a Parquet file)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, **options)
    except (OSError, ValueError) as exc:  # pyarrow's errors: OSError (IOError) or ValueError (ArrowInvalid)
        raise DataError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None


def parquet_blocks(path: str | Path, rows: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The rows of a Parquet file (these `columns`, default all) as tables of exactly `rows`
    rows each, the last one fewer; an empty file gives one empty table.

    Read a record batch at a time, so memory holds about two blocks whatever the file's size.
    The blocks start at the same rows however the file was cut into row groups, so that
    what is computed a block at a time (a model's batches, say) is too. A file damaged or cut
    short ends in a DataError naming it and the rows (the row group) that cannot be read.
    """
    import pyarrow as pa

    with open_parquet(path, buffer_size=PARQUET_READ_BUFFER, pre_buffer=False) as file:
        schema = file.schema_arrow
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        pending: list[pa.RecordBatch] = []  # read, not yet handed out: fewer than `rows` rows
        held = 0
        yielded = False
        for batch in _batches(file, path, rows, columns):
            pending.append(batch)
            held += batch.num_rows
            while held >= rows:
                table = pa.Table.from_batches(pending, schema)
                yield table.slice(0, rows)
                yielded = True
                pending, held = table.slice(rows).to_batches(), held - rows
        if held or not yielded:
            yield pa.Table.from_batches(pending, schema)


def _batches(
    file: pq.ParquetFile, path: str | Path, rows: int, columns: list[str] | None
) -> Iterator[pa.RecordBatch]:
    """`file.iter_batches`, a row group at a time: a page that cannot be read is named by its
    row group and that group's rows."""
    groups = file.metadata.num_row_groups
    first = 0  # the group's first row in the file
    for group in range(groups):
        size = file.metadata.row_group(group).num_rows
        batches = file.iter_batches(batch_size=rows, row_groups=[group], columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except (OSError, ValueError) as exc:
                where = f"rows {first + 1}-{first + size} (row group {group + 1} of {groups})"
                raise DataError(f"{path}: {where} cannot be read ({_one_line(exc)})") from None
            if batch is None:
                break
            yield batch
        first += size


def _one_line(exc: Exception) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split())


class ColumnFile:
    """Float64 columns in an Arrow IPC file, written a block of rows at a time and read back a
    column at a time: memory holds one column of the table, never the table.

        table = ColumnFile(folder / "rows.arrow")
        for block in blocks:  # name -> values (B,), the same names each time
            table.append(block)
        x0 = table.column("x0")  # (N,)

    The file is the caller's to remove (prepare keeps it in a private temporary folder).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.names: list[str] = []
        self.rows = 0
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def append(self, block: dict[str, np.ndarray]) -> None:
        """Add a block of rows, one record batch of the file."""
        import pyarrow as pa

        batch = pa.record_batch({name: pa.array(values, pa.float64()) for name, values in block.items()})
        if self._writer is None:
            self.names = list(block)
            self._writer = pa.ipc.new_file(str(self.path), batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def column(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """One column's values (N,), or its values at `rows` (ascending positions), read from
        the file a record batch at a time (its writing ends at the first read)."""
        import pyarrow as pa

        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if rows is not None and len(rows) > 1 and (rows[1:] < rows[:-1]).any():
            raise ValueError("ColumnFile.column reads rows in ascending order")
        values = np.empty(self.rows if rows is None else len(rows))
        options = pa.ipc.IpcReadOptions(included_fields=[self.names.index(name)])
        with pa.OSFile(str(self.path)) as file:  # read, not mapped: the pages are not held after
            reader = pa.ipc.open_file(file, options=options)
            start = done = 0  # the batch's first row in the file; the values filled
            for i in range(reader.num_record_batches):
                part = reader.get_batch(i).column(0).to_numpy()
                if rows is None:
                    end = done + len(part)
                    values[done:end] = part
                else:  # the rows that fall in this batch
                    end = done + int(np.searchsorted(rows[done:], start + len(part)))
                    values[done:end] = part[rows[done:end] - start]
                start, done = start + len(part), end
        return values
