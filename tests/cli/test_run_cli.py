"""`backfill run` as a real subprocess: exit codes, preflight, kill and resume, secrets."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backfill.fakeplain import ApiKey, FakePlain, Faults
from backfill.ledger import SqliteLedger
from tests.conftest import (
    MAPPING,
    SAMPLE,
    SAMPLE_ROWS,
    clean_env,
    cli,
    cli_popen,
    run_args,
    sample_ids,
)


def rejected_rows(tmp_path: Path) -> int:
    path = tmp_path / "ledger.sqlite"
    if not path.exists():
        return 0
    with SqliteLedger.open(str(path)) as ledger:
        return ledger.query("SELECT COUNT(*) FROM events WHERE status = 'rejected'")[0][0]


@pytest.fixture
def keyed_fake():
    keys = {
        "good-key": ApiKey(),
        "read-only-key": ApiKey(permissions=frozenset({"customer:read"})),
    }
    with FakePlain(api_keys=keys, rate_limit=100_000) as fake:
        yield fake


@pytest.mark.parametrize(
    ("key", "extra", "fragment"),
    [
        pytest.param("wrong-key", (), "refused the API key", id="wrong-key"),
        pytest.param(
            "read-only-key", (), "lacks the permission customerEvent:create", id="no-permission"
        ),
        pytest.param(
            "good-key", ("--expect-workspace", "w_OTHER"), "not w_OTHER", id="other-workspace"
        ),
    ],
)
def test_auth_failures_exit_4_after_the_one_preflight_request(
    keyed_fake, tmp_path, key, extra, fragment
):
    result = cli(*run_args(keyed_fake, tmp_path, *extra), env=clean_env(PLAIN_API_KEY=key))
    assert result.returncode == 4, result.stderr
    assert fragment in result.stdout + result.stderr
    stats = keyed_fake.stats()
    assert stats.requests == 1
    assert "createCustomerEvent" not in stats.by_operation
    assert rejected_rows(tmp_path) == 0


def test_a_missing_key_is_a_usage_error(keyed_fake, tmp_path):
    result = cli(*run_args(keyed_fake, tmp_path), env=clean_env())
    assert result.returncode == 2
    assert "PLAIN_API_KEY" in result.stderr
    assert keyed_fake.stats().requests == 0


def test_a_mapping_naming_a_missing_column_fails_before_anything_is_sent(keyed_fake, tmp_path):
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        Path(MAPPING).read_text(encoding="utf-8").replace("{{ url }}", "{{ adress_url }}"),
        encoding="utf-8",
    )
    args = run_args(keyed_fake, tmp_path)
    args[args.index(MAPPING)] = str(mapping)
    result = cli(*args, env=clean_env(PLAIN_API_KEY="good-key"))
    assert result.returncode == 2
    assert "components[4].url: unknown column 'adress_url'" in result.stderr
    assert keyed_fake.stats().requests == 0


def test_sigkill_mid_run_then_rerun_delivers_every_row_exactly_once(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        env = clean_env(PLAIN_API_KEY="test-key")
        args = run_args(fake, tmp_path, "--rate", "300/s", "--concurrency", "6")
        process = cli_popen(*args, env=env)
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < 600 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        killed_at = len(fake.stats().creations)
        assert 600 <= killed_at < SAMPLE_ROWS

        result = cli(*run_args(fake, tmp_path, "--rate", "2000/s"), env=env)
        assert result.returncode == 0, result.stderr
        stats = fake.stats()
    assert set(stats.creations) == sample_ids()
    assert set(stats.creations.values()) == {1}
    # The re-run sent only what the killed run had not finished.
    assert stats.by_operation["createCustomerEvent"] < SAMPLE_ROWS + 50
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        counts = ledger.status_counts()
    assert set(counts) <= {"delivered", "already_existed"}
    assert sum(counts.values()) == SAMPLE_ROWS


def test_sigterm_stops_cleanly_with_143_and_resume_is_exact(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        env = clean_env(PLAIN_API_KEY="test-key")
        process = cli_popen(*run_args(fake, tmp_path, "--rate", "200/s"), env=env)
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 143, stderr
        assert "interrupted by SIGTERM" in stdout
        with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
            counts = ledger.status_counts()
        # Everything sent was answered and recorded: nothing left in flight.
        assert set(counts) == {"delivered"}
        assert counts["delivered"] == len(fake.stats().creations)

        result = cli(*run_args(fake, tmp_path, "--rate", "2000/s"), env=env)
        assert result.returncode == 0, result.stderr
        stats = fake.stats()
    assert set(stats.creations) == sample_ids() and set(stats.creations.values()) == {1}
    assert stats.by_operation["createCustomerEvent"] == SAMPLE_ROWS


def test_the_api_key_never_appears_in_output_ledger_or_results(tmp_path):
    canary = "plainApiKey_CANARY_6f1d2c9e"
    env = clean_env(PLAIN_API_KEY=canary)
    with FakePlain(api_keys={canary: ApiKey()}, rate_limit=100_000) as fake:
        ok = cli("-vv", *run_args(fake, tmp_path, "--limit", "50", "--rate", "2000/s"), env=env)
        assert ok.returncode == 0, ok.stderr
        # Failing requests mid-run: their errors land in logs, the ledger and failed.csv.
        fake.faults = Faults(error_500=0.5, drop=0.2, seed=3)
        faulty = cli(
            "-vv", *run_args(fake, tmp_path, "--limit", "90", "--max-retries", "1"), env=env
        )
        assert faulty.returncode == 1, faulty.stderr
        assert "retrying" in faulty.stderr
        url = fake.url
    # And with Plain unreachable from the start.
    down = cli("-vv", *run_args(url, tmp_path, "--limit", "100", "--max-retries", "0"), env=env)
    assert down.returncode == 5
    texts = [ok.stdout, ok.stderr, faulty.stdout, faulty.stderr, down.stdout, down.stderr]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "failed.csv" and "HTTP_500" in p.read_text("utf-8") for p in files)
    assert all(canary not in text for text in texts)
    assert all(canary.encode() not in p.read_bytes() for p in files)


def test_fake_plain_serves_from_the_command_line_with_limited_keys(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "backfill", "fake-plain", "--port", str(port)]
        + ["--api-key", "full", "--api-key", "ro=customer:read"],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}/graphql/v1"
        limited = cli(*run_args(url, tmp_path, "--limit", "3"), env=clean_env(PLAIN_API_KEY="ro"))
        assert limited.returncode == 4 and "customerEvent:create" in limited.stderr + limited.stdout
        full = cli(*run_args(url, tmp_path, "--limit", "3"), env=clean_env(PLAIN_API_KEY="full"))
        assert full.returncode == 0, full.stderr
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert server.returncode == 0


def test_init_then_validate_then_preview_from_the_command_line(tmp_path):
    import json

    mapping = tmp_path / "mapping.toml"
    made = cli("init", SAMPLE, "--output", str(mapping))
    assert made.returncode == 0, made.stderr
    again = cli("init", SAMPLE, "--output", str(mapping))
    assert again.returncode == 2 and "--force" in again.stderr
    checked = cli(
        "validate", SAMPLE, "--mapping", str(mapping), "--results-dir", str(tmp_path / "v")
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid              2400" in checked.stdout
    shown = cli("preview", SAMPLE, "--mapping", str(mapping), "--line", "3")
    assert shown.returncode == 0, shown.stderr
    (only,) = json.loads(shown.stdout)
    assert only["line"] == "3" and only["operation"] == "createCustomerEvent"


def test_the_api_key_never_appears_with_batches_auto_rate_fallbacks_and_an_outage(tmp_path):
    canary = "plainApiKey_CANARY_93b1e7d4"
    env = clean_env(PLAIN_API_KEY=canary)
    logs = tmp_path / "logs"
    logs.mkdir()
    fake = FakePlain(api_keys={canary: ApiKey()}, rate_limit=200, window_s=1.0, max_mutations=3)
    extra = ("--events-per-request", "8", "--rate", "auto", "--outage-limit", "2s")
    # Debug logs are long: they go to files (searched below), not to pipes that could fill.
    with fake, open(logs / "stdout.log", "w") as out, open(logs / "stderr.log", "w") as err:
        command = [sys.executable, "-m", "backfill", "-vv", *run_args(fake, tmp_path, *extra)]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while len(fake.stats().creations) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        fake.faults = Faults(outage_until=time.monotonic() + 60)
        assert process.wait(timeout=120) == 5
    stdout = (logs / "stdout.log").read_text("utf-8")
    stderr = (logs / "stderr.log").read_text("utf-8")
    assert "lowered to" in stdout and "Plain is not answering" in stderr
    assert "DEBUG" in stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "failed.csv" for p in files)
    assert all(canary.encode() not in p.read_bytes() for p in files)
