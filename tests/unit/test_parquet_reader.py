import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backfill.errors import SourceError
from backfill.readers.files import ReadProgress
from backfill.readers.parquet import read_header, read_rows, schema_problem

T = 1680984557  # 2023-04-08T20:09:17Z


def write(tmp_path, table: pa.Table, name="in.parquet", **options):
    path = str(tmp_path / name)
    pq.write_table(table, path, **options)
    return path


def test_rows_are_read_across_row_groups_with_0_based_positions(tmp_path):
    table = pa.table({"id": list(range(25)), "name": [f"n{i}" for i in range(25)]})
    path = write(tmp_path, table, row_group_size=4)
    assert pq.ParquetFile(path).metadata.num_row_groups == 7
    rows = list(read_rows(path, batch_rows=3))
    assert [row.position for row in rows] == [str(i) for i in range(25)]
    assert rows[17].values == {"id": "17", "name": "n17"}
    assert all(row.source == path and row.problem is None for row in rows)
    assert read_header(path) == ["id", "name"]


def test_every_type_becomes_canonical_text(tmp_path):
    struct = pa.struct([("a", pa.int64()), ("at", pa.timestamp("us", tz="UTC"))])
    table = pa.table(
        {
            "i64": pa.array([-(2**63), None], pa.int64()),
            "f64": pa.array([1e20, 3.0], pa.float64()),
            "f32": pa.array([0.1, 1.5e-7], pa.float32()),
            "f16": pa.array([0.1, -2.5], pa.float16()),
            "flag": pa.array([True, False]),
            "text": pa.array(["café", ""]),
            "ts_ns": pa.array([T * 10**9 + 123456789, T * 10**9], pa.timestamp("ns")),
            "ts_ns_utc": pa.array([T * 10**9 + 1, T * 10**9], pa.timestamp("ns", tz="UTC")),
            "ts_us_berlin": pa.array(
                [T * 10**6 + 5, T * 10**6], pa.timestamp("us", tz="Europe/Berlin")
            ),
            "ts_ms": pa.array([T * 1000 + 120, T * 1000], pa.timestamp("ms")),
            "dec": pa.array([Decimal("193.00"), Decimal("-0.05")], pa.decimal128(12, 2)),
            "date": pa.array([dt.date(2023, 4, 8), dt.date(1, 1, 1)], pa.date32()),
            "time_us": pa.array([dt.time(20, 9, 17), dt.time(20, 9, 17, 5)], pa.time64("us")),
            "time_ns": pa.array([72557_000000123, 72557_000001000], pa.time64("ns")),
            "bin": pa.array([b"\xff\x00", b"ok"], pa.binary()),
            "lst": pa.array([[1, 2], []], pa.list_(pa.int64())),
            "st": pa.array([{"a": 1, "at": dt.datetime(2023, 4, 8, tzinfo=dt.UTC)}, None], struct),
            "dic": pa.array(["x", "y"]).dictionary_encode(),
            "mp": pa.array([[("k", 1)], [("k", 1), ("k", 2)]], pa.map_(pa.string(), pa.int64())),
        }
    )
    path = write(tmp_path, table)
    first, second = (row.values for row in read_rows(path))
    assert first == {
        "i64": "-9223372036854775808",
        "f64": "100000000000000000000",
        "f32": "0.1",
        "f16": "0.1",
        "flag": "true",
        "text": "café",
        "ts_ns": "2023-04-08T20:09:17.123456789",
        "ts_ns_utc": "2023-04-08T20:09:17.000000001Z",
        "ts_us_berlin": "2023-04-08T20:09:17.000005Z",
        "ts_ms": "2023-04-08T20:09:17.120000",
        "dec": "193.00",
        "date": "2023-04-08",
        "time_us": "20:09:17",
        "time_ns": "20:09:17.000000123",
        "bin": "base64:/wA=",
        "lst": "[1,2]",
        "st": '{"a":1,"at":"2023-04-08T00:00:00Z"}',
        "dic": "x",
        "mp": '{"k":1}',
    }
    assert second == {
        "i64": "",
        "f64": "3",
        "f32": "0.00000015",
        "f16": "-2.5",
        "flag": "false",
        "text": "",
        "ts_ns": "2023-04-08T20:09:17",
        "ts_ns_utc": "2023-04-08T20:09:17Z",
        "ts_us_berlin": "2023-04-08T20:09:17Z",
        "ts_ms": "2023-04-08T20:09:17",
        "dec": "-0.05",
        "date": "0001-01-01",
        "time_us": "20:09:17.000005",
        "time_ns": "20:09:17.000001",
        "bin": "ok",
        "lst": "[]",
        "st": "",
        "dic": "y",
        "mp": '[["k",1],["k",2]]',  # repeated keys: the pairs, none lost
    }


