"""Finding and opening sources: directories and globs, formats, compression (I/O edge).

A source is a file, a directory (every data file below it) or a glob pattern, always
expanded in a stable sorted order. A file's format and compression come from its name
(`.csv`, `.tsv`, `.txt`, `.jsonl`, `.ndjson`, `.json`, `.parquet`, then `.gz`, `.bz2`,
`.xz`, `.zst`), or from its first bytes when the name says nothing.

A source may also be a URL (`s3://`, `gs://`, `az://`, `abfs://`, `https://`), read
through fsspec and the backend an extra installs (`plain-backfill[s3]`...); a prefix
is a directory, and a glob uses `*` and `[...]` (`?` starts a URL's query). Local paths
never touch fsspec. A URL is shown and stored as `display_name` gives it: without its
credentials or query values.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import urlsplit

from backfill.errors import SourceError
from backfill.urls import display_name as display_name  # re-exported: readers show URLs
from backfill.urls import is_url as is_url

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
#: The extra that installs the fsspec backend of each URL scheme.
_EXTRAS: Final = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "abfss": "az",
    "http": "https",
    "https": "https",
}
_HTTP: Final = ("http", "https")
#: Glob characters in a URL: `?` is where its query starts.
_URL_PATTERN: Final = re.compile(r"[*[]")


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
        if is_url(source):
            files += _expand_url(source)
        elif os.path.isdir(source):
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
        real = path if is_url(path) else os.path.realpath(path)
        if real in seen:
            shown = display_name(path)
            raise SourceError("this file is named twice among the sources", file=shown)
        seen.add(real)
    return files


def _is_data_file(relative: str) -> bool:
    return _is_data_parts(relative.split(os.sep))


def _is_data_parts(parts: Sequence[str]) -> bool:
    if any(part.startswith(_SKIP_PREFIXES) for part in parts):
        return False
    return _suffix_kind(parts[-1]) is not None


def _expand_url(url: str) -> list[str]:
    """The files a URL names: itself, every data file below a prefix, or a glob's matches."""
    fs, path = _filesystem(url)
    pattern = _URL_PATTERN.search(url.split("://", 1)[1].split("?", 1)[0]) is not None
    if _scheme(url) in _HTTP:
        try:
            where = urlsplit(url).path
        except ValueError:
            raise SourceError("not a valid URL", file=display_name(url)) from None
        if pattern or not where or where.endswith("/"):
            raise SourceError(
                "an http(s) URL must name one file: a web server's listing of a folder or "
                "pattern cannot be trusted; give each file's URL",
                file=display_name(url),
            )
        return [url]
    with _reading(url):
        if pattern:
            matches = fs.glob(path, detail=True)
            root = path[: _static_end(path)]
            # As glob.glob does, a wildcard matches no hidden name (one starting with ".").
            dotted = any(part.startswith(".") for part in path[len(root) :].split("/"))
            found = [
                name
                for name, info in matches.items()
                if info.get("type") == "file"
                and (dotted or not any(p.startswith(".") for p in name[len(root) :].split("/")))
            ]
            head = url[: _static_end(url)]
            files = sorted(_url_of(fs, head, root, name) for name in found)
            if not files:
                raise SourceError("no file matches this pattern", file=display_name(url))
            return files
        if not fs.isdir(path):
            return [url]
        root = path.rstrip("/") + "/"
        below = [name for name in fs.find(path) if _is_data_parts(name[len(root) :].split("/"))]
    files = sorted(_url_of(fs, url.rstrip("/") + "/", root, name) for name in below)
    if not files:
        raise SourceError("the directory holds no data files", file=display_name(url))
    return files


def _static_end(text: str) -> int:
    """Where the part of a pattern before its first glob character ends (after a `/`)."""
    start = text.find("://") + 3 if "://" in text else 0
    match = _URL_PATTERN.search(text, start)
    return text.rfind("/", 0, match.start() if match else len(text)) + 1


def _url_of(fs: Any, head: str, root: str, name: str) -> str:
    """The URL of `name` (a path as `fs` spells it) found below `root`, which `head` names.

    Built from the URL given rather than by fsspec, so that its scheme (`az://`, not
    `abfs://`) and an Azure `container@account` stay as written.
    """
    if root and not name.startswith(root):
        return str(fs.unstrip_protocol(name))
    return head + name[len(root) :]


def _suffix_kind(name: str) -> Kind | None:
    stem, suffix = os.path.splitext(name.lower())
    compression = _COMPRESSION_SUFFIXES.get(suffix, "")
    if compression:
        stem, suffix = os.path.splitext(stem)
    format_ = _FORMAT_SUFFIXES.get(suffix)
    return Kind(format_, compression) if format_ is not None else None


def kind_of(path: str, given: Format | None = None) -> Kind:
    """The format (from `given`, the name, or the first bytes) and compression of a file."""
    named = _suffix_kind(_name_of(path))
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


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _name_of(path: str) -> str:
    if is_url(path):
        return re.split(r"[?#]", path, maxsplit=1)[0].rsplit("/", 1)[-1]
    return os.path.basename(path)


