"""Finding and opening sources: compression, directories, globs, formats (real files)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from backfill.errors import SourceError
from backfill.readers import ReadProgress, expand, read_chunks, read_header, read_rows
from backfill.readers.files import Kind, kind_of

TEXT = 'id,name\n1,Ada\n2,"Grace\nHopper"\n3,Édith\n'
COMPRESSORS = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


def rows(path: str) -> list[tuple[str, dict]]:
    return [(row.position, dict(row.values)) for row in read_rows(path)]


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_csv_reads_exactly_like_the_plain_file(tmp_path, suffix):
    plain = tmp_path / "data.csv"
    plain.write_text(TEXT, encoding="utf-8")
    packed = tmp_path / f"data.csv{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](TEXT.encode()))
    assert read_header(str(packed)) == ["id", "name"]
    assert rows(str(packed)) == rows(str(plain))
    assert rows(str(packed))[1] == ("3", {"id": "2", "name": "Grace\nHopper"})


def test_compression_is_found_from_the_first_bytes_when_the_name_says_nothing(tmp_path):
    path = tmp_path / "export_0_0_0"
    path.write_bytes(gzip.compress(TEXT.encode()))
    assert kind_of(str(path)) == Kind("csv", "gzip")
    assert len(rows(str(path))) == 3


def test_progress_counts_compressed_bytes(tmp_path):
    path = tmp_path / "big.csv.gz"
    body = "id,name\n" + "".join(f"{n},name {n}\n" for n in range(20_000))
    path.write_bytes(gzip.compress(body.encode()))
    progress = ReadProgress()
    chunks = list(read_chunks([str(path)], progress=progress, chunk_rows=1000))
    assert sum(len(chunk) for chunk in chunks) == 20_000
    assert progress.total_bytes == path.stat().st_size
    assert progress.fraction == 1.0


def test_damaged_compressed_data_is_a_file_error_naming_the_file(tmp_path):
    body = "id,name\n" + "".join(f"{n},name {n}\n" for n in range(50_000))
    packed = gzip.compress(body.encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(SourceError, match=r"cut\.csv\.gz: the gzip data is damaged after line"):
        list(read_rows(str(path)))


def test_a_directory_expands_to_its_data_files_sorted_skipping_markers_and_hidden(tmp_path):
    shards = tmp_path / "unload"
    (shards / "part=2").mkdir(parents=True)
    for name in ["data_0_1_0.csv.gz", "data_0_0_0.csv.gz", "part=2/data_1_0_0.csv.gz"]:
        (shards / name).write_bytes(gzip.compress(TEXT.encode()))
    (shards / "_SUCCESS").write_text("")
    (shards / ".hidden.csv").write_text(TEXT)
    (shards / "manifest.txt.json.crc").write_text("x")
    found = [os.path.relpath(path, shards) for path in expand([str(shards)])]
    assert found == ["data_0_0_0.csv.gz", "data_0_1_0.csv.gz", "part=2/data_1_0_0.csv.gz"]


def test_a_glob_expands_sorted_and_files_keep_their_given_order(tmp_path):
    for name in ["b.csv", "a.csv", "c.jsonl"]:
        (tmp_path / name).write_text(TEXT)
    single = tmp_path / "z.csv"
    single.write_text(TEXT)
    found = expand([str(single), str(tmp_path / "[ab].csv")])
    assert [Path(p).name for p in found] == ["z.csv", "a.csv", "b.csv"]


def test_sources_that_name_nothing_or_the_same_file_twice_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no data files"):
        expand([str(tmp_path / "empty")])
    with pytest.raises(SourceError, match="no file matches"):
        expand([str(tmp_path / "*.parquet")])
    (tmp_path / "a.csv").write_text(TEXT)
    with pytest.raises(SourceError, match="named twice"):
        expand([str(tmp_path / "a.csv"), str(tmp_path / "*.csv")])


def test_formats_come_from_names_and_can_be_forced(tmp_path):
    assert kind_of(_touch(tmp_path, "x.ndjson.gz", gzip.compress(b"{}"))) == Kind("jsonl", "gzip")
    assert kind_of(_touch(tmp_path, "part-00000.parquet", b"PAR1")) == Kind("parquet")
    assert kind_of(_touch(tmp_path, "part-00001", b"PAR1xx")) == Kind("parquet")
    assert kind_of(_touch(tmp_path, "x.txt", b"a,b"), "jsonl") == Kind("jsonl")


def _touch(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)
