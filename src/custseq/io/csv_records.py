"""The independent account of a CSV file: its records counted by Python's :mod:`csv`, apart from DuckDB's reader.

DuckDB reads the rows. Lines it cannot read (a wrong number of fields, a stray quote) go to its rejects table,
and blank lines it skips. Counting the records again here, with the dialect DuckDB used, tells where every
record went: read, rejected or blank. Nothing is dropped without a row number and a rule.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

# Lines that cannot become rows; each becomes an empty row quarantined under its rule (custseq.validate.rules).
BLANK_LINE = "blank_line"
WRONG_FIELD_COUNT = "wrong_field_count"
UNREADABLE_LINE = "unreadable_line"
FIELD_COUNT_ERRORS = ("MISSING COLUMNS", "TOO MANY COLUMNS")  # DuckDB's error types for a ragged line
ENCODING_ERROR = "INVALID ENCODING"

_FIELD_SIZE_LIMIT = 2**31 - 1  # DuckDB reads lines of up to 2 MB by default; csv's own limit is 128 KB


@dataclass(frozen=True)
class CsvDialect:
    """What DuckDB's sniffer settled on for one file; DuckDB writes ``(empty)`` for none."""

    delimiter: str = ","
    quote: str = '"'
    escape: str = ""

    @classmethod
    def of_scan(cls, delimiter: str, quote: str, escape: str) -> CsvDialect:
        def text(value: str) -> str:
            return "" if value in (None, "(empty)") else value

        return cls(text(delimiter) or ",", text(quote), text(escape))

    def reader_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`csv.reader` that split records as DuckDB does."""
        if not self.quote:
            return {"delimiter": self.delimiter, "quoting": csv.QUOTE_NONE}
        if self.escape and self.escape != self.quote:
            escaped = {"escapechar": self.escape, "doublequote": False}
            return {"delimiter": self.delimiter, "quotechar": self.quote, **escaped}
        return {"delimiter": self.delimiter, "quotechar": self.quote}


@dataclass(frozen=True)
class FileRecords:
    """A file's records after the header line, as :mod:`csv` counts them."""

    count: int
    blank: tuple[int, ...]  # 1-based record numbers of blank lines


def count_records(path: Path, dialect: CsvDialect) -> FileRecords:
    """Count the records after the header line of a CSV (or gzip-compressed CSV) file, streaming.

    A quoted field may span lines; it is one record. A blank line is a record with no field.

    Raises
    ------
    csv.Error
        If Python's reader cannot split the file either.
    """
    blank: list[int] = []
    n = 0
    with open_text(path) as fh, _field_size_limit(_FIELD_SIZE_LIMIT):
        reader = csv.reader(fh, **dialect.reader_options())
        next(reader, None)  # the header line
        for n, record in enumerate(reader, start=1):
            if not record:
                blank.append(n)
    return FileRecords(n, tuple(blank))


def read_header(path: Path, dialect: CsvDialect) -> list[str]:
    """The names on a CSV file's header line, as written (DuckDB renames a repeated one).

    Raises
    ------
    csv.Error, OSError, EOFError
        If the file cannot be opened or split.
    """
    with open_text(path) as fh, _field_size_limit(_FIELD_SIZE_LIMIT):
        return next(csv.reader(fh, **dialect.reader_options()), [])


def open_text(path: Path) -> IO[str]:
    """A CSV (or gzip-compressed CSV) file as text, a UTF-8 byte-order mark dropped, undecodable bytes replaced."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def open_bytes(path: Path) -> IO[bytes]:
    """A CSV (or gzip-compressed CSV) file's bytes, decompressed."""
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


@contextlib.contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    """csv's field size limit is process-wide: raise it for one count and put it back."""
    before = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)
