from datetime import UTC
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backfill.ids import KeyValueError, external_id, normalise_key, parse_timestamp


@pytest.mark.parametrize(
    ("text", "key_type", "expected"),
    [
        pytest.param("00123", "string", "00123", id="string-keeps-zeros"),
        pytest.param(" a ", "string", " a ", id="string-exact"),
        pytest.param("00123", "int", "123", id="int-zeros"),
        pytest.param(" -7 ", "int", "-7", id="int-blanks-sign"),
        pytest.param("1234567890123456789012", "int", "1234567890123456789012", id="int-big"),
        pytest.param("1.50", "decimal", "1.5", id="decimal-trailing-zero"),
        pytest.param("1E+2", "decimal", "100", id="decimal-exponent"),
        pytest.param("-0.000", "decimal", "0", id="decimal-negative-zero"),
        pytest.param("0.000001", "decimal", "0.000001", id="decimal-small"),
        pytest.param(
            "2024-03-05T16:22:09+02:00", "timestamp", "2024-03-05T14:22:09.000000Z", id="ts-offset"
        ),
        pytest.param(
            "2024-03-05 14:22:09", "timestamp", "2024-03-05T14:22:09.000000Z", id="ts-naive"
        ),
        pytest.param(
            "2024-03-05T14:22:09.123Z", "timestamp", "2024-03-05T14:22:09.123000Z", id="ts-z"
        ),
    ],
)
def test_normalise_key(text, key_type, expected):
    assert normalise_key(text, key_type, UTC) == expected


@pytest.mark.parametrize(
    ("text", "key_type"),
    [
        ("", "string"),
        ("1.0", "int"),
        ("12a", "int"),
        ("NaN", "decimal"),
        ("Infinity", "decimal"),
        ("abc", "decimal"),
        ("yesterday", "timestamp"),
        ("   ", "int"),
    ],
)
def test_normalise_key_refuses(text, key_type):
    with pytest.raises(KeyValueError):
        normalise_key(text, key_type, UTC)


def test_naive_timestamps_are_read_in_the_mapping_timezone():
    paris = ZoneInfo("Europe/Paris")
    assert parse_timestamp("2024-07-01 12:00:00", paris).isoformat() == "2024-07-01T10:00:00+00:00"


def test_external_id_format_is_fixed():
    value = external_id("acme", ["evt_1"])
    assert value == "acme_c73dd2acbf92fbf60d1d58444021b1ce"
    assert len(external_id("acme", ["x" * 10_000])) == len("acme_") + 32


@given(st.lists(st.text(min_size=1), min_size=1, max_size=4))
def test_external_id_depends_only_on_values(values):
    assert external_id("ns", values) == external_id("ns", list(values))
    assert external_id("ns", values) != external_id("other", values)


@given(st.lists(st.text(min_size=1), min_size=2, max_size=4, unique=True))
def test_key_values_do_not_run_together(values):
    joined = ["".join(values)]
    assert external_id("ns", values) != external_id("ns", joined)


@given(st.integers(), st.integers(min_value=0, max_value=5))
def test_int_and_decimal_forms_of_one_number_agree(number, zeros):
    text = f"{number}"
    padded = ("-" if number < 0 else "") + "0" * zeros + str(abs(number))
    assert normalise_key(padded, "int", UTC) == normalise_key(text, "int", UTC)
    assert normalise_key(f"{text}.{'0' * zeros}" if zeros else text, "decimal", UTC) == str(number)


def test_early_years_are_zero_padded_on_every_platform():
    assert normalise_key("0999-05-01T00:00:00Z", "timestamp", UTC) == "0999-05-01T00:00:00.000000Z"


def test_out_of_range_values_are_key_errors_not_crashes():
    with pytest.raises(KeyValueError):
        normalise_key("0001-01-01T00:00:00+01:00", "timestamp", UTC)
    with pytest.raises(KeyValueError):
        normalise_key("1e999999999999", "decimal", UTC)
    assert normalise_key("9" * 5000, "int", UTC) == "9" * 5000
    assert normalise_key("-000", "int", UTC) == "0"


def test_offsets_with_seconds_are_refused_not_shifted():
    with pytest.raises(KeyValueError, match="seconds"):
        parse_timestamp("2000-01-01T00:00:00.000001+00:00:00.000001", UTC)
    with pytest.raises(KeyValueError, match="seconds"):
        parse_timestamp("2000-01-01T00:00:00+01:00:30", UTC)
    assert (
        parse_timestamp("2000-01-01T00:00:00+05:30", UTC).isoformat() == "1999-12-31T18:30:00+00:00"
    )


@given(
    st.text(alphabet="abcxyz-._0123456789", min_size=1, max_size=10),
    st.lists(st.text(), min_size=1, max_size=3),
)
def test_the_documented_formula_is_the_implementation(namespace, values):
    import hashlib
    import json

    # README, "Identity of an event", computed independently.
    text = json.dumps([1, namespace, values], separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    assert external_id(namespace, values) == f"{namespace}_{digest}"
