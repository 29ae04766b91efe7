"""Sources in object storage and over https, read through fsspec from real servers on
127.0.0.1: moto's S3 server, gcp-storage-emulator, Azurite and a local HTTP server.

Each server holds the sample as gzip CSV shards below a prefix (with a marker and a hidden
folder to skip) and as one Parquet object; a run over them delivers exactly the sample's
externalIds. Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib
import io
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backfill.errors import SourceError
from backfill.fakeplain import FakePlain
from backfill.readers import ReadProgress, expand, read_chunks, read_header
from tests.conftest import (
    MAPPING,
    ROOT,
    SAMPLE,
    SAMPLE_ROWS,
    clean_env,
    cli,
    run_args,
    sample_ids,
)

SHARDS = ("export/part-00000.csv.gz", "export/part-00001.csv.gz", "export/day=2/part-00002.csv.gz")
PARQUET = "parquet/sample.parquet"
#: The query value of a "signed" URL: it must never be written anywhere.
SECRET = "s3cr3t-canary-9f2c"
AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's documented development account (a public, well-known key).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: Credentials a developer may have set: the tests give each backend its own.
_CLOUD_PREFIXES = ("AWS_", "GOOGLE_", "GCE_", "STORAGE_EMULATOR", "AZURE_", "GCSFS_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def storage_env(**extra: str) -> dict[str, str]:
    """The CLI's environment: no cloud credentials but `extra`, nothing through a proxy."""
    env = {k: v for k, v in clean_env().items() if not k.startswith(_CLOUD_PREFIXES)}
    return env | {"PLAIN_API_KEY": "test-key", "NO_PROXY": "127.0.0.1,localhost", **extra}


def export_files() -> dict[str, bytes]:
    """The sample as three gzip CSV shards and one Parquet file, and files to skip."""
    with open(SAMPLE, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        names = list(reader.fieldnames or [])
        records = list(reader)
    files: dict[str, bytes] = {}
    third = len(records) // 3 + 1
    for n, name in enumerate(SHARDS):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records[n * third : (n + 1) * third])
        files[name] = gzip.compress(text.getvalue().encode())
    files["export/_SUCCESS"] = b"done\n"  # gcp-storage-emulator cannot store an empty object
    files["markers/_SUCCESS"] = b"done\n"
    files["export/.staging/part-00009.csv.gz"] = gzip.compress(b"not,the,sample\n1,2,3\n")
    table = pa.Table.from_pylist(records, schema=pa.schema([(name, pa.string()) for name in names]))
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1000)
    files[PARQUET] = sink.getvalue()
    return files


@pytest.fixture(scope="module")
def exports() -> dict[str, bytes]:
    return export_files()


def upload(fs, bucket: str, files: dict[str, bytes]) -> None:
    fs.pipe({f"{bucket}/{name}": data for name, data in files.items()})


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after 30 s")


def run_over(fake: FakePlain, tmp_path: Path, env: dict[str, str], *sources: str):
    args = run_args(
        fake, tmp_path, "--quiet", "--rate", "2000/s", "--concurrency", "8", source=sources[0]
    )
    args[2:2] = sources[1:]
    return cli(*args, env=env, timeout=120)


def assert_delivered_the_sample(result, fake: FakePlain, *, quiet: bool = True) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if quiet:  # no backend complained (aiohttp does when a stream is read on past its end)
        assert " WARNING " not in result.stderr and " ERROR " not in result.stderr, result.stderr
    stats = fake.stats()
    assert set(stats.creations) == sample_ids()
    assert set(stats.creations.values()) == {1}


