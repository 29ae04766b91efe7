"""`backfill run` killed or interrupted anywhere, then resumed: every row lands exactly once.

Each test runs the real CLI as a subprocess against an in-process FakePlain on 127.0.0.1,
stops it the hard way (SIGKILL at a random moment, a second SIGINT, SIGTERM while requests
hang), checks the ledger survived, resumes to the end and checks that Plain holds every
sample row exactly once and the ledger says so.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from backfill.fakeplain import FakePlain, Faults
from backfill.ledger import SqliteLedger
from tests.conftest import SAMPLE_ROWS, clean_env, cli, cli_popen, run_args, sample_ids

KILL_RATE = ("--rate", "500/s", "--concurrency", "8")
RESUME_RATE = ("--rate", "2000/s", "--concurrency", "8")
#: Workers (requests in flight at once) in the signal tests.
WORKERS = 6
#: The grace a stop signal gives requests in flight, in the runs of the SIGTERM tests: 4 s
#: rather than the product's 10 (`backfill.job.STOP_GRACE_S`), which they would sit out.
GRACE_S = 4.0
GRACE = {"backfill.job.STOP_GRACE_S": GRACE_S}
#: Answers slower than that grace.
HANGING_MS = (GRACE_S + 5) * 1000


class Watched:
    """A CLI subprocess whose stdout and stderr are read as they come, so no pipe fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lock = threading.Lock()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(process.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(process.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._lock:
                into.append(line)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    def wait_for_output(self, fragment: str, timeout: float) -> bool:
        return wait_until(lambda: fragment in self.stdout + self.stderr, timeout)

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the process if a failed assertion left it running; read the rest of its output."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def start(
    fake: FakePlain, tmp_path: Path, *extra: str, constants: dict[str, float] | None = None
) -> Watched:
    env = clean_env(PLAIN_API_KEY="test-key")
    return Watched(cli_popen(*run_args(fake, tmp_path, *extra), env=env, constants=constants))


def created(fake: FakePlain) -> int:
    return len(fake.stats().creations)


def sent(fake: FakePlain) -> int:
    return fake.stats().by_operation.get("createCustomerEvent", 0)


def ledger_path(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.sqlite")


def check_ledger_sound(tmp_path: Path) -> dict[str, str]:
    """The ledger a stopped run left opens, passes SQLite's integrity check; its statuses."""
    with SqliteLedger.open(ledger_path(tmp_path)) as ledger:
        assert ledger.query("PRAGMA integrity_check") == [("ok",)]
        return dict(ledger.query("SELECT external_id, status FROM events"))


def resume_and_check_exactly_once(fake: FakePlain, tmp_path: Path) -> None:
    """Resume to the end; then Plain holds each sample row once and the ledger agrees."""
    fake.faults = Faults()
    result = cli(
        *run_args(fake, tmp_path, *RESUME_RATE),
        env=clean_env(PLAIN_API_KEY="test-key"),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stats = fake.stats()
    assert set(stats.creations) == sample_ids()
    twice = {key: n for key, n in stats.creations.items() if n != 1}
    assert not twice, f"created more than once: {sorted(twice.items())[:10]}"
    with SqliteLedger.open(ledger_path(tmp_path)) as ledger:
        counts = ledger.status_counts()
        states = [run.state for run in ledger.runs()]
    assert set(counts) <= {"delivered", "already_existed"}, counts
    assert sum(counts.values()) == SAMPLE_ROWS
    assert states[-1] == "finished", states
    assert "running" not in states, states


# --- SIGKILL at a random moment --------------------------------------------------------

#: Where each seed's kill lands; the seed's generator picks the exact moment within it.
KILL_PHASES = ("startup", "early", "mid", "late", "anywhere")


def kill_moment(seed: int) -> tuple[str, int, float]:
    """(phase, events Plain must have created first, then seconds to wait before the kill)."""
    rng = random.Random(seed)
    phase = KILL_PHASES[seed % len(KILL_PHASES)]
    if phase == "startup":
        # The first request leaves ~0.25 s after the spawn: this is before it, at most.
        return phase, 0, rng.uniform(0.0, 0.15)
    if phase == "anywhere":
        # A full run at 500/s takes over 5 s: a moment picked by the clock alone.
        return phase, 0, rng.uniform(0.3, 3.5)
    low, high = {"early": (1, 150), "mid": (700, 1500), "late": (1500, 2000)}[phase]
    return phase, rng.randint(low, high), rng.uniform(0.0, 0.03)


@pytest.mark.parametrize("seed", range(5))
def test_sigkill_at_a_random_moment_then_resume_delivers_every_row_exactly_once(tmp_path, seed):
    phase, after_created, delay_s = kill_moment(seed)
    faults = Faults(latency_ms=(1, 15), seed=seed)
    with FakePlain(rate_limit=100_000, faults=faults) as fake:
        with start(fake, tmp_path, *KILL_RATE) as run:
            if after_created:
                reached = wait_until(lambda: created(fake) >= after_created, 60)
                assert reached, f"only {created(fake)} events created\n{run.stderr}"
            time.sleep(delay_s)
            run.process.send_signal(signal.SIGKILL)
            code = run.process.wait(timeout=30)
        killed_at = created(fake)
        assert code == -signal.SIGKILL, f"{phase}: exited {code} before the kill\n{run.stderr}"
        assert killed_at < SAMPLE_ROWS
        if Path(ledger_path(tmp_path)).exists():
            left = check_ledger_sound(tmp_path)
            # Whatever Plain created, the ledger had recorded it in flight first.
            assert set(fake.stats().creations) <= set(left), phase
        else:
            assert killed_at == 0, phase

        resume_and_check_exactly_once(fake, tmp_path)


# --- a second SIGINT -------------------------------------------------------------------


def hang_every_worker(fake: FakePlain, latency_ms: tuple[float, float], workers: int) -> set[str]:
    """Once the run sends, make every new answer slow; wait until each worker awaits one.

    Returns the externalIds created before the answers became slow (see `slow_ids`).
    """
    assert wait_until(lambda: created(fake) >= 50, 60), "the run never started sending"
    fake.faults = Faults(latency_ms=latency_ms)
    fast = set(fake.stats().creations)
    before = sent(fake)
    assert wait_until(lambda: sent(fake) >= before + workers, 30), "workers never hung"
    return fast


def slow_ids(fake: FakePlain, fast: set[str]) -> set[str]:
    """Events created after the answers became slow: their requests were in flight."""
    return set(fake.stats().creations) - fast


@pytest.mark.timing
def test_a_second_sigint_exits_130_at_once_and_the_ledger_resumes_exactly_once(tmp_path):
    with FakePlain(rate_limit=100_000) as fake:
        # The product's own grace: the second SIGINT ends the run long before it.
        with start(fake, tmp_path, "--rate", "400/s", "--concurrency", str(WORKERS)) as run:
            fast = hang_every_worker(fake, (HANGING_MS, HANGING_MS + 500), workers=WORKERS)
            run.process.send_signal(signal.SIGINT)
            if not run.wait_for_output("stopping", timeout=5):
                time.sleep(0.5)
            assert run.process.poll() is None, "one SIGINT should wait for requests in flight"
            second = time.monotonic()
            run.process.send_signal(signal.SIGINT)
            code = run.process.wait(timeout=GRACE_S + 30)
            took = time.monotonic() - second
        assert code == 130, run.stdout + run.stderr
        assert took < 3.0, f"a second SIGINT took {took:.1f}s to end the run"
        assert "SIGINT: stopping intake" in run.stderr

        in_flight = slow_ids(fake, fast)
        assert in_flight
        statuses = check_ledger_sound(tmp_path)
        # Plain applied these but the run left before their answers: still in_flight.
        assert {statuses.get(i) for i in in_flight} == {"in_flight"}
        assert set(fake.stats().creations) <= set(statuses)

        resume_and_check_exactly_once(fake, tmp_path)


# --- SIGTERM while requests hang -------------------------------------------------------


@pytest.mark.timing
@pytest.mark.parametrize(
    ("latency_ms", "left_as"),
    [
        pytest.param((1000, 1500), "delivered", id="answered-within-the-grace"),
        pytest.param((HANGING_MS, HANGING_MS + 500), "in_flight", id="outlasting-the-grace"),
    ],
)
def test_sigterm_during_slow_requests_exits_143_within_the_grace_and_loses_nothing(
    tmp_path, latency_ms, left_as
):
    with FakePlain(rate_limit=100_000) as fake:
        with start(
            fake, tmp_path, "--rate", "400/s", "--concurrency", str(WORKERS), constants=GRACE
        ) as run:
            fast = hang_every_worker(fake, latency_ms, workers=WORKERS)
            signalled = time.monotonic()
            run.process.send_signal(signal.SIGTERM)
            code = run.process.wait(timeout=GRACE_S + 60)
            took = time.monotonic() - signalled
        assert code == 143, run.stdout + run.stderr
        assert "interrupted by SIGTERM" in run.stdout
        # Bounded by the grace period (plus a noisy machine's slack), whatever Plain does.
        assert took < GRACE_S + 8, f"SIGTERM took {took:.1f}s to end the run"
        if left_as == "in_flight":
            assert took >= GRACE_S - 1, f"gave requests in flight only {took:.1f}s"

        in_flight = slow_ids(fake, fast)
        assert in_flight
        statuses = check_ledger_sound(tmp_path)
        assert {statuses.get(i) for i in in_flight} == {left_as}
        assert set(statuses.values()) <= {"delivered", left_as}
        assert set(fake.stats().creations) <= set(statuses)

        resume_and_check_exactly_once(fake, tmp_path)
