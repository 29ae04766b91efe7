"""CSV files, streamed: values as text, every record with its first physical line.

The stdlib `csv` module is used rather than pandas because pandas pads short rows
and cannot say on which line a record starts; here a record with too few or too
many fields, or with bytes that are not valid in the file's encoding, becomes a
row with a `problem` (never padded, never dropped) and reading goes on.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Final

from backfill.errors import SourceError
from backfill.models import RowProblem, SourceRow
from backfill.readers.files import DAMAGED, Compression, ReadProgress, buffered, open_binary

DEFAULT_CHUNK_ROWS: Final = 1000
#: Large enough for a 5 MB free-text field; csv's default is 128 KiB.
FIELD_SIZE_LIMIT: Final = 64 * 1024 * 1024
_UNDECODABLE = re.compile("[\udc80-\udcff\x00]")

csv.field_size_limit(min(FIELD_SIZE_LIMIT, sys.maxsize))


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How to split a CSV file."""

    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8-sig"
    #: The column names of a file without a header row (its first line is data).
    columns: tuple[str, ...] = ()
    #: Values that mean NULL (e.g. \N); they read as empty.
    null: frozenset[str] = frozenset()


#: Comma-separated, double quotes, UTF-8 (a BOM is accepted).
PLAIN_CSV: Final = CsvOptions()


def read_header(
    path: str, options: CsvOptions = CsvOptions(), compression: Compression = ""
) -> list[str]:
    """The column names of `path`; a file-level problem raises SourceError."""
    fh, raw, start = _open(path, options, compression)
    with fh, raw:
        for magic, what in _MAGIC.items():
            if start.startswith(magic):
                raise SourceError(f"this is {what}, not a CSV text file", file=path)
        lines = _Lines(fh)
        reader = _reader(lines, options)
        if options.columns:
            return list(options.columns)
        return _header(path, reader, lines)


def read_rows(
    path: str,
    options: CsvOptions = CsvOptions(),
    *,
    progress: ReadProgress | None = None,
    compression: Compression = "",
) -> Iterator[SourceRow]:
    """Yield every record of `path` as a SourceRow (position = first physical line)."""
    fh, raw, _ = _open(path, options, compression)
    with fh, raw:
        lines = _Lines(fh)
        base = progress.done_bytes if progress is not None else 0
        reader = _reader(lines, options)
        header = list(options.columns) or _header(path, reader, lines)
        width = len(header)
        null = options.null
        while True:
            start = lines.count + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except DAMAGED as exc:
                raise SourceError(
                    f"the {compression or 'file'} data is damaged after line {lines.count} "
                    f"({type(exc).__name__}: {exc})",
                    file=path,
                ) from None
            except csv.Error as exc:
                yield SourceRow(path, str(start), {}, _quoting_problem(exc, start, lines.count))
                continue
            if progress is not None:
                progress.done_bytes = base + raw.tell()
            if not fields:
                continue  # a blank line is not a record
            bad = lines.undecodable_since(start) if lines.any_bad else None
            if bad is not None:
                line, text = bad
                what = "a NUL byte" if "\x00" in text else _not_text(options.encoding)
                problem = RowProblem("encoding", f"line {line} has {what}")
                yield SourceRow(path, str(start), {}, problem)
            elif len(fields) != width:
                problem = RowProblem("field_count", f"expected {width} fields, found {len(fields)}")
                yield SourceRow(path, str(start), {}, problem)
            else:
                if null:
                    fields = ["" if field in null else field for field in fields]
                yield SourceRow(path, str(start), dict(zip(header, fields, strict=True)))


def _not_text(encoding: str) -> str:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8"):
        return (
            "bytes that are not valid UTF-8 (a Latin-1 or Windows-1252 export? convert it to UTF-8)"
        )
    return f"bytes that are not valid {encoding}"


#: How files that are not CSV text begin, to say so instead of "bad bytes".
_MAGIC: Final = {
    b"PK\x03\x04": "a zip archive (an Excel .xlsx file?)",
    b"PAR1": "a Parquet file (give --format parquet, or name it .parquet)",
}


def _reader(lines: Iterable[str], options: CsvOptions) -> Iterator[list[str]]:
    # strict: a stray quote is an error for that record, never a field that silently
    # swallows the rows after it.
    return csv.reader(lines, delimiter=options.delimiter, quotechar=options.quotechar, strict=True)


def _quoting_problem(exc: csv.Error, start: int, end: int) -> RowProblem:
    if "unexpected end of data" in str(exc):
        return RowProblem(
            "unclosed_quote",
            f"a quoted field opened on lines {start}-{end} is never closed: "
            f"lines {start} to {end} (the end of the file) are one broken record",
        )
    return RowProblem("bad_quoting", f"malformed quoting on line {end}: {exc}")


def _open(
    path: str, options: CsvOptions, compression: Compression
) -> tuple[io.TextIOWrapper, IO[bytes], bytes]:
    """The file as text (undecodable bytes kept as surrogates), the raw file beneath it
    (its position is the progress) and the first bytes of the (decompressed) content."""
    stream, raw = open_binary(path, compression)
    data = buffered(stream)
    try:
        start = data.peek(8)[:8]
    except DAMAGED as exc:
        raw.close()
        raise SourceError(f"not readable as {compression or 'a file'}: {exc}", file=path) from None
    encoding = options.encoding
    if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
        # A UTF-16 byte-order mark (Excel's "Unicode text"): the BOM says how to read it.
        encoding = "utf-16"
    text = io.TextIOWrapper(data, encoding=encoding, errors="surrogateescape", newline="")
    return text, raw, start


def _header(path: str, reader: Iterator[list[str]], lines: _Lines) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise SourceError("the file is empty: expected a header row", file=path) from None
    except csv.Error as exc:
        raise SourceError(f"unreadable header: {exc}", file=path, line=1) from None
    if lines.undecodable_since(1) is not None:
        raise SourceError(f"the header has {_not_text(lines.encoding)}", file=path, line=1)
    if not header or header == [""]:
        raise SourceError("the first line is blank: expected a header row", file=path, line=1)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise SourceError(f"column {name!r} appears twice in the header", file=path, line=1)
        seen.add(name)
    return header


class _Lines(Iterable[str]):
    """Physical lines of a text file, counted, remembering which had undecodable bytes."""

    def __init__(self, fh: io.TextIOWrapper) -> None:
        self._fh = fh
        self.encoding = fh.encoding
        self.count = 0
        self._bad: deque[tuple[int, str]] = deque()

    def __iter__(self) -> Iterator[str]:
        for line in self._fh:
            self.count += 1
            # isascii() is a fast C check that rules out undecodable bytes; NUL is ASCII.
            if "\x00" in line or (not line.isascii() and _UNDECODABLE.search(line)):
                self._bad.append((self.count, line))
            yield line

    @property
    def any_bad(self) -> bool:
        """Whether some line read and not yet passed had bad bytes (a cheap first check)."""
        return bool(self._bad)

    def undecodable_since(self, start: int) -> tuple[int, str] | None:
        """The first line at or after `start` with bad bytes, and its text."""
        while self._bad and self._bad[0][0] < start:
            self._bad.popleft()
        return self._bad[0] if self._bad else None
