import gzip
import json
import os

import pytest

from backfill.errors import SourceError
from backfill.readers.files import ReadProgress
from backfill.readers.jsonl import read_header, read_rows


def write(tmp_path, content: str | bytes, name="in.jsonl"):
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return str(path)


def lines(*records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


BIGQUERY = lines(
    {"id": "1234567890123456789", "ts": "2023-04-08 20:09:17.123456 UTC", "email": "a@x.io"},
    {"id": "2", "ts": "2023-04-09 00:00:00 UTC", "amount": 193.00, "tags": ["a", "b"]},
    {"id": "3", "nested": {"ok": True, "n": None}, "amount": 1.5e-7},
)


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.gz"])
def test_plain_and_gzip_give_the_same_rows(tmp_path, name):
    path = write(tmp_path, BIGQUERY, name)
    compression = "gzip" if name.endswith(".gz") else ""
    assert read_header(path, compression) == ["id", "ts", "email", "amount", "tags", "nested"]
    rows = list(read_rows(path, compression=compression))
    assert [row.position for row in rows] == ["1", "2", "3"]
    assert all(row.problem is None and row.source == path for row in rows)
    assert rows[0].values == {
        "id": "1234567890123456789",
        "ts": "2023-04-08 20:09:17.123456 UTC",
        "email": "a@x.io",
    }
    # A key missing from a line is absent; json.dumps wrote 193.00 as 193.0.
    assert rows[1].values == {
        "id": "2",
        "ts": "2023-04-09 00:00:00 UTC",
        "amount": "193.0",
        "tags": '["a","b"]',
    }
    assert rows[2].values == {"id": "3", "nested": '{"ok":true,"n":null}', "amount": "0.00000015"}


def test_numbers_keep_the_digits_written(tmp_path):
    path = write(
        tmp_path,
        '{"a": 193.00, "b": 12345678901234567890.123456789, "c": 1e20, "d": 42, '
        '"e": -0.5, "f": [1.10, 2E-3], "g": null, "h": false, "i": NaN}\n',
    )
    (row,) = read_rows(path)
    assert row.values == {
        "a": "193.00",
        "b": "12345678901234567890.123456789",
        "c": "100000000000000000000",
        "d": "42",
        "e": "-0.5",
        "f": "[1.10,0.002]",
        "g": "",
        "h": "false",
        "i": "NaN",
    }


def test_the_header_is_the_union_of_the_first_records_keys_in_first_seen_order(tmp_path):
    records = [{"a": 1}] * 999 + [{"b": 1, "a": 2}, {"late": 1}]
    path = write(tmp_path, lines(*records))
    assert read_header(path) == ["a", "b"]  # "late" is record 1001


def test_a_bad_line_is_a_problem_and_reading_goes_on(tmp_path):
    content = '{"id": 1}\n{"id": 2,, }\n\n{"id": 3}\n[1, 2]\n"text"\n{"id": 4}\n'
    path = write(tmp_path, content)
    rows = list(read_rows(path))
    assert [(row.position, row.values) for row in rows] == [
        ("1", {"id": "1"}),
        ("2", {}),
        ("4", {"id": "3"}),
        ("5", {}),
        ("6", {}),
        ("7", {"id": "4"}),
    ]
    bad = rows[1].problem
    assert bad is not None and bad.code == "json"
    assert bad.message.startswith("line 2 is not valid JSON: ") and "column" in bad.message
    assert rows[3].problem is not None and rows[3].problem.code == "json"
    assert rows[3].problem.message == "line 5 is a JSON array, not an object"
    assert rows[4].problem is not None and rows[4].problem.message == (
        "line 6 is a JSON string, not an object"
    )
    assert read_header(path) == ["id"]


def test_invalid_utf8_makes_only_that_line_a_problem(tmp_path):
    path = write(tmp_path, b'{"a": "ok"}\n{"a": "bad\xff\xfe"}\n{"a": "caf\xc3\xa9"}\n')
    rows = list(read_rows(path))
    assert rows[1].problem is not None and rows[1].problem.code == "encoding"
    assert "line 2" in rows[1].problem.message and rows[1].values == {}
    assert rows[0].values == {"a": "ok"} and rows[2].values == {"a": "café"}


def test_blank_lines_crlf_and_a_bom_are_fine(tmp_path):
    path = write(tmp_path, '\ufeff{"a": 1}\r\n\r\n   \n{"a": 2}\r\n\n{"a": 3}')
    assert read_header(path) == ["a"]
    rows = list(read_rows(path))
    assert [(row.position, row.values["a"]) for row in rows] == [("1", "1"), ("4", "2"), ("6", "3")]


def test_a_five_megabyte_value_is_read(tmp_path):
    big = "x" * (5 * 1024 * 1024) + "é"
    path = write(tmp_path, lines({"id": 1, "body": big}, {"id": 2, "body": "small"}))
    rows = list(read_rows(path))
    assert rows[0].values["body"] == big
    assert rows[1].values == {"id": "2", "body": "small"}


@pytest.mark.parametrize(
    ("content", "fragment", "line"),
    [
        ("", "the file is empty: expected JSON objects, one per line", None),
        ("\n  \n\n", "the file is empty", None),
        ("\n[1, 2]\n3\n", "line 2 is a JSON array, not an object", 2),
        ('\n[\n  {"a": 1},\n  {"a": 2}\n]\n', "one JSON document spread over many lines", 2),
        ('[{"a": 1}, {"a": 2}]\n', "line 1 is a JSON array, not an object (one JSON document?", 1),
        ('{"a": [1,\n 2]}\n', "line 1 is not valid JSON", 1),
        ("not json\n", "line 1 is not valid JSON", 1),
    ],
)
def test_file_level_problems_name_the_file_and_line(tmp_path, content, fragment, line):
    path = write(tmp_path, content)
    with pytest.raises(SourceError) as caught:
        read_header(path)
    assert fragment in str(caught.value)
    assert caught.value.file == path and caught.value.line == line


def test_a_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        read_header(str(tmp_path / "absent.jsonl"))


def test_progress_counts_raw_bytes_from_where_it_was(tmp_path):
    records = [{"id": i, "text": f"row {i}" * 20} for i in range(2000)]
    path = write(tmp_path, lines(*records), "in.jsonl.gz")
    progress = ReadProgress(total_bytes=10_000_000, done_bytes=1000)
    seen = []
    for _ in read_rows(path, compression="gzip", progress=progress):
        seen.append(progress.done_bytes)
    assert seen == sorted(seen) and seen[0] > 1000
    assert progress.done_bytes == 1000 + os.path.getsize(path)


def test_damaged_gzip_mid_file_names_the_last_good_line(tmp_path):
    records = [{"id": i, "text": os.urandom(64).hex()} for i in range(5000)]
    path = tmp_path / "in.jsonl.gz"
    data = gzip.compress(lines(*records).encode())
    path.write_bytes(data[: len(data) // 2])
    rows = []
    with pytest.raises(SourceError) as caught:
        for row in read_rows(str(path), compression="gzip"):
            rows.append(row)
    assert rows and all(row.problem is None for row in rows)
    assert f"damaged after line {len(rows)}" in str(caught.value)
    assert caught.value.file == str(path)
