"""Reading tables: a user's CSV file (its encoding and delimiter found, header names trimmed,
one line naming the problem when it is not a table the pipeline can read), a Parquet file, or a
folder of them as one table; a Parquet file a block of rows at a time; and a table kept on disk,
read back a column at a time.

prepare keeps a CSV or Parquet table (a file or a folder of them) in a `ColumnFile` as it
reads it, a piece of rows at a time (`TableColumns`; one it cannot keep so it reads whole,
`read_table`), and the synthetic rows it makes go to a `ColumnFile` too. `torchtrack predict`
reads its input rows through `csv_blocks`; evaluate and `torchtrack predict` stream Parquet
files through `parquet_blocks`.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pandas as pd

from torchtrack.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

ArrayLike: TypeAlias = "np.ndarray | pd.api.extensions.ExtensionArray"  # a column's values

DELIMITERS = ",;\t|"  # tried in this order; the first that splits every sampled line alike wins
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # utf-8 (with or without a BOM), then Windows, then any byte
MISSING_MARKERS = ["?"]  # gaps on top of pandas' own: an empty cell, NA, NaN, null, n/a, ...
SAMPLE_LINES = 50  # lines the delimiter is judged on
TABLE_SUFFIXES = {".csv", ".parquet"}  # the files of a folder read_table reads
READ_CHUNK = 1 << 20  # bytes of a CSV file decoded at a time, to judge its encoding
# parquet_blocks reads a column chunk through a buffer of this many bytes, page by page, rather
# than pre-buffering whole row groups (pyarrow's default: ~80 MB per 1M-row group of 16 floats,
# several read ahead, 660 MB peak to stream a 7M-row split against 190 MB so, and slower).
PARQUET_READ_BUFFER = 1 << 20
PARQUET_BLOCK_ROWS = 1 << 16  # rows of a Parquet file prepare keeps on disk a block at a time
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


_held_notes: ContextVar[list[str] | None] = ContextVar("held_notes", default=None)


def note(message: str) -> None:
    """A line on stderr about what was done to the user's data (kept back inside `notes_held`)."""
    held = _held_notes.get()
    if held is not None:
        held.append(message)
    else:
        print(f"torchtrack: {message}", file=sys.stderr, flush=True)


@contextmanager
def notes_held() -> Iterator[list[str]]:
    """`note`'s lines kept back in the list this yields, and said when the block ends, however it
    ends; what the block removes from the list is not said (a read that is given up, whose notes
    the read that replaces it says again)."""
    token = _held_notes.set([])
    try:
        yield _held_notes.get()
    finally:
        held = _held_notes.get()
        _held_notes.reset(token)
        for message in held:
            note(message)


def file_encoding(path: Path) -> tuple[str, bool]:
    """(the first encoding of ENCODINGS, UTF-16 by its BOM, that reads every byte of the file at
    `path`, whether the file holds anything but white space); a note unless it is UTF-8. Read
    READ_CHUNK bytes at a time: memory does not grow with the file."""
    with path.open("rb") as file:
        head = file.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates: tuple[str, ...] = ("utf-16",)
    else:
        kind = next((kind for magic, kind in BINARY_KINDS.items() if head.startswith(magic)), None)
        if kind is not None or b"\x00" in head:
            raise DataError(f"{path}: not a CSV file (it looks like {kind or 'binary data'})")
        candidates = ENCODINGS
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)()
        blank = True
        try:
            with path.open("rb") as file:
                while chunk := file.read(READ_CHUNK):
                    text = decoder.decode(chunk)  # every chunk: an undecodable byte may come last
                    blank = blank and not text.strip()
                blank = blank and not decoder.decode(b"", final=True).strip()
        except UnicodeDecodeError:
            continue
        if encoding not in ("utf-16", ENCODINGS[0]):
            note(f"{path} is not UTF-8; read it as {encoding}")
        return encoding, not blank
    raise DataError(f"{path}: not readable as UTF-16, which its first bytes announce")


