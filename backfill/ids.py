"""Deterministic event identity: key normalisation and the externalId format.

Format (id-format version 1): ``<namespace>_<32 lowercase hex>``, where the hex is
the first 128 bits of SHA-256 over the JSON array ``[1, namespace, [v1, v2, ...]]``
of the normalised key values, in the mapping's key order (compact separators,
UTF-8, no ASCII escaping). The same data gives the same id on any machine, in any
row order, chunk size or file format, because only normalised values go in.

Normalisation by declared type:

- ``string``: exactly the text, nothing stripped.
- ``int``: an optional sign and digits, surrounding blanks ignored; ``00123`` -> ``123``.
- ``decimal``: no exponent, no trailing zeros, no ``-0``; ``1.50`` -> ``1.5``, ``1E+2`` -> ``100``.
- ``timestamp``: the instant in UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; values without an
  offset are read in the mapping's timezone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Context, Decimal, InvalidOperation
from typing import Final

ID_FORMAT_VERSION: Final = 1
KEY_TYPES: Final = ("string", "int", "decimal", "timestamp")
NAMESPACE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_INT = re.compile(r"^[+-]?[0-9]+\Z")
#: Text json.dumps(..., ensure_ascii=False) writes unchanged between quotes.
_PLAIN_JSON = re.compile(r'[^"\\\x00-\x1f]*')
_ZONE_WORD = re.compile(r"\s*(?:UTC|GMT)\Z", re.IGNORECASE)
_SPACED_OFFSET = re.compile(r"\s+([+-][0-9]{2}(?::?[0-9]{2})?)\Z")
#: Epoch units a mapping may declare for its timestamp column, in seconds.
EPOCH_UNITS: Final = {"s": 1, "ms": 1000, "us": 1_000_000}
_SECONDS_OFFSET = re.compile(r"[+-][0-9]{2}:?[0-9]{2}:[0-9]{2}(\.[0-9]+)?$")
#: A key like 1E+999999 would expand to a million digits: refuse it.
MAX_DECIMAL_EXPONENT: Final = 1000


class KeyValueError(ValueError):
    """A key value that does not normalise under its declared type."""


def parse_timestamp(text: str, tz: tzinfo) -> datetime:
    """Parse an ISO 8601 timestamp; a value without offset is read in `tz`.

    >>> parse_timestamp("2024-03-05 14:22:09", UTC).isoformat()
    '2024-03-05T14:22:09+00:00'
    >>> parse_timestamp("2023-04-08 21:09:17.000 +0100", UTC).isoformat()
    '2023-04-08T20:09:17+00:00'
    >>> parse_timestamp("2023-04-08 20:09:17 UTC", UTC).isoformat()
    '2023-04-08T20:09:17+00:00'
    """
    return in_zone(read_timestamp(text), tz, text)


def read_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp as written: aware when it has an offset, naive when not.

    >>> read_timestamp("2024-03-05 14:22:09").tzinfo is None
    True
    """
    value = text.strip()
    if not value:
        raise KeyValueError("empty timestamp")
    # As warehouses write them: "... 20:09:17 UTC" (BigQuery), "... 21:09:17.000 +0100"
    # (Snowflake TIMESTAMP_TZ).
    value = _SPACED_OFFSET.sub(r"\1", _ZONE_WORD.sub("+00:00", value))
    if _SECONDS_OFFSET.search(value):
        # Python drops the fraction of such an offset: refuse rather than shift the instant.
        raise KeyValueError(f"a UTC offset with seconds is not supported: {value[:60]!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise KeyValueError(f"not an ISO 8601 timestamp: {value[:60]!r}") from None


def in_zone(moment: datetime, tz: tzinfo, text: str = "") -> datetime:
    """`moment` in UTC, read in `tz` when it has no offset."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise KeyValueError(f"out of range: {(text or str(moment))[:60]!r}") from None


def parse_epoch(text: str, unit: str) -> datetime:
    """A Unix time in seconds, milliseconds or microseconds (`unit`), as a UTC datetime.

    >>> parse_epoch("1680984557123", "ms").isoformat()
    '2023-04-08T20:09:17.123000+00:00'
    """
    value = text.strip()
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not value or not number.is_finite():
        raise KeyValueError(f"not a Unix time in {unit}: {value[:60]!r}")
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=int(number * 1_000_000 / EPOCH_UNITS[unit])
        )
    except OverflowError:
        raise KeyValueError(f"out of range: {value[:60]!r}") from None


def format_utc(moment: datetime, *, digits: int = 6) -> str:
    """ISO 8601 UTC with a fixed number of fractional digits and a four-digit year.

    strftime's %Y does not zero-pad years before 1000 on every platform; isoformat does.

    >>> format_utc(datetime(999, 5, 1, tzinfo=UTC), digits=3)
    '0999-05-01T00:00:00.000Z'
    """
    # isoformat() always writes four year digits: "...T14:22:09.123000+00:00".
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text[: 20 + digits] + "Z"


def normalise_key(text: str, key_type: str, tz: tzinfo) -> str:
    """Return the canonical text of one key value, or raise KeyValueError."""
    if key_type == "string":
        if text == "":
            raise KeyValueError("empty key value")
        return text
    value = text.strip()
    if not value:
        raise KeyValueError("empty key value")
    if key_type == "int":
        if not _INT.match(value):
            raise KeyValueError(f"not an integer: {value[:60]!r}")
        # int() refuses more than 4300 digits; the text form needs no conversion.
        sign = "-" if value[0] == "-" else ""
        digits = value.lstrip("+-").lstrip("0") or "0"
        return sign + digits if digits != "0" else "0"
    if key_type == "decimal":
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise KeyValueError(f"not a decimal: {value[:60]!r}") from None
        if not number.is_finite():
            raise KeyValueError(f"not a finite decimal: {value[:60]!r}")
        if number.is_zero():
            return "0"
        exponent = number.as_tuple().exponent
        if not isinstance(exponent, int) or abs(exponent) > MAX_DECIMAL_EXPONENT:
            raise KeyValueError(f"decimal exponent out of range: {value[:60]!r}")
        # normalize() rounds to the context's precision: give it every digit there is.
        exact = Context(prec=max(1, len(number.as_tuple().digits)), Emax=10**9, Emin=-(10**9))
        return f"{number.normalize(exact):f}"
    if key_type == "timestamp":
        return format_utc(parse_timestamp(value, tz))
    raise ValueError(f"unknown key type {key_type!r}")


def external_id(namespace: str, normalised: Sequence[str]) -> str:
    """Build the externalId from a namespace and normalised key values.

    >>> external_id("acme", ["evt_1"])
    'acme_c73dd2acbf92fbf60d1d58444021b1ce'
    """
    # fullmatch: `$` would also match before a final newline, which json.dumps escapes.
    plain = _PLAIN_JSON.fullmatch
    if plain(namespace) and all([plain(v) for v in normalised]):
        # The same bytes json.dumps writes for strings with nothing to escape, faster.
        quoted = '","'.join(normalised)
        payload = f'[{ID_FORMAT_VERSION},"{namespace}",["{quoted}"]]'
    else:
        payload = json.dumps(
            [ID_FORMAT_VERSION, namespace, list(normalised)],
            ensure_ascii=False,
            separators=(",", ":"),
        )
    return f"{namespace}_{hashlib.sha256(payload.encode()).hexdigest()[:32]}"
