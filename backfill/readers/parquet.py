"""Parquet files, read a batch of rows at a time (pyarrow), values made text.

A row's position is its index in the file, counted from 0. Values become text by
`values.canonical`, with two refinements only the column type can give:

* `float` (32-bit) and `halffloat` columns are written with the fewest digits that
  read back as the same 32/16-bit number (`0.1`, not the `0.10000000149011612` of its
  64-bit widening);
* `time64[ns]` columns keep their nanoseconds (pyarrow's `datetime.time` drops them).

`timestamp[ns]` values arrive as pandas Timestamps (pyarrow hands them over so when
pandas is installed), which keep their nanoseconds. A value Python cannot hold (a
date past year 9999) makes its row a problem; reading goes on. A file that is not
Parquet, or is damaged, raises SourceError.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from backfill.errors import SourceError
from backfill.models import RowProblem, SourceRow
from backfill.readers.files import ReadProgress, display_name, is_url, open_url, size
from backfill.readers.values import canonical

DEFAULT_BATCH_ROWS: Final = 4096


def _arrow_writes_text(type_: Any) -> bool:
    """Whether Arrow writes this type's text exactly as `canonical` does."""
    if pa.types.is_decimal(type_):
        # Arrow writes an exponent when it is below -6 (as Java's BigDecimal does).
        return bool(0 <= type_.scale <= 6)
    return bool(
        pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_integer(type_)
    )


#: What pyarrow raises for a file it cannot read (ArrowInvalid is a ValueError too).
_UNREADABLE: Final = (pa.ArrowException, OSError, ValueError)
#: What turning a value into a Python object can raise (out-of-range dates, duplicate
#: map keys in strict mode).
_UNCONVERTIBLE: Final = (pa.ArrowException, ValueError, OverflowError, KeyError)


def read_header(path: str) -> list[str]:
    """The column names of `path` (top-level; a struct column is one JSON value)."""
    return _names(path, _schema(path))