def assert_refused_before_sending(result, fake: FakePlain, url: str, fragment: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{url}: {fragment}" in result.stderr
    assert "Traceback" not in result.stderr
    assert fake.stats().requests == 0


# --- S3: moto's server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(exports) -> Iterator[dict[str, str]]:
    """moto's S3 server with the exports in `s3://bucket/`; yields the CLI's environment."""
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port)
        fs = s3fs.S3FileSystem(
            key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True
        )
        fs.mkdir("bucket")
        upload(fs, "bucket", exports)
        yield {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.fixture
def s3_here(s3, monkeypatch) -> None:
    """The S3 server's environment in this process too (fsspec reads it when it connects)."""
    import s3fs

    for key in [key for key in os.environ if key.startswith(_CLOUD_PREFIXES)]:
        monkeypatch.delenv(key)
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def test_s3_prefixes_and_globs_expand_sorted_skipping_markers_and_hidden_files(s3_here):
    shards = [f"s3://bucket/{name}" for name in SHARDS]
    assert expand(["s3://bucket/export/"]) == sorted(shards)
    assert expand(["s3://bucket/export"]) == sorted(shards)
    assert expand(["s3://bucket/export/part-*.csv.gz"]) == shards[:2]
    assert expand(["s3://bucket/export/**/*.csv.gz"]) == sorted(shards)
    assert expand([f"s3://bucket/{PARQUET}"]) == [f"s3://bucket/{PARQUET}"]
    assert read_header(f"s3://bucket/{PARQUET}")[:2] == ["event_id", "occurred_at"]
    with pytest.raises(SourceError, match=r"^s3://bucket/export/\*\.parquet: no file matches"):
        expand(["s3://bucket/export/*.parquet"])
    with pytest.raises(SourceError, match=r"^s3://bucket/markers/: the directory holds no data"):
        expand(["s3://bucket/markers/"])
    with pytest.raises(SourceError, match=r"^s3://bucket/export/part-00000.csv.gz: .*twice"):
        expand(["s3://bucket/export/", "s3://bucket/export/part-00000.csv.gz"])


def test_progress_over_s3_counts_the_bytes_of_each_object(s3_here, exports):
    progress = ReadProgress()
    chunks = read_chunks(expand(["s3://bucket/export/"]), progress=progress)
    assert sum(len(chunk) for chunk in chunks) == SAMPLE_ROWS
    assert progress.total_bytes == sum(len(exports[name]) for name in SHARDS)
    assert progress.fraction == 1.0


@pytest.mark.parametrize(
    "sources",
    [
        pytest.param(["s3://bucket/export/"], id="prefix"),
        pytest.param(["s3://bucket/export/*.csv.gz", "s3://bucket/export/day=*/*"], id="globs"),
        pytest.param([f"s3://bucket/{PARQUET}"], id="parquet"),
    ],
)
def test_a_run_over_s3_delivers_exactly_the_sample(s3, fake_plain, tmp_path, sources):
    result = run_over(fake_plain, tmp_path, storage_env(**s3), *sources)
    assert_delivered_the_sample(result, fake_plain)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("s3://no-such-bucket/export/part-00000.csv.gz", id="bucket"),
        pytest.param("s3://bucket/export/part-09999.csv.gz", id="object"),
        pytest.param("s3://bucket/parquet/missing.parquet", id="parquet-object"),
    ],
)
def test_a_missing_s3_bucket_or_object_exits_2_naming_the_url(s3, fake_plain, tmp_path, url):
    result = run_over(fake_plain, tmp_path, storage_env(**s3), url)
    assert_refused_before_sending(result, fake_plain, url, "no such file, bucket or container")


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("s3://bucket/export/", "s3"),
        ("gs://bucket/export/", "gs"),
        ("az://container/export/", "az"),
        ("abfs://container/export/", "az"),
        ("https://example.invalid/a.csv.gz?sig=" + SECRET, "https"),
    ],
)
def test_a_missing_backend_names_the_extra_to_install(monkeypatch, url, extra):
    # The module: `fsspec.registry` is also the name of a read-only view of the registry.
    registry = importlib.import_module("fsspec.registry")
    scheme = url.split("://")[0]
    monkeypatch.delitem(registry._registry, scheme, raising=False)
    monkeypatch.setitem(
        registry.known_implementations,
        scheme,
        {"class": "no_such_backend.FileSystem", "err": f"Install a backend for {scheme}"},
    )
    with pytest.raises(SourceError) as raised:
        expand([url])
    message = str(raised.value)
    assert message.endswith(f"needs an optional package: pip install 'plain-backfill[{extra}]'")
    assert message.startswith(url.split("?")[0])
    assert SECRET not in message


