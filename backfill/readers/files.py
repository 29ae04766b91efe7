"""Finding and opening sources: directories and globs, formats, compression (I/O edge).

A source is a file, a directory (every data file below it) or a glob pattern, always
expanded in a stable sorted order. A file's format and compression come from its name
(`.csv`, `.tsv`, `.txt`, `.jsonl`, `.ndjson`, `.json`, `.parquet`, then `.gz`, `.bz2`,
`.xz`, `.zst`), or from its first bytes when the name says nothing.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Final, Literal, cast

from backfill.errors import SourceError

try:
    from zstandard import ZstdError
except ImportError:  # pragma: no cover - zstandard is a dependency

    class ZstdError(Exception):  # type: ignore[no-redef]
        """Stands in when zstandard is missing."""


#: What reading damaged compressed data raises.
DAMAGED: Final = (OSError, EOFError, lzma.LZMAError, ZstdError)

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: Final[tuple[Format, ...]] = ("csv", "jsonl", "parquet")
Compression = Literal["", "gzip", "bz2", "xz", "zstd"]

_COMPRESSION_SUFFIXES: Final[dict[str, Compression]] = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
}
_FORMAT_SUFFIXES: Final[dict[str, Format]] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".psv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_MAGIC: Final[dict[bytes, Compression]] = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
#: Files a directory source skips: hidden ones, markers such as Spark's _SUCCESS, and
#: names with no data suffix.
_SKIP_PREFIXES: Final = (".", "_")


@dataclass(slots=True)
class ReadProgress:
    """How far reading has got, in bytes of all sources, for progress estimates."""

    total_bytes: int = 0
    done_bytes: int = 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes else 0.0


@dataclass(frozen=True, slots=True)
class Kind:
    """How a file is read: its format and its compression."""

    format: Format
    compression: Compression = ""


def expand(sources: Sequence[str]) -> list[str]:
    """Every file the sources name, in order: files as given, directories and globs sorted.

    >>> expand(["data/sample_activity.csv"])
    ['data/sample_activity.csv']
    """
    files: list[str] = []
    for source in sources:
        if os.path.isdir(source):
            found = sorted(
                os.path.join(folder, name)
                for folder, _, names in os.walk(source)
                for name in names
                if _is_data_file(os.path.relpath(os.path.join(folder, name), source))
            )
            if not found:
                raise SourceError("the directory holds no data files", file=source)
            files += found
        elif glob.has_magic(source):
            found = sorted(
                path for path in glob.glob(source, recursive=True) if os.path.isfile(path)
            )
            if not found:
                raise SourceError("no file matches this pattern", file=source)
            files += found
        else:
            files.append(source)
    seen: set[str] = set()
    for path in files:
        real = os.path.realpath(path)
        if real in seen:
            raise SourceError("this file is named twice among the sources", file=path)
        seen.add(real)
    return files


def _is_data_file(relative: str) -> bool:
    parts = relative.split(os.sep)
    if any(part.startswith(_SKIP_PREFIXES) for part in parts):
        return False
    return _suffix_kind(parts[-1]) is not None


def _suffix_kind(name: str) -> Kind | None:
    stem, suffix = os.path.splitext(name.lower())
    compression = _COMPRESSION_SUFFIXES.get(suffix, "")
    if compression:
        stem, suffix = os.path.splitext(stem)
    format_ = _FORMAT_SUFFIXES.get(suffix)
    return Kind(format_, compression) if format_ is not None else None


def kind_of(path: str, given: Format | None = None) -> Kind:
    """The format (from `given`, the name, or the first bytes) and compression of a file."""
    named = _suffix_kind(os.path.basename(path))
    start = _first_bytes(path)
    compression: Compression = named.compression if named else ""
    if not compression:
        compression = next((c for magic, c in _MAGIC.items() if start.startswith(magic)), "")
    if given is not None:
        return Kind(given, compression)
    if named is not None:
        return Kind(named.format, compression)
    if start.startswith(b"PAR1"):
        return Kind("parquet")
    return Kind("csv", compression)


def _first_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(8)
    except FileNotFoundError:
        raise SourceError("no such file", file=path) from None
    except IsADirectoryError:
        raise SourceError("this is a directory, not a file", file=path) from None
    except OSError as exc:
        raise SourceError(f"cannot open ({exc.strerror})", file=path) from None


def open_binary(path: str, compression: Compression) -> tuple[IO[bytes], IO[bytes]]:
    """The file's decompressed bytes, and the raw file beneath (its `tell()` is progress)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - the caller closes both
    except FileNotFoundError:
        raise SourceError("no such file", file=path) from None
    except OSError as exc:
        raise SourceError(f"cannot open ({exc.strerror})", file=path) from None
    stream: IO[bytes] = raw
    if compression == "gzip":
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    elif compression == "bz2":
        stream = cast(IO[bytes], bz2.BZ2File(raw, mode="rb"))
    elif compression == "xz":
        stream = cast(IO[bytes], lzma.LZMAFile(raw, mode="rb"))
    elif compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        stream = cast(IO[bytes], reader)
    return stream, raw


def buffered(stream: IO[bytes]) -> io.BufferedReader:
    """A stream with `peek()`, for reading a byte-order mark without consuming it."""
    if isinstance(stream, io.BufferedReader):
        return stream
    return io.BufferedReader(stream, buffer_size=1 << 16)  # type: ignore[arg-type]


def size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
