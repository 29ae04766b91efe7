"""Readers turn sources into chunks of `SourceRow`, values as text.

CSV (`readers.csv`), JSON Lines (`readers.jsonl`) and Parquet (`readers.parquet`), each
plain or compressed (gzip, bz2, xz, zstd: `readers.files`); typed values become text by
one set of rules (`readers.values`), so the same data gives the same rows in every format.
A URL's rows and errors name it as `display_name` shows it (no credentials, no query
values), so a signed URL's secret never reaches the ledger, results or messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from backfill.errors import SourceError
from backfill.models import SourceRow
from backfill.readers import csv
from backfill.readers.csv import DEFAULT_CHUNK_ROWS, PLAIN_CSV, CsvOptions
from backfill.readers.files import FORMATS, Format, ReadProgress, expand, kind_of, size
from backfill.urls import display_name

__all__ = [
    "FORMATS",
    "CsvOptions",
    "Format",
    "ReadProgress",
    "expand",
    "read_chunks",
    "read_header",
    "read_rows",
]


def read_header(path: str, fmt: Format | None = None, options: CsvOptions = PLAIN_CSV) -> list[str]:
    """The column names of one file; a file-level problem raises SourceError."""
    try:
        return _header(path, fmt, options)
    except SourceError as exc:
        name = display_name(path)
        if name == path:
            raise
        raise _renamed(exc, name) from None


def _header(path: str, fmt: Format | None, options: CsvOptions) -> list[str]:
    kind = kind_of(path, fmt)
    if kind.format == "jsonl":
        from backfill.readers import jsonl

        return jsonl.read_header(path, kind.compression)
    if kind.format == "parquet":
        from backfill.readers import parquet

        return parquet.read_header(path)
    return csv.read_header(path, options, kind.compression)


def read_rows(
    path: str,
    fmt: Format | None = None,
    *,
    options: CsvOptions = PLAIN_CSV,
    progress: ReadProgress | None = None,
) -> Iterator[SourceRow]:
    """Every row of one file, its position the first line (CSV, JSONL) or row index (Parquet)."""
    rows = _rows(path, fmt, options, progress)
    name = display_name(path)
    return rows if name == path else _shown_as(name, rows)


def _shown_as(name: str, rows: Iterator[SourceRow]) -> Iterator[SourceRow]:
    """`rows` and their errors under `name`, a URL without its secrets."""
    try:
        for row in rows:
            yield replace(row, source=name)
    except SourceError as exc:
        raise _renamed(exc, name) from None


def _renamed(exc: SourceError, name: str) -> SourceError:
    return SourceError(exc.reason, file=name, line=exc.line)


def _rows(
    path: str, fmt: Format | None, options: CsvOptions, progress: ReadProgress | None
) -> Iterator[SourceRow]:
    kind = kind_of(path, fmt)
    if kind.format == "parquet":
        from backfill.readers import parquet

        yield from parquet.read_rows(path, progress=progress)
    elif kind.format == "jsonl":
        from backfill.readers import jsonl

        # A key missing from a line is a null: every row has every column seen.
        blank = dict.fromkeys(jsonl.read_header(path, kind.compression), "")
        for row in jsonl.read_rows(path, compression=kind.compression, progress=progress):
            yield row if row.problem is not None else replace(row, values={**blank, **row.values})
    else:
        yield from csv.read_rows(path, options, progress=progress, compression=kind.compression)


def read_chunks(
    paths: Sequence[str],
    *,
    fmt: Format | None = None,
    options: CsvOptions = PLAIN_CSV,
    limit: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: ReadProgress | None = None,
) -> Iterator[list[SourceRow]]:
    """Rows of every file in order, `chunk_rows` at a time, at most `limit` in all.

    `paths` are files (see `expand` for directories and globs); `progress`, when given,
    is kept up to date with the bytes read so far.
    """
    chunk: list[SourceRow] = []
    taken = 0
    if progress is not None:
        progress.total_bytes = sum(size(path) for path in paths)
    for path in paths:
        if limit is not None and taken >= limit:
            break
        for row in read_rows(path, fmt, options=options, progress=progress):
            if limit is not None and taken >= limit:
                break
            chunk.append(row)
            taken += 1
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
