"""The pipeline ends, with a clear exit code, whatever goes wrong (mocked HTTP, real files)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest

from backfill import arun, planner, resolve
from backfill import job as job_module
from backfill.ledger import SqliteLedger
from tests.conftest import MAPPING, SAMPLE

PREFLIGHT = {
    "data": {
        "myWorkspace": {"id": "w_1", "name": "Acme"},
        "myPermissions": {"permissions": ["customerEvent:create"]},
    }
}


CREATED = {
    "data": {
        "createCustomerEvent": {
            "customerEvent": {"id": "tev_1", "customerId": "c"},
            "error": None,
        }
    }
}


def settings(tmp_path, **given):
    return resolve(
        sources=(SAMPLE,),
        mapping=MAPPING,
        trust_env=False,
        api_key="k",
        api_url="http://plain.test/graphql/v1",
        ledger=str(tmp_path / "ledger.sqlite"),
        results_dir=str(tmp_path / "results"),
        **{"rate": "1000/s", **given},
    )


def transport(answer_events):
    def handler(request: httpx.Request) -> httpx.Response:
        if b"preflight" in request.content:
            return httpx.Response(200, json=PREFLIGHT)
        return answer_events(request)

    return httpx.MockTransport(handler)


async def test_a_server_answering_nonsense_leaves_rows_retryable_and_the_run_ends(tmp_path):
    mock = transport(lambda request: httpx.Response(200, json={"error": "boom"}))
    summary = await asyncio.wait_for(
        arun(settings(tmp_path, limit=6, max_retries=1, concurrency=3), transport=mock), 30
    )
    assert summary.exit_code == 1
    assert summary.counts == {"retryable": 6}
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        assert ledger.status_counts() == {"retryable": 6}
        assert ledger.query("SELECT DISTINCT code FROM attempts") == [("BAD_RESPONSE",)]


async def test_an_unexpected_error_stops_the_run_with_exit_2_instead_of_hanging(
    tmp_path, monkeypatch
):
    real_map_row = planner.map_row

    def exploding(mapper, row, external_id, **options):
        if row.position == "40":
            raise RuntimeError("bug")
        return real_map_row(mapper, row, external_id, **options)

    monkeypatch.setattr(planner, "map_row", exploding)
    ok = transport(lambda request: httpx.Response(200, json=CREATED))
    summary = await asyncio.wait_for(arun(settings(tmp_path, chunk_rows=10), transport=ok), 30)
    assert summary.exit_code == 2
    assert "internal error: RuntimeError: bug" in summary.message
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        (state,) = ledger.query("SELECT state FROM runs")
        assert state == ("stopped",)
        assert set(ledger.status_counts()) <= {"delivered"}


async def test_a_ledger_failure_mid_run_stops_with_exit_2(tmp_path, monkeypatch):
    calls = 0
    real = SqliteLedger.record_outcomes

    def failing(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 5:
            import sqlite3

            with self._transaction():
                raise sqlite3.OperationalError("disk I/O error")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SqliteLedger, "record_outcomes", failing)
    ok = transport(lambda request: httpx.Response(200, json=CREATED))
    summary = await asyncio.wait_for(arun(settings(tmp_path, limit=50), transport=ok), 30)
    assert summary.exit_code == 2
    assert "disk I/O error" in summary.message
    # The event whose answer could not be recorded stays in_flight: sent again next run.
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        assert ledger.status_counts().get("in_flight", 0) >= 1


@pytest.mark.parametrize("status", [404, 502])
async def test_an_endpoint_that_is_not_plain_never_marks_rows_rejected(tmp_path, status):
    mock = httpx.MockTransport(lambda request: httpx.Response(status, text="<html>nope</html>"))
    summary = await asyncio.wait_for(
        arun(settings(tmp_path, limit=5, max_retries=0), transport=mock), 30
    )
    assert summary.exit_code in (2, 5)
    assert "rejected" not in summary.counts


async def test_a_stop_during_a_batch_records_what_plain_answered_and_retries_nothing_more(tmp_path):
    """K=5: four events are created, one keeps failing; a signal ends the run at once."""
    created: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "input" in body["variables"]:  # the failing one, retried alone
            return httpx.Response(500, json={"errors": [{"message": "boom"}]})
        data, errors = {}, []
        for name, value in body["variables"].items():
            alias = "e" + name[1:]
            if alias == "e0":
                data[alias] = None
                error = {"message": "boom", "path": [alias], "extensions": {"code": "INTERNAL"}}
                errors.append(error)
            else:
                created.append(value["externalId"])
                event = {"customerEvent": {"id": f"tev_{alias}", "customerId": "c"}, "error": None}
                data[alias] = event
        return httpx.Response(200, json={"data": data, "errors": errors})

    loop = asyncio.get_running_loop()
    loop.call_later(1.0, os.kill, os.getpid(), signal.SIGINT)
    run = arun(
        settings(tmp_path, limit=5, events_per_request=5, concurrency=1, max_retries=50),
        handle_signals=True,
        transport=transport(answer),
    )
    started = time.monotonic()
    summary = await asyncio.wait_for(run, 30)
    assert summary.exit_code == 130
    assert time.monotonic() - started < 5  # no waiting out the grace period
    assert len(created) == 4
    assert summary.counts == {"delivered": 4, "retryable": 1}
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        assert ledger.status_counts() == {"delivered": 4, "retryable": 1}


async def test_a_failed_heartbeat_stops_the_run_with_exit_2_and_the_summary_is_written(
    tmp_path, monkeypatch
):
    from backfill.errors import LedgerError

    beats = []

    def failing(self, run_id):
        beats.append(run_id)
        raise LedgerError(f"run {run_id} was taken for dead by another run")

    monkeypatch.setattr(job_module, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(SqliteLedger, "heartbeat", failing)
    ok = transport(lambda request: httpx.Response(200, json=CREATED))
    summary = await asyncio.wait_for(arun(settings(tmp_path, rate="20/s"), transport=ok), 30)
    assert len(beats) == 1  # the beat stops at its first failure
    assert summary.exit_code == 2
    assert "taken for dead" in summary.message
    assert summary.counts.get("delivered", 0) < 2400  # it stopped early
    with SqliteLedger.open(str(tmp_path / "ledger.sqlite")) as ledger:
        assert ledger.query("SELECT state FROM runs") == [("stopped",)]