def head_text(path: Path, encoding: str) -> str:
    """The file's first SAMPLE_LINES lines and more (its whole text when it has fewer)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    text = ""
    with path.open("rb") as file:
        while len(text.splitlines()) <= SAMPLE_LINES + 1 and (chunk := file.read(READ_CHUNK)):
            text += decoder.decode(chunk)
    return text


def tail_text(path: Path, encoding: str) -> str:
    """The end of the file's text: its last READ_CHUNK bytes (or fewer), whose first line may be
    cut; enough for its last line, unless that line alone is longer."""
    start = max(0, path.stat().st_size - READ_CHUNK)
    with path.open("rb") as file:
        if encoding == "utf-16" and start:  # from a whole code unit, in the order the BOM says
            encoding = "utf-16-le" if file.read(2) == b"\xff\xfe" else "utf-16-be"
            start += start % 2
        file.seek(start)
        return file.read().decode(encoding, errors="replace")


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


def read_csv(path: str | Path, what: str = "CSV file") -> pd.DataFrame:
    """The table in `path`, every header name trimmed of spaces; DataError in one line if it
    cannot be read (missing, empty, binary, ragged, cut short, a header repeated)."""
    source = CsvSource.open(path, what)
    # Parsed from the file, a block at a time (pandas' C parser): memory holds the table, not its text.
    with source.parse_errors():
        frame = pd.read_csv(source.path, na_values=MISSING_MARKERS, **source.options)
    source.check_end(len(frame), frame.shape[1])
    return source.values(frame, first=True)


def csv_blocks(
    path: str | Path, rows: int, what: str = "CSV file"
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """The table in `path` (`read_csv`'s, with its checks and notes) `rows` rows at a time, each
    block twice: as values, and as written, every cell the text the file holds (`NA`, `50`, `007`
    and an empty cell kept as they are), for columns passed through untouched. Each block is
    indexed by its rows' place in the file; a header-only file gives one empty block. Memory
    holds a block, not the table: the file is parsed twice side by side, row for row."""
    source = CsvSource.open(path, what)
    values = source.frames(rows)
    written = source.frames(rows, as_written=True, checked=False)
    for blocks, (frame, text) in enumerate(zip(values, written, strict=True), 1):
        text.columns = [str(c).strip() for c in text.columns]
        yield source.values(frame, first=blocks == 1), text


@dataclass(frozen=True)
class CsvSource:
    """A CSV file with its encoding and delimiter found, as `read_csv` and `csv_blocks` parse it."""

    path: Path
    what: str
    encoding: str
    delimiter: str

    @classmethod
    def open(cls, path: str | Path, what: str) -> CsvSource:
        """DataError in one line when `path` is missing, empty or not a text file."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: {what} not found")
        encoding, has_text = file_encoding(path)
        if not has_text:
            raise DataError(f"{path}: the {what} is empty")
        return cls(path, what, encoding, sniff_delimiter(head_text(path, encoding)))

    @property
    def options(self) -> dict[str, object]:
        return {"sep": self.delimiter, "encoding": self.encoding, "skipinitialspace": True}

    def frames(self, rows: int, as_written: bool = False, checked: bool = True) -> Iterator[pd.DataFrame]:
        """The file as pandas parses it for its values (or, `as_written`, every cell the text the
        file holds), `rows` rows at a time, each block indexed by its rows' place in the file,
        header names as written; a header-only file gives one empty block. `check_end` once the
        last block is read, if `checked`."""
        total = columns = 0
        cells = {"dtype": str, "na_filter": False} if as_written else {"na_values": MISSING_MARKERS}
        with self.parse_errors():
            reader = pd.read_csv(self.path, **self.options, **cells, chunksize=rows)
        with reader:
            while True:
                with self.parse_errors():  # pandas' errors only: a row it cannot parse
                    frame = next(reader, None)
                if frame is None:
                    break
                total, columns = total + len(frame), frame.shape[1]
                yield frame
        if checked:
            self.check_end(total, columns)

    @contextmanager
    def parse_errors(self) -> Iterator[None]:
        """pandas' errors as DataError in one line naming the file."""
        try:
            yield
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.path}: the {self.what} is empty") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable CSV file ({_one_line(exc)})") from None

    def values(self, frame: pd.DataFrame, first: bool) -> pd.DataFrame:
        """`frame` (parsed for its values) with its header names trimmed, numbers written with a
        decimal comma read; DataError for a name used twice. The notes are said of the `first`
        block only."""
        frame.columns = self.names(frame.columns)
        if self.delimiter != ",":
            if first:
                note(f"{self.path}: columns separated by {self.delimiter!r}")
            read_decimal_commas(frame, self.path, quiet=not first)
        return frame

    def names(self, columns: Iterable[object]) -> list[str]:
        """The header's names trimmed of spaces; DataError for a name used twice."""
        names = [str(c).strip() for c in columns]
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:
            raise DataError(f"{self.path}: column name(s) used twice: {', '.join(map(repr, repeated))}")
        return names

    def check_end(self, rows: int, columns: int) -> None:
        """`check_last_row` of the file's end, for a table of `rows` rows and `columns` columns."""
        check_last_row(tail_text(self.path, self.encoding), self.delimiter, rows, columns, self.path)


