import pytest

from backfill.errors import SourceError
from backfill.readers import read_chunks, read_header
from backfill.readers.csv import read_rows


def write(tmp_path, text: str | bytes, name="in.csv"):
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return str(path)


def test_values_stay_text_and_empty_stays_empty(tmp_path):
    path = write(tmp_path, "id,big,amount,empty\n00123,1234567890123456789,1.50,\n")
    (row,) = list(read_rows(path))
    assert row.values == {
        "id": "00123",
        "big": "1234567890123456789",
        "amount": "1.50",
        "empty": "",
    }
    assert row.problem is None


def test_position_is_the_first_physical_line_of_the_record(tmp_path):
    path = write(tmp_path, 'a,b\n1,"multi\nline\nfield"\n\n2,"x, ""q"""\r\n3,z\n')
    rows = list(read_rows(path))
    assert [(r.position, r.values["a"]) for r in rows] == [("2", "1"), ("6", "2"), ("7", "3")]
    assert rows[0].values["b"] == "multi\nline\nfield"
    assert rows[1].values["b"] == 'x, "q"'


def test_short_and_long_records_are_problems_never_padded(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2\n1,2,3,4\n1,2,3\n")
    rows = list(read_rows(path))
    assert [r.position for r in rows] == ["2", "3", "4"]
    assert rows[0].problem and rows[0].problem.message == "expected 3 fields, found 2"
    assert rows[1].problem and rows[1].problem.message == "expected 3 fields, found 4"
    assert rows[0].values == {} and rows[2].problem is None


def test_invalid_utf8_makes_only_that_record_a_problem(tmp_path):
    path = write(tmp_path, b"a,b\n1,ok\n2,bad\xff\xfe\n3,\xc3\xa9\n")
    rows = list(read_rows(path))
    assert rows[1].problem and rows[1].problem.code == "encoding"
    assert "line 3" in rows[1].problem.message
    assert rows[0].problem is None and rows[2].values["b"] == "é"


def test_a_bom_is_not_part_of_the_first_column(tmp_path):
    path = write(tmp_path, "\ufeffid,x\n1,2\n".encode())
    assert read_header(path) == ["id", "x"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("", "empty", id="empty-file"),
        pytest.param("a,a\n1,2\n", "appears twice", id="duplicate-header"),
    ],
)
def test_file_level_problems_raise_source_error_naming_the_file(tmp_path, content, fragment):
    path = write(tmp_path, content)
    with pytest.raises(SourceError) as err:
        read_header(path)
    assert fragment in str(err.value) and path in str(err.value)


def test_a_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        read_header(str(tmp_path / "nope.csv"))


def test_chunks_span_files_in_order_and_limit_counts_rows(tmp_path):
    one = write(tmp_path, "a\n1\n2\n3\n", "one.csv")
    two = write(tmp_path, "a\n4\n5\n", "two.csv")
    chunks = list(read_chunks([one, two], chunk_rows=2))
    assert [[r.values["a"] for r in c] for c in chunks] == [["1", "2"], ["3", "4"], ["5"]]
    limited = [r.values["a"] for c in read_chunks([one, two], limit=4) for r in c]
    assert limited == ["1", "2", "3", "4"]


def test_a_huge_field_is_read(tmp_path):
    big = "x" * (5 * 1024 * 1024)
    path = write(tmp_path, f"a,b\n1,{big}\n")
    (row,) = list(read_rows(path))
    assert len(row.values["b"]) == len(big)


def test_an_unclosed_quote_is_one_invalid_record_naming_its_lines(tmp_path):
    path = write(tmp_path, 'a,b,c\n1,2,3\n4,"open,6\n7,8,9\n10,11,12\n')
    rows = list(read_rows(path))
    assert [r.values.get("a") for r in rows[:1]] == ["1"]
    (broken,) = rows[1:]
    assert broken.problem is not None and broken.problem.code == "unclosed_quote"
    assert broken.position == "3" and "lines 3 to 5" in broken.problem.message


def test_text_after_a_closing_quote_is_a_bad_record_and_reading_goes_on(tmp_path):
    path = write(tmp_path, 'a,b,c\n1,"x"y,3\n4,5,6\n7,ab"c,9\n')
    rows = list(read_rows(path))
    assert rows[0].problem is not None and rows[0].problem.code == "bad_quoting"
    assert rows[0].position == "2"
    assert rows[1].values == {"a": "4", "b": "5", "c": "6"}
    assert rows[2].values["b"] == 'ab"c'


def test_a_nul_byte_makes_the_record_invalid(tmp_path):
    path = write(tmp_path, "a,b\n1,nul\x00byte\n2,ok\n")
    rows = list(read_rows(path))
    assert rows[0].problem is not None and "NUL" in rows[0].problem.message
    assert rows[1].problem is None


def test_a_blank_first_line_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="blank"):
        read_header(write(tmp_path, "\na,b\n1,2\n"))


def test_a_header_only_file_has_no_rows(tmp_path):
    assert list(read_rows(write(tmp_path, "a,b\n"))) == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(b"\x1f\x8b\x08\x00rest", "not readable as gzip", id="gzip"),
        pytest.param(b"PK\x03\x04rest", "Excel", id="xlsx"),
        pytest.param(b"PAR1rest", "Parquet", id="parquet"),
    ],
)
def test_files_that_are_not_csv_text_say_what_they_are(tmp_path, content, fragment):
    with pytest.raises(SourceError, match=fragment):
        read_header(write(tmp_path, content))


def test_latin1_bytes_name_the_likely_encoding(tmp_path):
    path = write(tmp_path, "a,b\n1,caf\xe9\n".encode("latin-1"))
    (row,) = list(read_rows(path))
    assert row.problem is not None and "not valid UTF-8 (a Latin-1" in row.problem.message
    with pytest.raises(SourceError, match="not valid UTF-8"):
        read_header(write(tmp_path, "caf\xe9,b\n".encode("latin-1"), "h.csv"))


def test_a_utf16_file_with_a_byte_order_mark_is_read(tmp_path):
    text = 'id,name\r\n1,Zoë 🚀\r\n2,"multi\r\nline"\r\n'
    for encoding in ("utf-16-le", "utf-16-be"):
        bom = "\ufeff".encode(encoding)
        path = write(tmp_path, bom + text.encode(encoding), f"{encoding}.csv")
        assert read_header(path) == ["id", "name"]
        rows = list(read_rows(path))
        assert [r.values for r in rows] == [
            {"id": "1", "name": "Zoë 🚀"},
            {"id": "2", "name": "multi\r\nline"},
        ]
        assert [r.position for r in rows] == ["2", "3"]
