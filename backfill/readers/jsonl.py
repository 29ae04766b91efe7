"""JSON Lines (NDJSON) files, streamed: one JSON object a line, values made text.

This is what BigQuery (`EXPORT DATA ... format='JSON'`) and Snowflake (`COPY INTO ...
file_format=(type=json)`) write. A line is one record; its position is its line
number. Keys vary from line to line (BigQuery leaves out null fields), so the columns
of a file are the keys of its first records (`read_header`) and a key missing from a
line is simply absent from that row's values (the caller reads it as empty).

Values become text by `values.canonical`. A number written in fixed-point keeps its
digits exactly as written (`193.00` stays `193.00`; it is read as a Decimal, never
through a float); one written with an exponent (`1.5e-7`) is read as a float. BigQuery
writes INT64 and TIMESTAMP values as JSON strings: they stay the text given.

A line that is not JSON, not an object, or not UTF-8 becomes a row with a `problem` and
reading goes on; only a file that cannot be read at all raises SourceError.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Final

from backfill.errors import SourceError
from backfill.models import RowProblem, SourceRow
from backfill.readers.files import DAMAGED, Compression, ReadProgress, buffered, open_binary
from backfill.readers.values import canonical

#: How many records `read_header` looks at for the union of their keys.
HEADER_RECORDS: Final = 1000
#: The longest line read (a 5 MB free-text field is fine); a longer one is a problem row.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 1 << 20
_ONE_OBJECT_A_LINE: Final = "export newline-delimited JSON, one object per line"


def _number(text: str) -> Decimal | float:
    # Fixed-point text is kept exactly (with its scale); only exponent notation, whose
    # digits canonical() would have to spell out anyway, goes through a float.
    return float(text) if "e" in text or "E" in text else Decimal(text)


_DECODER: Final = json.JSONDecoder(parse_float=_number)


def read_header(path: str, compression: Compression = "") -> list[str]:
    """The keys of the first `HEADER_RECORDS` records of `path`, in first-seen order.

    Lines that are not objects are skipped here (`read_rows` reports them); a file with
    no line at all, or whose first records hold no object, raises SourceError.
    """
    stream, raw = open_binary(path, compression)
    with stream, raw:
        keys: dict[str, None] = {}
        first: tuple[int, str, bytes] | None = None  # the first record: line, problem, text
        records = 0
        for number, line in _lines(path, buffered(stream), compression):
            if _is_blank(line):
                continue
            records += 1
            if records == 1 and line.strip() in (b"[", b"{"):
                raise SourceError(
                    "this is one JSON document spread over many lines, not JSON Lines: "
                    f"{_ONE_OBJECT_A_LINE}",
                    file=path,
                    line=number,
                )
            record, problem = _parse(line, number)
            if problem is None and isinstance(record, dict):
                keys.update(dict.fromkeys(record))
            elif first is None:
                why = problem.message if problem else _not_object(number, record)
                first = (number, why, line)
            if records >= HEADER_RECORDS:
                break
    if records == 0:
        raise SourceError("the file is empty: expected JSON objects, one per line", file=path)
    if not keys and first is not None:
        at, why, text = first
        hint = ""
        if text.lstrip().startswith((b"[", b"{")):
            hint = f" (one JSON document? {_ONE_OBJECT_A_LINE})"
        raise SourceError(
            f"none of the first {records} records is a JSON object: {why}{hint}",
            file=path,
            line=at,
        )
    return list(keys)


def read_rows(
    path: str,
    *,
    compression: Compression = "",
    progress: ReadProgress | None = None,
) -> Iterator[SourceRow]:
    """Yield one SourceRow per non-blank line of `path` (position = the line number)."""
    stream, raw = open_binary(path, compression)
    with stream, raw:
        base = progress.done_bytes if progress is not None else 0
        for number, line in _lines(path, buffered(stream), compression):
            if progress is not None:
                progress.done_bytes = base + raw.tell()
            if _is_blank(line):
                continue
            position = str(number)
            record, problem = _parse(line, number)
            if problem is not None:
                yield SourceRow(path, position, {}, problem)
            elif not isinstance(record, dict):
                yield SourceRow(path, position, {}, RowProblem("json", _not_object(number, record)))
            else:
                values = {str(key): canonical(value) for key, value in record.items()}
                yield SourceRow(path, position, values)


class _TooLong(bytes):
    """A line longer than MAX_LINE_BYTES: its first bytes only, the rest skipped."""


def _lines(path: str, data: IO[bytes], compression: Compression) -> Iterator[tuple[int, bytes]]:
    """Every physical line of `data` with its number (from 1); damage raises SourceError."""
    number = 0
    try:
        while True:
            line = data.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                rest = line
                while rest and not rest.endswith(b"\n"):
                    rest = data.readline(_CHUNK)
                line = _TooLong(line[:80])
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
            yield number, line
    except DAMAGED as exc:
        raise SourceError(
            f"the {compression or 'file'} data is damaged after line {number} "
            f"({type(exc).__name__}: {exc})",
            file=path,
        ) from None


def _is_blank(line: bytes) -> bool:
    return not line.strip()


def _parse(line: bytes, number: int) -> tuple[object, RowProblem | None]:
    """The JSON value of one line, or why there is none."""
    if isinstance(line, _TooLong):
        size = MAX_LINE_BYTES // (1024 * 1024)
        return None, RowProblem("json", f"line {number} is longer than {size} MiB")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, RowProblem(
            "encoding",
            f"line {number} has bytes that are not valid UTF-8 (at byte {exc.start + 1}; "
            "JSON Lines files are UTF-8)",
        )
    try:
        return _DECODER.decode(text), None
    except json.JSONDecodeError as exc:
        return None, RowProblem(
            "json", f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
        )
    except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits, deep nesting
        return None, RowProblem("json", f"line {number} is not usable JSON: {exc}")


def _not_object(number: int, value: object) -> str:
    return f"line {number} is a JSON {_json_type(value)}, not an object"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "number"