def read_rows(
    path: str,
    *,
    progress: ReadProgress | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[SourceRow]:
    """Yield every row of `path` as a SourceRow (position = row index from 0).

    Rows are read `batch_rows` at a time, so only one batch is ever in memory;
    `progress.done_bytes` advances by the file's size in proportion to rows read.
    """
    parquet = _open(path)
    try:
        names = _names(path, parquet.schema_arrow)
        total_rows: int = parquet.metadata.num_rows
        file_bytes = _size(path)
        base = progress.done_bytes if progress is not None else 0
        batches = parquet.iter_batches(batch_size=batch_rows)
        index = 0
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except _UNREADABLE as exc:
                after = f"after row {index - 1}" if index else "before its first row"
                raise SourceError(
                    f"the Parquet data is damaged {after} ({type(exc).__name__}: {exc})",
                    file=path,
                ) from None
            converted = [_texts(batch.column(i), name) for i, name in enumerate(names)]
            columns = [texts for texts, _ in converted]
            clean = not any(unread for _, unread in converted)
            if progress is not None and total_rows:
                # The batch is read: its share of the file's bytes is done.
                progress.done_bytes = base + file_bytes * (index + batch.num_rows) // total_rows
            for cells in zip(*columns, strict=True):
                if clean:
                    yield SourceRow(path, str(index), dict(zip(names, cells, strict=True)))
                else:
                    yield _row(path, index, names, cells)
                index += 1
    finally:
        parquet.close()


def schema_problem(paths: Sequence[str]) -> str | None:
    """Why these Parquet files cannot be read as one source, or None if they can.

    Every file must have the first file's columns (names and types; the order may
    differ). Dictionary encoding is not a difference: a dictionary of strings reads
    as strings. The message names the first file that differs, and how.
    """
    if not paths:
        return None
    first = paths[0]
    expected = _columns(first)
    for path in paths[1:]:
        found = _columns(path)
        where = f"{display_name(path)} does not match {display_name(first)}"
        fix = "files read together need the same columns and types"
        for name, type_ in expected.items():
            if name not in found:
                return (
                    f"{where}: it has no column {name!r} ({type_} in {display_name(first)}); {fix}"
                )
        for name, type_ in found.items():
            if name not in expected:
                return f"{where}: it has an extra column {name!r} ({type_}); {fix}"
            if type_ != expected[name]:
                return (
                    f"{where}: column {name!r} is {type_} there but {expected[name]} "
                    f"in {display_name(first)}; {fix}"
                )
    return None


def _open(path: str) -> Any:
    if is_url(path):
        # ParquetFile.close() closes only what it opened itself: this file closes when
        # the ParquetFile is dropped (io objects close themselves when collected).
        remote = open_url(path)
        try:
            return pq.ParquetFile(remote)
        except _UNREADABLE as exc:
            remote.close()
            raise SourceError(_unreadable(exc), file=display_name(path)) from None
    if not os.path.exists(path):
        raise SourceError("no such file", file=path)
    try:
        return pq.ParquetFile(path)
    except _UNREADABLE as exc:
        raise SourceError(_unreadable(exc), file=path) from None


def _schema(path: str) -> Any:
    """The file's Arrow schema, from its footer (opened as `_open` opens it)."""
    parquet = _open(path)
    try:
        return parquet.schema_arrow
    finally:
        parquet.close()


def _unreadable(exc: BaseException) -> str:
    return f"not a readable Parquet file ({type(exc).__name__}: {exc})"


def _names(path: str, schema: Any) -> list[str]:
    names = [str(name) for name in schema.names]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SourceError(f"column {name!r} appears twice in the schema", file=path)
        seen.add(name)
    if not names:
        raise SourceError("the file has no columns", file=path)
    return names


def _columns(path: str) -> dict[str, str]:
    """Each column's name and type (as text, a dictionary as its value type)."""
    schema = _schema(path)
    columns: dict[str, str] = {}
    for field in schema:
        type_ = field.type
        if pa.types.is_dictionary(type_):
            type_ = type_.value_type
        columns[str(field.name)] = str(type_)
    return columns


def _row(path: str, index: int, names: list[str], cells: Sequence[str | RowProblem]) -> SourceRow:
    """A row of a batch where some value could not be read: the first such is its problem."""
    for cell in cells:
        if isinstance(cell, RowProblem):
            return SourceRow(path, str(index), {}, cell)
    return SourceRow(path, str(index), dict(zip(names, cells, strict=True)))  # type: ignore[arg-type]


def _texts(column: Any, name: str) -> tuple[list[str | RowProblem], bool]:
    """The text of every value of one column of a batch, and whether some value has none.

    A value that has none is a RowProblem in the list (only the slow way makes one).
    """
    try:
        return _whole_column(column), False
    except _UNCONVERTIBLE:
        return [_text(column[i], name) for i in range(len(column))], True


def _whole_column(column: Any) -> list[str | RowProblem]:
    """The text of every value of one column, converted at once where Arrow can."""
    type_ = column.type
    plain = type_.value_type if pa.types.is_dictionary(type_) else type_
    if _arrow_writes_text(plain):
        # Strings are themselves, integers their digits and decimals fixed-point with
        # their scale, as `canonical` writes them: Arrow converts a whole column at once.
        texts: list[str | RowProblem] = pc.fill_null(column.cast(pa.large_string()), "").to_pylist()
        return texts
    if pa.types.is_timestamp(type_) and type_.unit != "ns":
        stamps = _timestamp_texts(column)
        if stamps is not None:
            return stamps
    if pa.types.is_time64(type_) and type_.unit == "ns":
        return [_time_ns(nanos) for nanos in column.cast(pa.int64()).to_pylist()]
    if pa.types.is_float32(type_):
        return [_narrow_float(value, "f") for value in column.to_pylist()]
    if pa.types.is_float16(type_):
        return [_narrow_float(value, "e") for value in column.to_pylist()]
    # A map becomes a JSON object (a list of pairs when its keys repeat).
    return [canonical(value) for value in column.to_pylist(maps_as_pydicts="strict")]


#: Instants (µs since the epoch) between which Arrow's and Python's texts agree.
_SAFE_MICROS: Final = (-30_610_137_600_000_000, 253_402_128_000_000_000)  # 1000-01-02, 9999-12-30


def _timestamp_texts(column: Any) -> list[str | RowProblem] | None:
    """A timestamp column's texts as `canonical` writes them, a column at a time.

    In UTC with a `Z` when the type has a zone, fractions only when non-zero. None when a
    value lies outside the years 1000 to 9999: each value then goes the slow way.
    """
    micros = column.cast(pa.timestamp("us", column.type.tz)).cast(pa.int64())
    low, high = pc.min_max(micros).values()
    if low.is_valid and not (_SAFE_MICROS[0] <= low.as_py() and high.as_py() <= _SAFE_MICROS[1]):
        return None
    zone = "UTC" if column.type.tz else None
    texts = pc.strftime(micros.cast(pa.timestamp("us", zone)), format="%Y-%m-%dT%H:%M:%S")
    texts = pc.replace_substring_regex(texts, r"\.0+$", "")
    if zone:
        texts = pc.binary_join_element_wise(texts, pa.scalar("Z"), "")
    result: list[str | RowProblem] = pc.fill_null(texts, "").to_pylist()
    return result


def _text(scalar: Any, name: str) -> str | RowProblem:
    """One value the fast way could not convert: its text, or why it has none."""
    try:
        return canonical(scalar.as_py(maps_as_pydicts="strict"))
    except _UNCONVERTIBLE:
        pass
    try:
        return canonical(scalar.as_py())
    except _UNCONVERTIBLE as exc:
        return RowProblem(
            "value",
            f"column {name!r} holds a {scalar.type} value that cannot be read "
            f"({type(exc).__name__}: {exc})",
            column=name,
        )


def _time_ns(nanos: int | None) -> str:
    if nanos is None:
        return ""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    if fraction % 1000:
        return f"{text}.{fraction:09d}"
    if fraction:
        return f"{text}.{fraction // 1000:06d}"
    return text


def _narrow_float(value: float | None, code: str) -> str:
    """A 32-bit (`code` "f") or 16-bit ("e") float with the fewest digits that read back."""
    if value is None:
        return ""
    if value != value or value in (float("inf"), float("-inf")):
        return canonical(value)
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        try:
            if struct.unpack(code, struct.pack(code, float(text)))[0] == value:
                break
        except OverflowError:  # rounded past the largest finite value of the type
            continue
    else:  # pragma: no cover - 17 digits always read back
        return canonical(value)
    return canonical(Decimal(text).normalize())


def _size(path: str) -> int:
    return size(path)