def test_nulls_of_every_type_are_empty(tmp_path):
    types = [
        pa.int32(),
        pa.float64(),
        pa.float32(),
        pa.bool_(),
        pa.string(),
        pa.timestamp("ns", tz="UTC"),
        pa.decimal128(5, 2),
        pa.date32(),
        pa.time64("ns"),
        pa.binary(),
        pa.list_(pa.string()),
        pa.null(),
    ]
    table = pa.table({f"c{i}": pa.array([None], t) for i, t in enumerate(types)})
    (row,) = read_rows(write(tmp_path, table))
    assert row.problem is None
    assert row.values == {f"c{i}": "" for i in range(len(types))}


def test_a_value_python_cannot_hold_makes_only_its_row_a_problem(tmp_path):
    year_10000 = 253402300800000
    table = pa.table({"id": [1, 2], "at": pa.array([year_10000, T * 1000], pa.timestamp("ms"))})
    bad, good = read_rows(write(tmp_path, table))
    assert bad.problem is not None and bad.problem.code == "value"
    assert bad.problem.column == "at" and bad.values == {}
    assert good.values == {"id": "2", "at": "2023-04-08T20:09:17"}


def test_progress_advances_in_proportion_to_rows(tmp_path):
    path = write(tmp_path, pa.table({"id": list(range(100))}), row_group_size=10)
    progress = ReadProgress(total_bytes=10**6, done_bytes=500)
    seen = []
    for _ in read_rows(path, progress=progress, batch_rows=10):
        seen.append(progress.done_bytes)
    size = os.path.getsize(path)
    assert seen[49] == 500 + size * 50 // 100
    assert seen == sorted(seen) and progress.done_bytes == 500 + size


def test_schema_problem_names_the_file_that_differs_and_how(tmp_path):
    first = write(tmp_path, pa.table({"id": [1], "name": ["a"]}), "a.parquet")
    same = write(
        tmp_path, pa.table({"name": pa.array(["b"]).dictionary_encode(), "id": [2]}), "b.parquet"
    )
    retyped = write(tmp_path, pa.table({"id": ["3"], "name": ["c"]}), "c.parquet")
    missing = write(tmp_path, pa.table({"id": [4]}), "d.parquet")
    extra = write(tmp_path, pa.table({"id": [5], "name": ["e"], "more": [1.5]}), "e.parquet")
    assert schema_problem([first]) is None
    assert schema_problem([first, same]) is None
    problem = schema_problem([first, same, retyped, missing])
    assert problem is not None and problem.startswith(f"{retyped} does not match {first}")
    assert "column 'id' is string there but int64" in problem
    problem = schema_problem([first, missing])
    assert problem is not None and "has no column 'name'" in problem and missing in problem
    problem = schema_problem([first, extra])
    assert problem is not None and "extra column 'more' (double)" in problem


@pytest.mark.parametrize(
    "content",
    [b"id,name\n1,a\n", b"", b"PAR1 but not really PAR1"],
)
def test_a_file_that_is_not_parquet_is_a_source_error(tmp_path, content):
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="not a readable Parquet file") as caught:
        read_header(str(path))
    assert caught.value.file == str(path)
    with pytest.raises(SourceError):
        list(read_rows(str(path)))
    with pytest.raises(SourceError):
        schema_problem([str(path)])