def test_an_unknown_scheme_is_a_source_error():
    with pytest.raises(SourceError, match=r"^nope://x/a.csv: unknown URL scheme nope://"):
        expand(["nope://x/a.csv"])


# --- Google Cloud Storage: gcp-storage-emulator ------------------------------------------


@pytest.fixture(scope="module")
def gcs(exports) -> Iterator[dict[str, str]]:
    """gcp-storage-emulator with the exports in `gs://bucket/`; yields the CLI's environment."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="bucket")
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port)
        # Uploaded with the JSON API itself: gcsfs in this process would first try its
        # gRPC control plane against the emulator, and wait for that to time out.
        for name, data in exports.items():
            httpx.post(
                f"{endpoint}/upload/storage/v1/b/bucket/o",
                params={"uploadType": "media", "name": name},
                content=data,
                trust_env=False,
            ).raise_for_status()
        yield {
            "STORAGE_EMULATOR_HOST": endpoint,
            # No Compute Engine metadata server to look for: stay on 127.0.0.1.
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
        }
    finally:
        server.stop()


def test_a_run_over_a_gcs_prefix_delivers_exactly_the_sample(gcs, fake_plain, tmp_path):
    result = run_over(fake_plain, tmp_path, storage_env(**gcs), "gs://bucket/export/")
    # gcsfs warns that it cannot ask the emulator for the bucket's layout, then reads on.
    assert_delivered_the_sample(result, fake_plain, quiet=False)


def test_gcs_validate_lists_a_prefix_and_refuses_a_missing_object(gcs, tmp_path):
    env = storage_env(**gcs)
    options = ("--mapping", MAPPING, "--results-dir", str(tmp_path))
    ok = cli("validate", "gs://bucket/export", *options, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "rows read          2400" in ok.stdout
    url = "gs://bucket/export/nope.csv.gz"
    missing = cli("validate", url, *options, env=env, timeout=120)
    assert missing.returncode == 2
    assert f"{url}: no such file, bucket or container" in missing.stderr


# --- Azure Blob Storage: Azurite -------------------------------------------------------


@pytest.fixture(scope="module")
def azure(exports, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Azurite (blob service) with the exports in `az://container/`; yields the environment."""
    if not AZURITE.exists():
        reason = f"Azurite is not installed at {AZURITE} (scripts/test.sh installs it with npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    import adlfs

    port = free_port()
    location = str(tmp_path_factory.mktemp("azurite"))
    server = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    options = ["--location", location, "--skipApiVersionCheck", "--loose", "--silent"]
    process = subprocess.Popen(
        [*server, *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError as exc:
            process.kill()
            pytest.fail(f"Azurite did not start: {exc}: {process.communicate()[1].decode()}")
        connection = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        fs = adlfs.AzureBlobFileSystem(connection_string=connection, skip_instance_cache=True)
        fs.mkdir("container")
        upload(fs, "container", exports)
        yield {"AZURE_STORAGE_CONNECTION_STRING": connection}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.parametrize(
    "sources",
    [
        pytest.param(["az://container/export/"], id="az-prefix"),
        pytest.param([f"abfs://container/{PARQUET}"], id="abfs-parquet"),
    ],
)
def test_a_run_over_azure_blobs_delivers_exactly_the_sample(azure, fake_plain, tmp_path, sources):
    result = run_over(fake_plain, tmp_path, storage_env(**azure), *sources)
    assert_delivered_the_sample(result, fake_plain)


def test_a_missing_azure_container_exits_2_naming_the_url(azure, fake_plain, tmp_path):
    url = "az://no-such-container/export/part-00000.csv.gz"
    result = run_over(fake_plain, tmp_path, storage_env(**azure), url)
    assert_refused_before_sending(result, fake_plain, url, "no such file, bucket or container")


# --- https: a local HTTP server ---------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Files with Range requests (as object stores and CDNs serve them); below /signed/,
    only for the query `sig=SECRET`, as a presigned or SAS URL."""

    def log_message(self, format, *args):  # noqa: A002 - the name http.server gives it
        pass

    def _allowed(self) -> bool:
        if not self.path.startswith("/signed/"):
            return True
        if self.path.endswith(f"?sig={SECRET}"):
            return True
        self.send_error(403)
        return False

    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/signed"))

    def do_HEAD(self) -> None:
        if self._allowed():
            super().do_HEAD()

    def do_GET(self) -> None:
        if not self._allowed():
            return
        wanted = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not wanted.startswith("bytes=") or not path.is_file():
            super().do_GET()
            return
        data = path.read_bytes()
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])


@pytest.fixture(scope="module")
def web(exports, tmp_path_factory) -> Iterator[str]:
    """A local HTTP server of the exports; yields its base URL."""
    folder = tmp_path_factory.mktemp("web")
    for name, data in exports.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        shutil.rmtree(folder)


def assert_secret_written_nowhere(result, tmp_path: Path) -> None:
    assert SECRET not in result.stdout + result.stderr
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "results.csv" for path in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    results = next(path for path in written if path.name == "results.csv")
    assert "sig=***" in results.read_text(encoding="utf-8")


def test_signed_https_csv_shards_run_end_to_end_and_the_signature_is_written_nowhere(
    web, fake_plain, tmp_path
):
    urls = [f"{web}/signed/{name}?sig={SECRET}" for name in SHARDS]
    result = run_over(fake_plain, tmp_path, storage_env(), *urls)
    assert_delivered_the_sample(result, fake_plain)
    assert_secret_written_nowhere(result, tmp_path)


def test_a_signed_https_parquet_object_runs_end_to_end(web, fake_plain, tmp_path):
    url = f"{web}/signed/{PARQUET}?sig={SECRET}"
    result = run_over(fake_plain, tmp_path, storage_env(), url)
    assert_delivered_the_sample(result, fake_plain)
    assert_secret_written_nowhere(result, tmp_path)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        pytest.param(f"/signed/{SHARDS[0]}?sig=wrong-{SECRET}", "access denied", id="403"),
        pytest.param(f"/{SHARDS[0]}.missing?sig={SECRET}", "no such file", id="404"),
    ],
)
def test_a_refused_or_missing_https_url_exits_2_without_its_query(
    web, fake_plain, tmp_path, path, fragment
):
    url = web + path
    result = run_over(fake_plain, tmp_path, storage_env(), url)
    shown = url.split("?")[0] + "?sig=***"
    assert_refused_before_sending(result, fake_plain, shown, fragment)
    assert SECRET not in result.stdout + result.stderr


def test_a_mapping_naming_a_missing_column_shows_the_signed_url_redacted(web, tmp_path):
    mapping = tmp_path / "m.toml"
    text = Path(MAPPING).read_text(encoding="utf-8").replace("{{ url }}", "{{ adress_url }}")
    mapping.write_text(text, encoding="utf-8")
    url = f"{web}/signed/{SHARDS[0]}?sig={SECRET}"
    result = cli("validate", url, "--mapping", str(mapping), env=storage_env(), cwd=tmp_path)
    assert result.returncode == 2
    shown = f"{web}/signed/{SHARDS[0]}?sig=***"
    assert f"unknown column 'adress_url' in {shown}" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_an_unreachable_https_server_exits_2_without_the_query(fake_plain, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/{SHARDS[0]}"
    result = run_over(fake_plain, tmp_path, storage_env(), f"{url}?sig={SECRET}")
    assert_refused_before_sending(result, fake_plain, f"{url}?sig=***", "cannot read it")
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("path", ["/export/", "/export/*.csv.gz", "/export/part-0000[01].csv.gz"])
def test_https_directories_and_patterns_are_refused(web, path):
    with pytest.raises(SourceError, match="an http.s. URL must name one file"):
        expand([web + path])