def _first_bytes(path: str) -> bytes:
    if is_url(path):
        # No read-ahead: a sniff needs 8 bytes, not a block of megabytes.
        with open_url(path, cache_type="none") as fh:
            return fh.read(8)
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
    if is_url(path):
        raw = open_url(path, stream=True)
    else:
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
    """The size of a file in bytes, or 0 when it cannot be known (it only scales progress)."""
    if is_url(path):
        try:
            fs, where = _filesystem(path)
            return int(fs.size(where) or 0)
        except Exception:  # any backend's failure: the read that follows will name it
            return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def open_url(url: str, *, stream: bool = False, **options: Any) -> IO[bytes]:
    """The raw bytes of the file at `url`, seekable unless `stream` (failures: SourceError).

    `stream` is for reading straight through: over http(s) that is one GET read as it
    arrives, which also works with servers that ignore Range requests. `options` go to
    the backend's `open` (`cache_type="none"` for a few bytes). Reading later fails
    with an OSError whose message names no secret, as the readers expect of a file.
    """
    fs, path = _filesystem(url)
    if stream and _scheme(url) in _HTTP:
        options = {**options, "block_size": 0}
    with _reading(url):
        file = fs.open(path, "rb", **options)
    return cast(IO[bytes], _Remote(file, url))


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem that serves `url`, and the path of `url` in it."""
    import fsspec  # type: ignore[import-untyped]  # only URLs pay for importing it

    scheme = _scheme(url)
    if scheme not in fsspec.available_protocols():
        raise SourceError(
            f"unknown URL scheme {scheme}://: give a local path, or an s3://, gs://, az://, "
            "abfs:// or https:// URL",
            file=display_name(url),
        )
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        extra = _EXTRAS.get(scheme)
        fix = (
            f"pip install 'plain-backfill[{extra}]'"
            if extra
            else f"install the fsspec backend for {scheme}://"
        )
        raise SourceError(
            f"reading {scheme}:// URLs needs an optional package: {fix}",
            file=display_name(url),
        ) from None
    except Exception as exc:
        raise SourceError(_reason(exc, url), file=display_name(url)) from None
    return fs, str(path)


@contextmanager
def _reading(url: str) -> Iterator[None]:
    """A backend's failure as a SourceError naming the URL (redacted), without a traceback.

    Every exception is caught because each backend raises its own tree (botocore,
    aiohttp, google-auth, azure-core), not always an OSError.
    """
    try:
        yield
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(_reason(exc, url), file=display_name(url)) from None


def _reason(exc: BaseException, url: str) -> str:
    """Why `url` could not be read, in a few words and without its secrets."""
    # fsspec's http filesystem raises FileNotFoundError from any failure: a refused
    # connection (an OSError) or an HTTP error (aiohttp's, with its status: a 403...).
    cause = exc.__cause__
    if isinstance(exc, FileNotFoundError) and isinstance(cause, OSError):
        exc = exc if isinstance(cause, FileNotFoundError) else cause
    status = getattr(exc, "status", None)
    if not isinstance(status, int):
        status = getattr(exc.__cause__, "status", None)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return 'access denied: check the credentials in the environment (README, "Object storage")'
    if isinstance(exc, FileNotFoundError) and status in (None, 404):
        return "no such file, bucket or container"
    if isinstance(status, int):
        return f"cannot read it: the server answered HTTP {status}"
    if isinstance(exc, TimeoutError):
        return "cannot read it: timed out"
    # A backend's message may quote the URL, and with it a signature: a URL with
    # secrets gets the error's type only.
    text = str(exc).strip().split("\n", 1)[0][:300] if display_name(url) == url else ""
    return f"cannot read it ({type(exc).__name__}{': ' + text if text else ''})"


class _Remote(io.RawIOBase):
    """An fsspec file whose failures are OSErrors that name no secret.

    The readers treat an OSError while reading as a file-level problem (as they do
    damaged data), so a dropped connection stops the run with a SourceError, never a
    traceback, whatever the backend raised.
    """

    def __init__(self, file: Any, url: str) -> None:
        super().__init__()
        self._file = file
        self._url = url
        #: Reading on at the end of an http stream makes aiohttp warn of an endless loop.
        self._at_end = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._file.seekable())

    def read(self, size: int | None = -1, /) -> bytes:
        if self._at_end or size == 0:
            return b""
        try:
            data: bytes = self._file.read(-1 if size is None else size)
        except Exception as exc:
            raise OSError(_reason(exc, self._url)) from None
        self._at_end = not data
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        self._at_end = False
        try:
            return int(self._file.seek(offset, whence))
        except Exception as exc:
            raise OSError(_reason(exc, self._url)) from None

    def tell(self) -> int:
        return int(self._file.tell())

    def close(self) -> None:
        if not self.closed:
            # Nothing is lost if closing fails: the file was only read.
            with suppress(Exception):
                self._file.close()
        super().close()