def test_a_truncated_file_is_a_source_error(tmp_path):
    path = write(tmp_path, pa.table({"id": list(range(1000))}), row_group_size=100)
    data = Path(path).read_bytes()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        read_header(path)


def test_damaged_pages_mid_file_name_the_last_good_row(tmp_path):
    texts = [os.urandom(16).hex() for _ in range(4000)]
    path = write(
        tmp_path,
        pa.table({"text": texts}),
        row_group_size=1000,
        compression="snappy",
        use_dictionary=False,
    )
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(2).column(0)  # damage the third row group's pages
    start = column.data_page_offset
    data = bytearray(Path(path).read_bytes())
    data[start : start + column.total_compressed_size] = b"\x00" * column.total_compressed_size
    with open(path, "wb") as fh:
        fh.write(data)
    rows = []
    with pytest.raises(SourceError, match="damaged") as caught:
        for row in read_rows(path, batch_rows=1000):
            rows.append(row)
    assert [row.values["text"] for row in rows] == texts[:2000]
    assert "after row 1999" in str(caught.value)


def test_a_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        read_header(str(tmp_path / "absent.parquet"))


# Columns Arrow converts at once must read exactly as `canonical` writes each value.
_YEAR_1000 = -30_610_137_600  # 1000-01-02T00:00:00Z, seconds
_YEAR_9999 = 253_402_128_000  # 9999-12-30T00:00:00Z


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
@pytest.mark.parametrize("zone", [None, "UTC", "Asia/Kolkata", "America/St_Johns"])
def test_whole_timestamp_columns_read_as_each_value_does(tmp_path, unit, zone):
    import random

    from backfill.readers.values import canonical

    scale = {"s": 1, "ms": 1000, "us": 1_000_000}[unit]
    rng = random.Random(f"{unit}{zone}")
    values = [rng.randint(_YEAR_1000 * scale, _YEAR_9999 * scale) for _ in range(2000)]
    values += [v - v % scale for v in values[:200]] + [0, None, _YEAR_1000 * scale]
    column = pa.array(values, pa.int64()).cast(pa.timestamp(unit, zone))
    rows = list(read_rows(write(tmp_path, pa.table({"at": column}))))
    assert [row.values["at"] for row in rows] == [canonical(v) for v in column.to_pylist()]


def test_timestamps_outside_the_years_1000_to_9999_are_read_one_by_one(tmp_path):
    early = dt.datetime(999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    column = pa.array(
        [early, dt.datetime(2023, 4, 8, 20, 9, 17, tzinfo=dt.UTC)], pa.timestamp("s", "UTC")
    )
    rows = list(read_rows(write(tmp_path, pa.table({"at": column}))))
    assert [row.values["at"] for row in rows] == ["0999-12-31T23:59:59Z", "2023-04-08T20:09:17Z"]


@pytest.mark.parametrize(
    "type_",
    [pa.decimal128(12, 2), pa.decimal128(38, 9), pa.decimal128(5, 0), pa.decimal128(20, 6)],
)
def test_whole_decimal_columns_read_as_each_value_does(tmp_path, type_):
    import random

    from backfill.readers.values import canonical

    rng = random.Random(str(type_))
    digits = type_.precision
    values = [
        Decimal(rng.randint(-(10**digits) + 1, 10**digits - 1)).scaleb(-type_.scale)
        for _ in range(500)
    ]
    tiny = Decimal(1).scaleb(-type_.scale)
    values += [Decimal(0).scaleb(-type_.scale), tiny, -tiny, None]
    column = pa.array(values, type_)
    rows = list(read_rows(write(tmp_path, pa.table({"amount": column}))))
    assert [row.values["amount"] for row in rows] == [canonical(v) for v in column.to_pylist()]