def read_table(path: str | Path, what: str = "CSV file") -> pd.DataFrame:
    """The table at `path`: a CSV file (`read_csv`), a Parquet file (`.parquet`), or a folder of
    them, read in the order of their names as one table (hidden files and others skipped). Each
    file of a folder must have the first one's columns, in its order, and in each column numbers
    where it has numbers; DataError in one line naming the file and the column otherwise."""
    path = Path(path)
    if not path.is_dir():
        return _read_one(path, what)
    files = table_files(path)
    frames = [_read_one(files[0], what)]
    first = frames[0]
    for file in files[1:]:
        frame = _read_one(file, what)
        _check_agrees(file, frame.dtypes.to_dict(), files[0], first.dtypes.to_dict())
        frames.append(frame)
    if len(frames) > 1:
        note(f"{path}: {len(frames)} files read as one table")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else first


def table_files(path: Path) -> list[Path]:
    """The files of the folder `path` that `read_table` reads, in order; DataError where there is none."""
    files = sorted(f for f in path.iterdir() if f.suffix in TABLE_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise DataError(f"{path}: a folder with no {' or '.join(sorted(TABLE_SUFFIXES))} file in it")
    return files


def _check_agrees(
    file: Path, dtypes: dict[str, object], first: Path, first_dtypes: dict[str, object]
) -> None:
    """DataError naming `file` where its columns (name -> dtype, in order) are not those of the
    folder's `first` file, or a column holds text where that file's holds numbers (or the reverse)."""
    if list(dtypes) != list(first_dtypes):
        missing = [c for c in first_dtypes if c not in dtypes]
        extra = [c for c in dtypes if c not in first_dtypes]
        difference = "; ".join(
            f"{label}: {', '.join(map(repr, names))}"
            for label, names in (("missing", missing), ("extra", extra))
            if names
        )
        raise DataError(
            f"{file}: its columns are not those of {first.name} ({difference or 'in another order'})"
        )
    kinds = {True: "numbers", False: "text"}
    for column, dtype in first_dtypes.items():
        numeric, first_numeric = (pd.api.types.is_numeric_dtype(d) for d in (dtypes[column], dtype))
        if numeric != first_numeric:
            raise DataError(
                f"{file}: column {column!r} holds {kinds[numeric]}, "
                f"where {first.name} holds {kinds[first_numeric]}"
            )


class NotKept(Exception):
    """A table a ColumnFile does not keep as `read_table` gives it: a CSV file whose rows have
    one more field than its header has names (pandas reads the first as the rows' labels; a
    ColumnFile numbers its rows), or values of a kind it does not hold (dates, pandas' nullable
    integers, whole numbers past int64 among text). Read it whole."""


@dataclass
class TableColumns:
    """The table `read_table` reads (a CSV or Parquet file, or a folder of them), kept in a
    `ColumnFile` without being held: `survey` reads each file once, a piece of rows at a time,
    for its columns' kinds (with `read_table`'s checks and notes), appending each piece to the
    file while every column's pieces are of one kind; `write` finishes the file, reading the
    files a second time where they were not, each value converted as `read_table` gives it.
    Memory holds a piece of rows.

        table = TableColumns.survey(path, ColumnFile(folder / "table.arrow"))
        table.write()  # table.columns now holds read_table(path), a column at a time
    """

    names: list[str]
    rows: int
    columns: ColumnFile | None
    complete: bool  # `columns` holds the table as read_table gives it: no second read
    files: list[_FileColumns]
    samples: list[pd.DataFrame]  # each file's columns, a few rows of each kind, as the whole read joins them

    @classmethod
    def survey(
        cls, path: str | Path, columns: ColumnFile | None = None, what: str = "CSV file"
    ) -> TableColumns:
        """The table's columns and rows, its pieces appended to `columns` while they agree in
        each column's kind; DataError in one line as `read_table` says it. NotKept where a
        file is not kept so: read it whole (`read_table`)."""
        path = Path(path)
        files = table_files(path) if path.is_dir() else [path]
        appender = _Appender(columns)
        surveys: list[_FileColumns] = []
        for file in files:
            kind = _ParquetColumns if file.suffix == ".parquet" else _CsvColumns
            survey = kind.survey(file, what, appender)
            if surveys:
                _check_agrees(file, survey.dtypes, files[0], surveys[0].dtypes)
            surveys.append(survey)
        if len(files) > 1:
            note(f"{path}: {len(files)} files read as one table")
        samples = [
            pd.DataFrame(
                {name: _common(list(kinds.values())) for name, kinds in zip(s.names, s.samples, strict=True)}
            )
            for s in surveys
        ]
        complete = columns is not None and appender.agree and not any(any(s.decimal) for s in surveys)
        return cls(surveys[0].names, sum(s.rows for s in surveys), columns, complete, surveys, samples)

    def write(self) -> None:
        """Make `columns` hold the table, a piece of rows at a time: done already where `complete`."""
        if self.complete or self.columns is None:
            return
        self.columns.clear()
        joined = pd.concat(self.samples, ignore_index=True).dtypes if len(self.samples) > 1 else None
        for k, survey in enumerate(self.files):
            others = [sample for i, sample in enumerate(self.samples) if i != k]  # the other files'
            for block in survey.blocks():
                if joined is not None:  # as pd.concat joins the files' columns
                    for name, series in block.items():
                        if series.dtype != joined[name]:
                            frames = [series.to_frame(name), *(other[[name]] for other in others)]
                            block[name] = pd.concat(frames, ignore_index=True)[name].iloc[: len(series)]
                self.columns.append({name: _values(series) for name, series in block.items()})
        self.complete = True


@dataclass
class _Appender:
    """Appends each piece of rows read to `columns` (if any) while every column's pieces are
    of the kind of its first; `agree` once one is not, and nothing more is appended."""

    columns: ColumnFile | None
    dtypes: list[object] | None = None
    agree: bool = True

    def __call__(self, frame: pd.DataFrame) -> None:
        if self.columns is None or not self.agree:
            return
        dtypes = list(frame.dtypes)
        self.dtypes = dtypes if self.dtypes is None else self.dtypes
        self.agree = dtypes == self.dtypes
        if self.agree:
            self.columns.append({str(name).strip(): _values(series) for name, series in frame.items()})


def _values(series: pd.Series) -> ArrayLike:
    """A column's values as a ColumnFile takes them: a NumPy array, or pandas' array of text."""
    return series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array


def _read_one(path: Path, what: str) -> pd.DataFrame:
    """One CSV (`what` names it in errors) or Parquet file (by its suffix) as a table, header
    names trimmed."""
    if path.suffix != ".parquet":
        return read_csv(path, what)
    if not path.is_file():
        raise DataError(f"{path}: Parquet file not found")
    import pyarrow as pa

    # Read as `parquet_blocks` reads it: a damaged file is named with the rows it cannot read.
    frame = pa.concat_tables(parquet_blocks(path, 1 << 20)).to_pandas()
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def csv_piece_rows(columns: int) -> int:
    """The rows pandas' C parser makes into columns at a time when it reads a whole file of
    `columns` columns (its `low_memory` pieces): the largest power of two below 2**20 / columns.
    Where a column reads as numbers in one piece and as text in another, each piece's values
    are converted to the kind they share as they were read, so a read a block at a time gives
    the whole read's values only in blocks of these rows."""
    limit = (1 << 20) // max(columns, 1)
    rows = 1
    while rows * 2 < limit:
        rows *= 2
    return rows


@dataclass
class _FileColumns:
    """What a first read of a file of a table, a piece of rows at a time, finds of each column:
    the kinds of values its pieces hold (dtype -> the piece's first value that is not a gap,
    or its first row), and whether it is text read as decimal-comma numbers."""

    names: list[str]
    rows: int
    samples: list[dict[object, pd.Series]]
    decimal: list[bool]  # read with a decimal comma, as the whole read does

    @property
    def dtypes(self) -> dict[str, object]:
        """Each column's dtype in the whole read, name -> dtype."""
        return {
            name: _common(list(kinds.values())).dtype
            for name, kinds in zip(self.names, self.samples, strict=True)
        }


@dataclass
class _CsvColumns(_FileColumns):
    """`_FileColumns` of a CSV file, read in the pieces pandas' parser reads it in."""

    source: CsvSource
    piece_rows: int

    @classmethod
    def survey(cls, path: Path, what: str, read: Callable[[pd.DataFrame], None]) -> _CsvColumns:
        """Read `path` once, a piece at a time, with `read_csv`'s checks and notes; each piece,
        as parsed, is given to `read` too."""
        source = CsvSource.open(path, what)
        with source.parse_errors():
            width = pd.read_csv(source.path, nrows=0, **source.options).shape[1]
        piece_rows = csv_piece_rows(width)
        samples: list[dict[object, pd.Series]] = [{} for _ in range(width)]
        verdicts: list[set[str | None]] = [set() for _ in range(width)]
        converted: list[dict[object, pd.Series]] = [{} for _ in range(width)]  # as decimal-comma numbers
        rows, names = 0, []
        for frame in source.frames(piece_rows):
            if not frame.index.equals(pd.RangeIndex(rows, rows + len(frame))):  # not the rows' places
                raise NotKept(f"{source.path}: its rows have one more field than its header has names")
            read(frame)
            rows += len(frame)
            names = list(frame.columns)
            for j, (_, series) in enumerate(frame.items()):
                _sample(samples[j], series)
                if source.delimiter != "," and None not in verdicts[j]:
                    verdicts[j].add(verdict := decimal_comma_verdict(series))
                    if verdict is not None:
                        _sample(converted[j], decimal_comma_numbers(series))
        names = source.names(names)
        decimal = ["comma" in v and None not in v for v in verdicts]  # every piece text of such numbers
        if source.delimiter != ",":
            note(f"{source.path}: columns separated by {source.delimiter!r}")
            if any(decimal):
                say_decimal_commas(source.path, [n for n, d in zip(names, decimal, strict=True) if d])
        samples = [converted[j] if decimal[j] else samples[j] for j in range(width)]
        return cls(names, rows, samples, decimal, source, piece_rows)

    def blocks(self) -> Iterator[dict[str, pd.Series]]:
        """The file's columns, a piece at a time, each value as the whole read gives it."""
        for frame in self.source.frames(self.piece_rows, checked=False):
            block = {}
            for j, (name, (_, series)) in enumerate(zip(self.names, frame.items(), strict=True)):
                block[name] = _as_whole(
                    decimal_comma_numbers(series) if self.decimal[j] else series, self.samples[j]
                )
            yield block


@dataclass
class _ParquetColumns(_FileColumns):
    """`_FileColumns` of a Parquet file, read a block of rows at a time (`parquet_blocks`): each
    block converts to pandas' kinds alone (an integer column with a gap to floats, say)."""

    path: Path

    @classmethod
    def survey(cls, path: Path, what: str, read: Callable[[pd.DataFrame], None]) -> _ParquetColumns:
        """Read `path` once, a block at a time, with `read_table`'s checks; each block, as
        pandas' frame, is given to `read` too."""
        if not path.is_file():
            raise DataError(f"{path}: Parquet file not found")
        samples: list[dict[object, pd.Series]] = []
        rows, names = 0, []
        for frame in cls._frames(path):
            read(frame)
            rows, names = rows + len(frame), list(frame.columns)
            samples = samples or [{} for _ in names]
            for j, (_, series) in enumerate(frame.items()):
                _sample(samples[j], series)
        return cls(names, rows, samples, [False] * len(names), path)

    def blocks(self) -> Iterator[dict[str, pd.Series]]:
        """The file's columns, a block at a time, each value as the whole read gives it."""
        for frame in self._frames(self.path):
            yield {
                name: _as_whole(series, kinds)
                for (name, series), kinds in zip(frame.items(), self.samples, strict=True)
            }

    @staticmethod
    def _frames(path: Path) -> Iterator[pd.DataFrame]:
        for table in parquet_blocks(path, PARQUET_BLOCK_ROWS):
            frame = table.to_pandas()
            frame.columns = [str(c).strip() for c in frame.columns]
            yield frame


def _as_whole(series: pd.Series, kinds: dict[object, pd.Series]) -> pd.Series:
    """A piece of a column converted as the whole read converts each of its pieces, to the kind
    they share: `kinds` holds a sample of each (`_sample`)."""
    if len(kinds) < 2:
        return series
    others = [sample for dtype, sample in kinds.items() if dtype != series.dtype]
    return _common([series, *others]).iloc[: len(series)]


def _sample(samples: dict[object, pd.Series], series: pd.Series) -> None:
    """Keep `series`' first value that is not a gap (or its first row), if none of its dtype is kept."""
    if series.dtype not in samples:
        present = series.notna().to_numpy()
        at = int(present.argmax()) if present.any() else 0
        samples[series.dtype] = series.iloc[at : at + 1]


def _common(parts: list[pd.Series]) -> pd.Series:
    """The columns `parts` one after another, in the kind they share, each converted to it as
    pandas' C parser converts its pieces of one column (both join arrays as `pd.concat` does)."""
    return pd.concat(parts, ignore_index=True)


def check_last_row(text: str, delimiter: str, rows: int, columns: int, path: Path) -> None:
    """DataError naming the file and the row when the file ends inside its last row: a line
    with fewer fields than the header and no line break after it, what a copy or download cut
    short leaves (pandas would read the missing cells as gaps). A line with quotes is let be:
    it may end a quoted value that began lines above. `text`: the file's end (`tail_text`), of a
    table of `rows` rows and `columns` columns."""
    if not rows or text.endswith(("\n", "\r")):
        return
    last = text[max(text.rfind("\n"), text.rfind("\r")) + 1 :]
    fields = len(last.split(delimiter))
    if last.strip() and '"' not in last and fields < columns:
        raise DataError(
            f"{path}: row {rows} has {fields} of {columns} fields and ends the file"
            " without a line break: the file looks cut short"
        )


def read_decimal_commas(frame: pd.DataFrame, path: Path, quiet: bool = False) -> None:
    """Turn, in place, each text column whose values all read as DECIMAL_COMMA numbers (1,5)
    into numbers, with a line naming them. Not in a comma-separated file, where a quoted
    "1,234" is more likely a thousand and thirty-four. `quiet`: no line."""
    converted = [name for name in frame.columns if decimal_comma_verdict(frame[name]) == "comma"]
    for name in converted:
        frame[name] = decimal_comma_numbers(frame[name])
    if converted and not quiet:
        say_decimal_commas(path, converted)


def decimal_comma_verdict(series: pd.Series) -> str | None:
    """Whether a text column reads as DECIMAL_COMMA numbers: "comma" when every value does and
    one has the comma, "plain" when every value does and none has it, None otherwise (not
    text, or a value that does not)."""
    if not pd.api.types.is_string_dtype(series):  # text (object or str dtype) only
        return None
    values = series.dropna().astype(str).str.strip()
    if not values.str.fullmatch(DECIMAL_COMMA).all():
        return None
    return "comma" if values.str.contains(",").any() else "plain"


def decimal_comma_numbers(series: pd.Series) -> pd.Series:
    """A column of DECIMAL_COMMA numbers (`decimal_comma_verdict`) as numbers, gaps kept."""
    values = series.dropna().astype(str).str.strip()
    numbers = values.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(numbers).reindex(series.index)


def say_decimal_commas(path: Path, names: list[str]) -> None:
    """The line that says these columns of `path` were read with a decimal comma."""
    note(f"{path}: read {', '.join(map(repr, names))} with a decimal comma (1,5 = 1.5)")


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


def numeric_blocks(path: str | Path, columns: list[str], rows: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """The `columns` of a Parquet file as numbers, `rows` rows at a time (`parquet_blocks`): the
    block's first row, and each column's values as read (float64, or the file's integers; a gap
    NaN). Once every block is read, DataError naming the first column, in the order of
    `columns`, that is not numbers (integers or floats, as pandas reads them: not booleans or
    decimals) or holds gaps or infinities, with how many: what `TabularDataset` says of a
    DataFrame, so that the rows may be used as they come and the file still be refused whole.
    Where a column is not numbers, no block is given."""
    import pyarrow as pa

    schema = open_parquet(path).schema_arrow
    numeric = [
        pa.types.is_integer(schema.field(name).type) or pa.types.is_floating(schema.field(name).type)
        for name in columns
    ]
    read = columns if all(numeric) else columns[: numeric.index(False)]  # what decides the error
    bad = dict.fromkeys(read, 0)
    start = 0
    for table in parquet_blocks(path, rows, read):
        values = [table.column(name).to_numpy() for name in read]
        for name, column in zip(read, values, strict=True):
            bad[name] += int((~np.isfinite(column)).sum())
        if len(read) == len(columns):
            yield start, values
        start += table.num_rows
    for name, is_number in zip(columns, numeric, strict=True):  # the first at fault, in order
        if not is_number:
            raise DataError(f"{path}: column {name!r} is not numeric")
        if bad[name]:
            raise DataError(f"{path}: column {name!r} has {bad[name]} missing or infinite value(s)")


def _batches(
    file: pq.ParquetFile, path: str | Path, rows: int, columns: list[str] | None
) -> Iterator[pa.RecordBatch]:
    """`file.iter_batches`, a row group at a time: a page that cannot be read is named by its
    row group and that group's rows."""
    for group in range(file.metadata.num_row_groups):
        batches = file.iter_batches(batch_size=rows, row_groups=[group], columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except (OSError, ValueError) as exc:
                raise _unreadable(file, path, group, exc) from None
            if batch is None:
                break
            yield batch


def read_row_group(file: pq.ParquetFile, path: str | Path, group: int, columns: list[str]) -> pa.Table:
    """Row group `group` of `file` (these `columns`); a group that cannot be read is named by
    its rows, as `parquet_blocks` names it."""
    try:
        return file.read_row_group(group, columns=columns)
    except (OSError, ValueError) as exc:
        raise _unreadable(file, path, group, exc) from None


def _unreadable(file: pq.ParquetFile, path: str | Path, group: int, exc: Exception) -> DataError:
    """The DataError for a row group of `file` that cannot be read: the file, the group and its rows."""
    metadata = file.metadata
    first = sum(metadata.row_group(g).num_rows for g in range(group))  # the group's first row
    where = f"rows {first + 1}-{first + metadata.row_group(group).num_rows}"
    where += f" (row group {group + 1} of {metadata.num_row_groups})"
    return DataError(f"{path}: {where} cannot be read ({_one_line(exc)})")


def _one_line(exc: Exception) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split())


class ColumnFile:
    """Columns in an Arrow IPC file, written a block of rows at a time and read back a column
    (or a block of rows) at a time: memory never holds the table. A column holds numbers
    (floats, integers), true/false values, pandas' text (`str`), or Python objects of those
    kinds with gaps, mixed (what pandas makes of a column read as numbers in some rows and as
    text or true/false values in others); each comes back as it went in.

        table = ColumnFile(folder / "rows.arrow")
        for block in blocks:  # name -> values (B,), the same names and kinds each time
            table.append(block)
        x0 = table.column("x0")  # (N,)
        for block in table.blocks():  # the blocks appended, in order
            ...

    The file is the caller's to remove (prepare keeps it in a private temporary folder).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.names: list[str] = []
        self.rows = 0
        self._starts: list[int] = []  # each record batch's first row
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def append(self, block: dict[str, ArrayLike]) -> None:
        """Add a block of rows, one record batch of the file."""
        import pyarrow as pa

        batch = pa.record_batch({name: _arrow_values(values) for name, values in block.items()})
        if self._writer is None:
            self.names = list(block)
            self._writer = pa.ipc.new_file(str(self.path), batch.schema)
        self._writer.write_batch(batch)
        self._starts.append(self.rows)
        self.rows += batch.num_rows

    def blocks(self) -> Iterator[dict[str, ArrayLike]]:
        """The rows appended, in the blocks they were appended in: name -> values (B,), read
        from the file a record batch at a time (its writing ends at the first read)."""
        import pyarrow as pa

        self._end_writing()
        with pa.OSFile(str(self.path)) as file:
            reader = pa.ipc.open_file(file)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield {name: _pandas_values([batch.column(j)]) for j, name in enumerate(self.names)}

    def column(self, name: str, rows: np.ndarray | None = None) -> ArrayLike:
        """One column's values (N,), or its values at `rows` (ascending positions), read from
        the file a record batch at a time, those that hold `rows` only (its writing ends at the
        first read). Numbers and true/false values come as a NumPy array, filled as read; text
        as pandas' `str` array, mixed values as an object array."""
        import pyarrow as pa

        self._end_writing()
        if rows is not None and len(rows) > 1 and (rows[1:] < rows[:-1]).any():
            raise ValueError("ColumnFile.column reads rows in ascending order")
        options = pa.ipc.IpcReadOptions(included_fields=[self.names.index(name)])
        with pa.OSFile(str(self.path)) as file:  # read, not mapped: the pages are not held after
            reader = pa.ipc.open_file(file, options=options)
            kind = reader.schema.field(0).type
            size = self.rows if rows is None else len(rows)
            fixed = pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)
            values = np.empty(size, kind.to_pandas_dtype()) if fixed else None
            parts: list[pa.Array] = []  # text and mixed values: gathered, then made pandas' at once
            batches = range(reader.num_record_batches)
            if rows is not None and len(rows):  # from the batch of the first row to that of the last
                first, last = (bisect.bisect_right(self._starts, int(row)) - 1 for row in (rows[0], rows[-1]))
                batches = range(first, last + 1)
            elif rows is not None:
                batches = range(0)
            done = 0  # the values taken
            for i in batches:
                start = self._starts[i]  # the batch's first row in the file
                part = reader.get_batch(i).column(0)
                if rows is None:
                    end = done + len(part)
                    taken = part
                else:  # the rows that fall in this batch, its last row searched as a value of
                    # rows' own type: a Python int would make NumPy convert the rows left, each batch
                    last = rows.dtype.type(start + len(part) - 1)
                    end = done + int(np.searchsorted(rows[done:], last, side="right"))
                    taken = part.take(pa.array(rows[done:end] - start))
                if values is not None:
                    values[done:end] = taken.to_numpy(zero_copy_only=False)
                else:
                    parts.append(taken)
                done = end
        return values if values is not None else _pandas_values(parts, kind)

    def clear(self) -> None:
        """Remove every row, and the file: the next append starts it anew."""
        self._end_writing()
        self.path.unlink(missing_ok=True)
        self.names, self.rows, self._starts = [], 0, []

    def _end_writing(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# The kinds of a mixed column's values, as the children of its Arrow union, in this order.
_MIXED_KINDS = {type(None): 0, bool: 1, np.bool_: 1, int: 2, np.int64: 2, float: 3, np.float64: 3, str: 4}


def _arrow_values(values: ArrayLike) -> pa.Array:
    """A column's values (a NumPy array of numbers or true/false values, pandas' text, or an
    object array of the kinds of `_MIXED_KINDS`) as an Arrow array that `_pandas_values` reads
    back as they are. NotKept for any other kind."""
    import pyarrow as pa

    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return pa.array(values)
    if isinstance(values, pd.api.extensions.ExtensionArray) and values.dtype == pd.StringDtype(
        na_value=np.nan
    ):
        text = pa.array(values, pa.large_string())
        return text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    if not (isinstance(values, np.ndarray) and values.dtype == object):
        raise NotKept(f"ColumnFile holds no values of dtype {values.dtype}")
    try:
        kinds = np.fromiter((_MIXED_KINDS[type(v)] for v in values), np.int8, len(values))
        offsets = np.zeros(len(values), np.int32)
        children = []
        for code, kind in enumerate((pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.large_string())):
            chosen = np.flatnonzero(kinds == code)
            offsets[chosen] = np.arange(len(chosen), dtype=np.int32)
            children.append(pa.array(values[chosen].tolist(), kind))
    except (KeyError, OverflowError, pa.ArrowInvalid) as exc:  # a kind, or an integer, it does not hold
        raise NotKept(f"ColumnFile holds no such value ({_one_line(exc)})") from None
    return pa.UnionArray.from_dense(pa.array(kinds), pa.array(offsets), children)


def _pandas_values(parts: list[pa.Array], kind: pa.DataType | None = None) -> ArrayLike:
    """The values `_arrow_values` made, its arrays `parts` (of type `kind`) one after another."""
    import pyarrow as pa

    kind = parts[0].type if kind is None else kind
    if pa.types.is_large_string(kind):
        return pa.chunked_array(parts, kind).to_pandas().array
    if pa.types.is_union(kind):
        values = [v for part in parts for v in part.to_pylist()]
        mixed = np.empty(len(values), object)
        mixed[:] = values
        return mixed
    return pa.chunked_array(parts, kind).to_numpy()
