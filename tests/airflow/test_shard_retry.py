"""A shard task that fails part-way is retried by Airflow and resumes from the shared ledger.

`dag.test()` runs the tasks in this process, so the failure is injected here: the sender
loses the answer to one request (sent, never recorded, as when a worker dies) and the
run fails. Nothing else is mocked: real HTTP to the fake Plain, a real PostgreSQL ledger,
Airflow's own retry of the task instance.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backfill.fakeplain import FakePlain
from backfill.ledger import open_ledger
from backfill.models import Event
from backfill.sender import Sender
from tests.airflow.conftest import (
    MAPPING,
    SAMPLE,
    connect_plain,
    ledger_counts,
    load_example,
    run_dag,
    sample_ids,
    task_states,
    two_shard_job,
    xcoms,
)

#: Requests answered before the one whose answer is lost.
ANSWERED = 60


def lose_an_answer_after(monkeypatch: pytest.MonkeyPatch, answered: int) -> list[str]:
    """Make the request after `answered` ones reach Plain, then fail before its answer
    is recorded (once in the whole DAG run); return the externalIds it carried."""
    real = Sender.send_many
    calls = itertools.count(1)
    lost: list[str] = []

    async def send_many(self: Sender, events: Sequence[Event], **options: Any) -> Any:
        if next(calls) == answered + 1:
            await real(self, events)
            lost.extend(event.external_id for event in events)
            raise RuntimeError("injected: the worker lost the answer of a request it sent")
        return await real(self, events, **options)

    monkeypatch.setattr(Sender, "send_many", send_many)
    return lost


def test_a_failed_shard_task_is_retried_and_resumes_from_the_ledger(
    fake_plain: FakePlain, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    connect_plain(monkeypatch, fake_plain.url)
    example = load_example(
        monkeypatch, BACKFILL_SOURCES=SAMPLE, BACKFILL_MAPPING=MAPPING, BACKFILL_LEDGER=pg_url
    )
    job = two_shard_job(pg_url, tmp_path)
    dag = example.build_dag(job, schedule="@yearly", retries=2, retry_delay=timedelta(0))
    lost = lose_an_answer_after(monkeypatch, ANSWERED)

    run = run_dag(dag, datetime(2026, 1, 1, tzinfo=UTC))

    assert run.state == "success"
    assert len(lost) == 1
    states = task_states(run)
    assert all(state == "success" for state, _ in states.values()), states
    # Exactly one shard task failed its first try, and Airflow ran it again.
    (retried,) = [key for key, (_, tries) in states.items() if tries == 2]
    assert retried[0] == "backfill_shard"
    assert sum(tries for _, tries in states.values()) == len(states) + 1

    # Plain got every row of the interval once; only the lost request was sent twice,
    # and Plain refused the second as a duplicate externalId.
    expected = sample_ids(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    stats = fake_plain.stats()
    assert set(stats.creations) == expected and set(stats.creations.values()) == {1}
    twice = {ext_id for ext_id, n in stats.create_attempts.items() if n > 1}
    assert twice == set(lost) and stats.create_attempts[lost[0]] == 2
    assert ledger_counts(pg_url) == {"delivered": len(expected) - 1, "already_existed": 1}

    # The failed try's run stopped with exit 2; the retry's run skipped what it had
    # delivered (no request for those) and sent the rest of the shard.
    with open_ledger(pg_url, readonly=True) as ledger:
        runs = ledger.query("SELECT run_id, exit_code FROM runs ORDER BY started_at")
        failed = [run_id for run_id, code in runs if code == 2]
        assert len(runs) == 3 and len(failed) == 1
        (delivered_before,) = ledger.query(
            "SELECT COUNT(*) FROM events WHERE delivered_by = ?", failed
        )[0]
        (lost_status,) = ledger.query("SELECT status FROM events WHERE external_id = ?", lost)[0]
    assert delivered_before >= ANSWERED
    assert lost_status == "already_existed"
    result = xcoms(run)[retried]
    assert result["shard"] == f"{retried[1]}/2"
    assert result["skipped_done"] == delivered_before > 0
    counts = result["counts"]
    assert counts["already_existed"] == 1
    assert counts["delivered"] + counts["already_existed"] == result["rows_read"]
    # One request to check the key, then one for each row the failed try had not delivered.
    assert result["requests"] == 1 + result["rows_read"] - delivered_before
