import datetime as dt
import doctest
import math
from decimal import Decimal
from enum import IntEnum

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.readers import values
from backfill.readers.values import canonical

BERLIN = dt.timezone(dt.timedelta(hours=2))


def test_the_docstring_examples_hold():
    result = doctest.testmod(values)
    assert result.attempted > 10 and result.failed == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (2**70, "1180591620717411303424"),
        ("", ""),
        ("  kept as given\n", "  kept as given\n"),
    ],
)
def test_none_booleans_ints_and_text(value, text):
    assert canonical(value) == text


def test_an_int_enum_is_its_number():
    class Level(IntEnum):
        HIGH = 3

    assert canonical(Level.HIGH) == "3"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "0.00000015"),
        (-2.5, "-2.5"),
        (123456.789, "123456.789"),
        (0.0, "0"),
        (1e-5, "0.00001"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_floats_are_fixed_point_with_the_shortest_digits(value, text):
    assert canonical(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("193.00"), "193.00"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-1.5E-3"), "-0.0015"),
        (Decimal("0.000"), "0.000"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("NaN"), "NaN"),
        (Decimal("-Infinity"), "-Infinity"),
    ],
)
def test_decimals_keep_their_scale_without_an_exponent(value, text):
    assert canonical(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2023, 4, 8, 20, 9, 17, tzinfo=dt.UTC), "2023-04-08T20:09:17Z"),
        (dt.datetime(2023, 4, 8, 22, 9, 17, tzinfo=BERLIN), "2023-04-08T20:09:17Z"),
        (dt.datetime(2023, 4, 8, 20, 9, 17, 120, tzinfo=dt.UTC), "2023-04-08T20:09:17.000120Z"),
        (dt.datetime(2023, 4, 8, 20, 9, 17), "2023-04-08T20:09:17"),
        (dt.datetime(2023, 4, 8, 20, 9, 17, 500000), "2023-04-08T20:09:17.500000"),
        (dt.datetime(5, 1, 2, 3, 4, 5), "0005-01-02T03:04:05"),
        (pd.Timestamp("2023-04-08 22:09:17+02:00"), "2023-04-08T20:09:17Z"),
        (pd.Timestamp("2023-04-08 20:09:17.123456789", tz="UTC"), "2023-04-08T20:09:17.123456789Z"),
        (pd.Timestamp("2023-04-08 20:09:17.000000001"), "2023-04-08T20:09:17.000000001"),
        (pd.Timestamp("2023-04-08 20:09:17.25"), "2023-04-08T20:09:17.250000"),
        (pd.NaT, ""),
        (dt.date(2023, 4, 8), "2023-04-08"),
        (dt.time(20, 9, 17), "20:09:17"),
        (dt.time(20, 9, 17, 5), "20:09:17.000005"),
    ],
)
def test_dates_and_times(value, text):
    assert canonical(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"plain", "plain"),
        ("café".encode(), "café"),
        (b"", ""),
        (b"\xff\x00\x01", "base64:/wAB"),
        (bytearray(b"ok"), "ok"),
        (memoryview(b"\xc3"), "base64:ww=="),
    ],
)
def test_bytes_are_utf8_text_or_base64(value, text):
    assert canonical(value) == text


def test_containers_are_compact_json_with_canonical_leaves():
    value = {
        "n": [1, 2.0, 1e20, Decimal("1.50"), None, True],
        "at": dt.datetime(2023, 4, 8, 22, 9, 17, tzinfo=BERLIN),
        "on": dt.date(2023, 4, 8),
        "raw": b"\xff",
        "odd": [float("nan"), float("-inf")],
        "text": 'é "quoted"',
        "pair": ("a", 1),
        7: "int key",
    }
    assert canonical(value) == (
        '{"n":[1,2,100000000000000000000,1.50,null,true],'
        '"at":"2023-04-08T20:09:17Z","on":"2023-04-08","raw":"base64:/w==",'
        '"odd":["NaN","-Infinity"],"text":"é \\"quoted\\"","pair":["a",1],"7":"int key"}'
    )
    assert canonical([]) == "[]" and canonical({}) == "{}" and canonical(()) == "[]"


def test_anything_else_is_str():
    assert canonical(dt.timedelta(seconds=5)) == "0:00:05"
    assert canonical(frozenset()) == "frozenset()"


@given(st.integers())
def test_ints_round_trip_without_an_exponent(value):
    text = canonical(value)
    assert "e" not in text.lower()
    assert int(text) == value


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimals_round_trip_without_an_exponent(value):
    text = canonical(value)
    assert "e" not in text.lower()
    assert Decimal(text) == value
    if value.as_tuple().exponent <= 0:  # type: ignore[operator]
        assert Decimal(text).as_tuple() == value.as_tuple()  # the scale is kept


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_without_an_exponent(value):
    text = canonical(value)
    assert "e" not in text.lower()
    assert float(text) == value
    assert math.copysign(1, float(text)) == math.copysign(1, value)
    # The shortest digits: no trailing zero after the point, no ".0".
    assert not text.endswith(".") and not ("." in text and text.endswith("0"))


_ZONES = st.sampled_from([None, dt.UTC, BERLIN, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])
_SCALARS = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(places=3),
    st.datetimes(timezones=_ZONES),
    st.dates(),
)


@given(st.lists(_SCALARS, max_size=8))
def test_a_column_converts_as_each_value_does(column):
    assert list(values.canonical_column(column)) == [canonical(v) for v in column]


@given(st.sampled_from([str, int, Decimal, dt.datetime]), st.data())
def test_a_column_of_one_type_converts_as_each_value_does(kind, data):
    strategy = {
        str: st.text(max_size=5),
        int: st.integers(),
        Decimal: st.decimals(places=2),
        dt.datetime: st.datetimes(timezones=st.sampled_from([dt.UTC, BERLIN, None])),
    }[kind]
    column = data.draw(st.lists(st.one_of(st.none(), strategy) | strategy, max_size=20))
    utc = data.draw(st.lists(st.datetimes(timezones=st.just(dt.UTC)), max_size=20))
    assert list(values.canonical_column(column)) == [canonical(v) for v in column]
    assert list(values.canonical_column(utc)) == [canonical(v) for v in utc]
