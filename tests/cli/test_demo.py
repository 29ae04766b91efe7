"""The README's first command, as a newcomer runs it (reusing the test venv)."""

from __future__ import annotations

import socket
import subprocess

from tests.conftest import ROOT, SAMPLE_ROWS, clean_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo(tmp_path) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        BACKFILL_DEMO_PORT=str(free_port()),
        BACKFILL_LEDGER=str(tmp_path / "demo.sqlite"),
        BACKFILL_RESULTS_DIR=str(tmp_path / "results"),
    )
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def test_the_demo_delivers_the_sample_then_sends_nothing(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"  delivered          {SAMPLE_ROWS}\n" in first.stdout
    assert f"  requests           {SAMPLE_ROWS + 1} (0 rate-limited)" in first.stdout
    assert "writing to workspace 'Fake Workspace'" in first.stderr
    second = demo(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "  requests           0 (0 rate-limited)" in second.stdout
