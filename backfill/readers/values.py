"""Typed values (Parquet, JSON) as text: the one form templates see, whatever the format.

CSV gives text as written; Parquet and JSON give typed values, and `canonical` turns
each into text by fixed rules, so a value reads the same in every format and on every
machine (no locale, no exponent, no local time zone). This module imports nothing from
`backfill` and nothing outside the standard library: pandas values (a `Timestamp` with
nanoseconds, `NaT`) are recognised by what they do, not by their class.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

__all__ = ["canonical", "canonical_column"]

_UTC: Final = dt.UTC
_ZERO: Final = dt.timedelta(0)


def canonical(value: object) -> str:
    """The text of a typed value, by one set of rules.

    Nothing is text, booleans are JSON's, numbers are fixed-point (never an exponent):

    >>> canonical(None), canonical(True), canonical(False), canonical(-42)
    ('', 'true', 'false', '-42')

    A float is written with the fewest digits that read back as the same float:

    >>> [canonical(x) for x in (3.0, 0.1, 1e20, 1.5e-7, -2.5)]
    ['3', '0.1', '100000000000000000000', '0.00000015', '-2.5']
    >>> [canonical(x) for x in (float("nan"), float("inf"), float("-inf"))]
    ['NaN', 'Infinity', '-Infinity']

    A Decimal keeps its scale (a money amount keeps its cents):

    >>> canonical(Decimal("193.00")), canonical(Decimal("1E+3")), canonical(Decimal("-1.5E-3"))
    ('193.00', '1000', '-0.0015')

    An aware datetime is written in UTC with a `Z`; fractions only when non-zero
    (microseconds, or all nine digits for a pandas Timestamp with nanoseconds):

    >>> berlin = dt.timezone(dt.timedelta(hours=2))
    >>> canonical(dt.datetime(2023, 4, 8, 22, 9, 17, tzinfo=berlin))
    '2023-04-08T20:09:17Z'
    >>> canonical(dt.datetime(2023, 4, 8, 20, 9, 17, 5000, tzinfo=dt.UTC))
    '2023-04-08T20:09:17.005000Z'

    A naive datetime (no zone known) is written the same way without the `Z`:

    >>> canonical(dt.datetime(2023, 4, 8, 20, 9, 17))
    '2023-04-08T20:09:17'
    >>> canonical(dt.date(2023, 4, 8)), canonical(dt.time(20, 9, 17))
    ('2023-04-08', '20:09:17')
    >>> canonical(dt.time(1, 2, 3, 4))
    '01:02:03.000004'

    Bytes are their UTF-8 text when they are valid UTF-8, else base64 with a prefix:

    >>> canonical(b"caf\\xc3\\xa9"), canonical(b"\\xff\\x00")
    ('café', 'base64:/wA=')

    Lists, tuples and dicts are compact JSON. Numbers stay JSON numbers, written by the
    rules above (non-finite ones, which JSON has no numbers for, become strings);
    `None` stays `null`; every other leaf becomes the JSON string of its text:

    >>> canonical([1, 2.0, None, True, Decimal("1.50")])
    '[1,2,null,true,1.50]'
    >>> canonical({"at": dt.datetime(2023, 4, 8, tzinfo=dt.UTC), "tags": ("é", b"x")})
    '{"at":"2023-04-08T00:00:00Z","tags":["é","x"]}'

    Text is returned unchanged; anything else is `str(value)`:

    >>> canonical("  as given "), canonical(dt.timedelta(seconds=5))
    ('  as given ', '0:00:05')
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)  # an IntEnum's str() may be its name
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime):
        return _datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value))
    if isinstance(value, list | tuple | Mapping):
        return _json(value)
    return str(value)


def canonical_column(values: Sequence[object]) -> Sequence[str]:
    """`canonical` of each value, faster for a column whose values share one type.

    A column of text is returned as it is; otherwise a new list:

    >>> canonical_column(["a", None, "b"]), canonical_column([Decimal("1.50"), None])
    (['a', '', 'b'], ['1.50', ''])
    >>> canonical_column([dt.datetime(2023, 4, 8, 20, 9, 17, 5, tzinfo=dt.UTC)])
    ['2023-04-08T20:09:17.000005Z']
    """
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    kinds.discard(type(None))
    if len(kinds) != 1:
        return [canonical(value) for value in values]
    kind = kinds.pop()
    if kind is str:
        return ["" if value is None else value for value in values] if nulls else values  # type: ignore[return-value,misc]
    convert = _BY_TYPE.get(kind, canonical)
    if kind is dt.datetime and not nulls:
        if set(map(dt.datetime.utcoffset, values)) == {_ZERO}:  # type: ignore[arg-type]
            # Aware UTC times, the common case of a timestamptz column: isoformat then
            # only needs its "+00:00" written as "Z".
            return [text[:-6] + "Z" for text in map(dt.datetime.isoformat, values)]  # type: ignore[arg-type]
    if nulls:
        return ["" if value is None else convert(value) for value in values]
    return list(map(convert, values))


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    # repr() is the shortest text that reads back as the same float; Decimal only moves
    # its point (exact), and normalize() drops the ".0" repr adds to whole numbers.
    return format(Decimal(repr(value)).normalize(), "f")


def _decimal(value: Decimal) -> str:
    if not value.is_finite():
        return str(value)  # 'NaN', 'sNaN', 'Infinity', '-Infinity'
    return format(value, "f")


def _datetime(value: dt.datetime) -> str:
    if value.__class__ is dt.datetime:
        # The common case, in C: isoformat writes these rules' digits and fraction.
        try:
            if value.utcoffset() is None:
                return value.isoformat()
            return value.astimezone(_UTC).replace(tzinfo=None).isoformat() + "Z"
        except OverflowError:  # the first or last day of year 1 / 9999 in UTC
            return value.isoformat()
    if value != value:  # pandas.NaT (a datetime subclass): not a time at all
        return ""
    aware = value.utcoffset() is not None
    if aware:
        try:
            value = value.astimezone(_UTC)
        except OverflowError:  # the first or last day of year 1 / 9999 in UTC
            return value.isoformat()
    # pandas.Timestamp keeps nanoseconds beyond the microseconds datetime has.
    nanos: int = getattr(value, "nanosecond", 0) or 0
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if nanos:
        text += f".{value.microsecond * 1000 + nanos:09d}"
    elif value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z" if aware else text


def _bytes(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def _json(value: object) -> str:
    parts: list[str] = []
    _write_json(value, parts)
    return "".join(parts)


def _write_json(value: object, out: list[str]) -> None:
    """Compact JSON of `value` into `out`; numbers written by `canonical`, not by repr."""
    if value is None:
        out.append("null")
    elif isinstance(value, bool | int):
        out.append(canonical(value))
    elif isinstance(value, float | Decimal):
        finite = math.isfinite(value) if isinstance(value, float) else value.is_finite()
        # JSON has no NaN or Infinity numbers: those are written as strings.
        out.append(canonical(value) if finite else _string(canonical(value)))
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write_json(item, out)
        out.append("]")
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(_string(canonical(key)))
            out.append(":")
            _write_json(item, out)
        out.append("}")
    else:
        out.append(_string(canonical(value)))


_BY_TYPE: Final[dict[type, Callable[[Any], str]]] = {
    bool: lambda value: "true" if value else "false",
    int: int.__repr__,
    float: _float,
    Decimal: _decimal,
    dt.datetime: _datetime,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
}


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
