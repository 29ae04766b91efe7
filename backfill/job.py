"""The run's machinery: one job from its first chunk to its summary.

`execute` checks the mapping and sources, opens the ledger, then reads and plans (the
planning loop of `planner`), claims, sends (`sender`), records each answer in the
ledger and each row in the result files, and summarises. `pipeline.arun` calls it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx

from backfill.config import FailureLimit, Settings
from backfill.errors import (
    AuthError,
    BackfillError,
    ConfigError,
    ExitCode,
    LedgerError,
    Transient,
)
from backfill.ids import ID_FORMAT_VERSION
from backfill.intake import Prepared, check_upsert, prepare
from backfill.ledger import open_ledger
from backfill.mapping import MappingSpec
from backfill.models import (
    FAILED,
    Counts,
    Event,
    Invalid,
    NoticeCallback,
    Outcome,
    Progress,
    ProgressCallback,
    ResultRow,
    Status,
    Workspace,
)
from backfill.plain import check_access
from backfill.planner import (
    Decision,
    Identified,
    Planned,
    Rules,
    identified,
    known_from,
    settle,
)
from backfill.readers import (
    ReadProgress,
)
from backfill.reports import ResultsWriter, RunSummary, iso, issue_row, write_summary
from backfill.sender import Sender, SendOptions, Sent
from backfill.upserts import Upserts

if TYPE_CHECKING:
    from backfill.ledger import Ledger

log = logging.getLogger(__name__)

EXIT_SIGNALS: Final = {signal.SIGINT: ExitCode.SIGINT, signal.SIGTERM: ExitCode.SIGTERM}
#: How long in-flight requests may finish after a stop signal before they are left `in_flight`.
STOP_GRACE_S: Final = 10.0
HEARTBEAT_S: Final = 10.0
#: How long a run waits for rows another live run holds, and how often it looks.
HELD_WAIT_S: Final = 30.0
#: A claim lasts at least this long unrenewed (the heartbeat renews it every HEARTBEAT_S).
CLAIM_MIN_S: Final = 60.0
HELD_POLL_S: Final = 1.0
#: With several events per request: how long a sender waits to fill a request.
BATCH_FILL_S: Final = 0.05


async def execute(
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
    notice: NoticeCallback | None = None,
    handle_signals: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunSummary:
    """Run one job to its end: check the sources, open the ledger, send, summarise."""
    prepared = prepare(settings)
    spec = prepared.spec
    dry_run = settings.dry_run
    if not settings.api_key and not dry_run:
        raise ConfigError("set PLAIN_API_KEY to the API key of the workspace to write to")
    if settings.upsert_customers:
        check_upsert(spec)
    # A dry run reads the ledger as it is and never creates or changes it.
    ledger = open_ledger(settings.ledger, readonly=dry_run)
    try:
        _check_id_rule(ledger, spec, allow_change=settings.allow_id_change, record=not dry_run)
        run_id = new_run_id()
        folder = Path(settings.results_dir) / _folder_name(run_id, settings)
        say = notice or (lambda text: log.info("%s", text))
        job = _Job(settings, prepared, ledger, run_id, folder, say, progress, transport)
        if not dry_run:
            ledger.start_run(
                run_id,
                options=settings.public(),
                mapping_hash=spec.hash,
                id_rule=spec.id_rule,
                id_format_version=ID_FORMAT_VERSION,
            )
        what = "dry run (nothing is sent or recorded)" if dry_run else "run"
        say(f"{what} {run_id}: ledger {ledger.path}, results {folder}")
        return await job.execute(handle_signals=handle_signals)
    finally:
        ledger.close()


def _folder_name(run_id: str, settings: Settings) -> str:
    """`<run_id>`, `<run_id>-shard-I-of-N`, and `-dry-run` after either."""
    shard = settings.shard
    name = f"{run_id}-{shard.label}" if shard is not None else run_id
    return f"{name}-dry-run" if settings.dry_run else name


def new_run_id() -> str:
    """A sortable, unique run id: UTC start time plus a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _check_id_rule(
    ledger: Ledger, spec: MappingSpec, *, allow_change: bool, record: bool = True
) -> None:
    rule = f"{ID_FORMAT_VERSION}:{spec.id_rule}"
    known = ledger.meta("id_rule")
    if known is not None and known != rule and not allow_change:
        raise LedgerError(
            f"the ledger {ledger.path} was written with another externalId rule "
            f"({known}); this mapping's rule is {rule}. Resuming would create new events in "
            "Plain for rows already delivered. Pass --allow-id-change if that is intended, "
            "or --ledger with another file if this is another job."
        )
    if known != rule and record:
        ledger.set_meta("id_rule", rule)


@dataclass(slots=True)
class _Stop:
    reason: str = ""
    exit_code: int = 0
    error: BackfillError | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, reason: str, exit_code: int, error: BackfillError | None = None) -> None:
        if not self.event.is_set():
            self.reason, self.exit_code, self.error = reason, exit_code, error
            self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


class _Heartbeat:
    """Renews a run's liveness and claims every HEARTBEAT_S, from a thread of its own.

    Its own thread, so that a slow source (a query that takes a minute to its first row)
    holding up the event loop does not let the run's claims lapse. A failure is handed
    to `failed` once, and the beat stops.
    """

    def __init__(
        self, ledger: Ledger, run_id: str, failed: Callable[[BackfillError], object]
    ) -> None:
        self._ledger, self._run_id, self._failed = ledger, run_id, failed
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            # A beat stuck on an unanswering database must not keep the run from ending.
            self._thread.join(timeout=HEARTBEAT_S)

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_S):
            try:
                self._ledger.heartbeat(self._run_id)
            except BackfillError as exc:
                self._failed(exc)
                return
            except Exception as exc:
                log.exception("unexpected error in the heartbeat")
                self._failed(LedgerError(f"the heartbeat failed: {type(exc).__name__}: {exc}"))
                return


class _Job:
    """One run's moving parts; `execute` is the whole job."""

    def __init__(
        self,
        settings: Settings,
        prepared: Prepared,
        ledger: Ledger,
        run_id: str,
        folder: Path,
        notice: NoticeCallback,
        progress: ProgressCallback | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.settings = settings
        self.selection = prepared.selection
        self.spec = prepared.spec
        self.mapper = prepared.mapper
        self.prepared = prepared
        self.ledger = ledger
        self.run_id = run_id
        self.folder = folder
        self.notice = notice
        self.progress = progress
        self.transport = transport
        self.counts = Counts()
        self.stop = _Stop()
        self.started = time.monotonic()
        self.workspace: Workspace | None = None
        self.sender: Sender | None = None
        self._preflight_lock = asyncio.Lock()
        self.results = ResultsWriter(folder, dry_run=settings.dry_run)
        self.read_progress = ReadProgress()
        self._read_fraction = 0.0  # of the sources, once the chunk being planned was read
        #: Customers whose events Plain refused with not_found (for the summary).
        self.unknown_customers: set[str] = set()
        #: With --upsert-customers: each customer upserted once, before its first event.
        self.upserts = Upserts(
            ledger,
            run_id,
            enabled=settings.upsert_customers,
            stop=lambda error: self.stop.set(str(error), error.exit_code, error),
        )
        #: Dry runs: what the ledger holds for events it would send again.
        self._ledger_status: dict[str, str] = {}
        self.failure_limit = settings.max_failures
        self._signalled = False
        #: Rows settled by earlier runs (and of those, the rejected), for --max-failures.
        self._earlier = self._failed_earlier = 0
        self._held: list[Event] = []  # rows another live run held when this one came to send
        self.rules = Rules.of(settings, prepared.mapper, prepared.selection)

    async def execute(self, *, handle_signals: bool) -> RunSummary:
        loop = asyncio.get_running_loop()
        installed = []
        if handle_signals:
            for signum in EXIT_SIGNALS:
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
        options = self.settings
        # Deep enough that every sender can fill a request, shallow enough to bound memory.
        depth = options.concurrency * max(4, 2 * options.events_per_request)
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=depth)
        heartbeat = _Heartbeat(
            self.ledger,
            self.run_id,
            # A failed heartbeat (from its thread) stops the run as any ledger error does.
            lambda exc: loop.call_soon_threadsafe(self.stop.set, str(exc), exc.exit_code, exc),
        )
        if not options.dry_run:
            heartbeat.start()
        try:
            await self._run_tasks(queue)
            try:
                await self._settle_held()
            except BackfillError as exc:  # the ledger failed: the summary still gets written
                self.stop.set(str(exc), exc.exit_code, exc)
        finally:
            heartbeat.stop()
            for signum in installed:
                loop.remove_signal_handler(signum)
            if self.sender is not None:
                await self.sender.aclose()
            self.results.close()
        return self._summarise()

    async def _settle_held(self) -> None:
        """Rows another live run held when this one came to send them.

        Rows whose holder ends (or is taken for dead) meanwhile are claimed and sent here;
        the holder is given `HELD_WAIT_S` to settle the rest. Rows still held then end this
        run with exit 6, to be sent by a later run if the other leaves them.
        """
        if not self._held:
            return
        held = {event.external_id: event for event in self._held}
        self._held = []
        waiting = dict(held)
        deadline = time.monotonic() + HELD_WAIT_S
        while waiting and not self.stop.is_set:
            entries = self.ledger.lookup(waiting)
            pending = [
                event
                for ext_id, event in waiting.items()
                if (entry := entries.get(ext_id)) is not None and entry.status == Status.IN_FLIGHT
            ]
            if not pending or time.monotonic() >= deadline:
                break
            size = self.sender.events_per_request if self.sender else 1
            for start in range(0, len(pending), size):
                # What this run can claim now (its holder ended) it sends; the rest come back.
                await self._deliver(pending[start : start + size])
            still = {event.external_id for event in self._held}
            self._held = []
            for event in pending:
                if event.external_id not in still:
                    del waiting[event.external_id]
                    del held[event.external_id]
            if waiting:
                await asyncio.sleep(HELD_POLL_S)
        entries = self.ledger.lookup(held)
        holders: set[str] = set()
        for ext_id, event in held.items():
            entry = entries.get(ext_id)
            if entry is None:  # released unsent: a later run sends it
                self._write_event(event, Outcome(Status.RETRYABLE, attempts=0), note="released")
                continue
            if entry.status == Status.IN_FLIGHT:
                holders.add(entry.run_id)
            note = f"held by run {entry.run_id} when this run came to send it"
            self._write(
                ResultRow(
                    run_id=self.run_id,
                    external_id=ext_id,
                    status=str(entry.status),
                    plain_event_id=entry.plain_event_id,
                    source=event.source,
                    position=event.position,
                    code=entry.code,
                    message=entry.message,
                    note=note,
                    event_timestamp=event.timestamp,
                    attempts=entry.attempts,
                ),
                entry.status,
            )
        if holders:
            self.stop.set(
                f"{len(held)} rows were held by another live run ({', '.join(sorted(holders))}) "
                f"and some still are after {HELD_WAIT_S:.0f} s; re-run later to send what it "
                "leaves",
                ExitCode.BUSY,
            )

    # --- producing -----------------------------------------------------------------

    async def _produce(self, queue: asyncio.Queue[Event | None]) -> None:
        try:
            chunks = self.prepared.chunks(
                limit=self.settings.limit,
                chunk_rows=self.settings.chunk_rows,
                progress=self.read_progress,
            )
            known = known_from(self.ledger, self.ledger)
            await self._produce_from(
                queue,
                identified(
                    chunks,
                    self.rules,
                    known,
                    read_fraction=lambda: self.read_progress.fraction,
                    stopped=lambda: self.stop.is_set,
                ),
            )
        except BackfillError as exc:
            self.stop.set(str(exc), exc.exit_code, exc)
        except Exception as exc:
            log.exception("unexpected error while reading and planning")
            self.stop.set(f"internal error: {type(exc).__name__}: {exc}", ExitCode.USAGE)
        if not self.settings.dry_run:
            for _ in range(self.settings.concurrency):
                await queue.put(None)

    async def _produce_from(
        self, queue: asyncio.Queue[Event | None], chunks: Iterator[Identified]
    ) -> None:
        for chunk in chunks:
            if self.stop.is_set:
                break
            known = await asyncio.wrap_future(chunk.known)
            self._read_fraction = chunk.read_fraction
            events = self._plan_chunk(settle(self.rules, chunk.pairs, known))
            if self.settings.dry_run:
                for event in events:
                    self._would_send(event)
                self._report_progress()
                continue
            for n, event in enumerate(events):
                if self.stop.is_set:
                    self._unsent(event)
                    continue
                try:
                    await queue.put(event)
                except asyncio.CancelledError:
                    for left in events[n:]:
                        self._unsent(left)
                    raise
            self._report_progress()

    def _plan_chunk(self, items: list[Planned]) -> list[Event]:
        """Record and report what is not sent; return the events to send."""
        self.counts.rows_read += len(items)
        events: list[Event] = []
        issues: list[tuple[Invalid, Status]] = []
        settled: list[Planned] = []
        for item in items:
            if item.decision == Decision.SEND:
                assert item.event is not None
                events.append(item.event)
                if item.entry is not None and self.settings.dry_run:
                    self._ledger_status[item.external_id] = str(item.entry.status)
            elif item.decision == Decision.INVALID:
                issues.append((item.invalid, Status.INVALID))
            elif item.decision == Decision.DUPLICATE:
                issues.append((item.invalid, Status.DUPLICATE_IN_SOURCE))
            else:
                settled.append(item)
        self._settled_earlier(settled)
        if not self.settings.dry_run:
            self.ledger.record_issues(self.run_id, issues)
        for issue, status in issues:
            self._write(issue_row(self.run_id, issue, status), status)
        return events

    def _settled_earlier(self, items: list[Planned]) -> None:
        """Report rows an earlier run settled, in bulk: a resume skips millions of them."""
        if not items:
            return
        counts = self.counts
        by_status = Counter(item.entry.status for item in items if item.entry is not None)
        for status, n in by_status.items():
            counts.add(status, n)
        self._failed_earlier += by_status[Status.INVALID] + by_status[Status.REJECTED]
        for item in items:
            if item.decision == Decision.SKIP_DONE:
                counts.skipped_done += 1
                counts.changed_payloads += item.changed
        self._earlier += len(items)
        self.results.write_settled(self.run_id, items)
        if self.failure_limit is not None and self._failed_earlier:
            self._check_failures(self.failure_limit)

    # --- sending -------------------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue[Event | None]) -> None:
        closing = False
        while not closing:
            batch, closing = await self._take(queue)
            if not batch:
                return
            try:
                await self._deliver(batch)
            except BackfillError as exc:  # e.g. the ledger cannot be written
                self.stop.set(str(exc), exc.exit_code, exc)
            except Exception as exc:
                log.exception("unexpected error while sending %s", batch[0].external_id)
                self.stop.set(f"internal error: {type(exc).__name__}: {exc}", ExitCode.USAGE)

    async def _take(self, queue: asyncio.Queue[Event | None]) -> tuple[list[Event], bool]:
        """The next events to send in one request, and whether the queue has ended."""
        first = await queue.get()
        if first is None:
            return [], True
        batch = [first]
        size = self.sender.events_per_request if self.sender else self.settings.events_per_request
        deadline = time.monotonic() + BATCH_FILL_S
        while len(batch) < size:
            try:
                event = queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0 or self.stop.is_set:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
            if event is None:
                return batch, True
            batch.append(event)
        return batch, False

    async def _deliver(self, batch: list[Event]) -> None:
        """Send events: in_flight in the ledger first, then their answers."""
        state = "unsent"
        answers: dict[str, Sent] = {}
        try:
            if self.stop.is_set or not await self._preflight():
                for event in batch:
                    self._unsent(event)
                return
            assert self.sender is not None
            refused: dict[str, Outcome] = {}
            for event in batch:
                outcome = await self.upserts.ready(event, self.sender)
                if outcome is not None:
                    refused[event.external_id] = outcome
            claimed = self.ledger.mark_in_flight(
                self.run_id,
                batch,
                mapping_hash=self.spec.hash,
                claim_s=max(self.settings.timeout_s * 4, CLAIM_MIN_S),
            )
            if len(claimed) < len(batch):
                # Another live run holds these (or settled them since): they are its to send.
                self._held += [e for e in batch if e.external_id not in claimed]
                batch = [e for e in batch if e.external_id in claimed]
            state = "in_flight"
            sendable = [event for event in batch if event.external_id not in refused]
            for event in batch:
                if event.external_id in refused:
                    answers[event.external_id] = Sent(refused[event.external_id], [])
            if sendable:
                await self.sender.send_many(
                    sendable,
                    stopping=lambda: self.stop.is_set,
                    settled=lambda n, sent: answers.__setitem__(sendable[n].external_id, sent),
                )
            self._record(batch, answers)
            state = "recorded"
            self._report_progress()
        except BaseException as exc:
            # Whatever stopped us (cancellation at the end of a stop, a ledger error),
            # every row still gets its line in results.csv.
            if state == "in_flight" and answers and isinstance(exc, asyncio.CancelledError):
                # Cut short at the end of a stop: what has its answer is recorded, the
                # rest stays in_flight.
                self._record([e for e in batch if e.external_id in answers], answers)
            for event in batch:
                if state == "unsent":
                    self._unsent(event)
                elif state == "in_flight" and event.external_id not in answers:
                    note = "the run stopped before Plain's answer was recorded; sent again next run"
                    self._write_event(event, Outcome(Status.IN_FLIGHT, attempts=1), note=note)
            raise

    def _record(self, events: list[Event], answers: dict[str, Sent]) -> None:
        """Record the answers of sent events in the ledger, then in the results."""
        outcomes = [(event, answers[event.external_id].outcome) for event in events]
        attempts = [a for event in events for a in answers[event.external_id].attempts]
        for event in events:
            stop = answers[event.external_id].stop
            if stop is not None:
                self.stop.set(str(stop), stop.exit_code, stop)
        self.ledger.record_outcomes(self.run_id, outcomes, attempts)
        for event, outcome in outcomes:
            if outcome.status == Status.REJECTED and outcome.code == "not_found" and event.customer:
                self.unknown_customers.add(event.customer)
            self._write_event(event, outcome)

    async def _preflight(self) -> bool:
        """Check the key once, before the first event; False when the run must stop."""
        async with self._preflight_lock:
            if self.workspace is not None:
                return True
            if self.stop.is_set:
                return False
            settings = self.settings
            self.sender = Sender(
                url=settings.api_url,
                api_key=settings.api_key,
                options=SendOptions(
                    settings.rate,
                    max_retries=settings.max_retries,
                    timeout_s=settings.timeout_s,
                    concurrency=settings.concurrency,
                    events_per_request=settings.events_per_request,
                    outage_limit_s=settings.outage_limit_s,
                ),
                transport=self.transport,
                notice=self.notice,
            )
            try:
                workspace = await self.sender.preflight()
                settings = self.settings
                check_access(
                    workspace,
                    kinds=self.spec.kinds,
                    upsert=settings.upsert_customers,
                    expect_workspace=settings.expect_workspace,
                )
            except AuthError as exc:
                self.stop.set(str(exc), ExitCode.AUTH, exc)
                return False
            except Transient as exc:
                self.stop.set(f"Plain is unreachable: {exc}", ExitCode.UNREACHABLE, exc)
                return False
            except BackfillError as exc:
                self.stop.set(str(exc), exc.exit_code, exc)
                return False
            self.workspace = workspace
            self.notice(f"writing to workspace {workspace.name!r} ({workspace.id})")
            return True

    async def _run_tasks(self, queue: asyncio.Queue[Event | None]) -> None:
        tasks = [asyncio.create_task(self._produce(queue))]
        if not self.settings.dry_run:
            tasks += [
                asyncio.create_task(self._worker(queue)) for _ in range(self.settings.concurrency)
            ]
        stopper = asyncio.create_task(self.stop.event.wait())
        try:
            pending = set(tasks)
            while pending and not stopper.done():
                # Only the tasks still running: a finished one would wake this at once, forever.
                await asyncio.wait([*pending, stopper], return_when=asyncio.FIRST_COMPLETED)
                pending = {task for task in pending if not task.done()}
            if not all(t.done() for t in tasks):
                # Stopping: requests in flight may finish for a bounded time, then stay in_flight.
                if not self._signalled:
                    self.notice(f"{self.stop.reason}; letting requests in flight finish")
                _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                while not queue.empty():
                    left = queue.get_nowait()
                    if left is not None:
                        self._unsent(left)
        finally:
            stopper.cancel()
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _on_signal(self, signum: signal.Signals) -> None:
        if self._signalled:
            # A second signal: leave at once; every ledger write is its own transaction.
            os._exit(EXIT_SIGNALS[signum])
        self._signalled = True
        self.notice(f"{signum.name}: stopping intake, letting requests in flight finish")
        # A run already stopping for another reason keeps that reason and its exit code.
        self.stop.set(f"interrupted by {signum.name}", EXIT_SIGNALS[signum])

    # --- results -------------------------------------------------------------------

    def _would_send(self, event: Event) -> None:
        status = self._ledger_status.pop(event.external_id, "new")
        self.counts.add("would_send")
        upsert = self.upserts.would_upsert(event)
        self.results.write_would_send(event, ledger_status=status, upsert_first=upsert)

    def _unsent(self, event: Event) -> None:
        note = "not sent: the run stopped; it is sent next run"
        self._write_event(event, Outcome(Status.RETRYABLE, attempts=0), note=note)

    def _write_event(self, event: Event, outcome: Outcome, *, note: str = "") -> None:
        self._write(
            ResultRow(
                run_id=self.run_id,
                external_id=event.external_id,
                status=str(outcome.status),
                plain_event_id=outcome.plain_event_id,
                source=event.source,
                position=event.position,
                code=outcome.code,
                message=outcome.message,
                note=note or event.note,
                event_timestamp=event.timestamp,
                attempts=outcome.attempts,
                sent_at=iso(outcome.sent_at),
                answered_at=iso(outcome.answered_at),
                latency_ms=outcome.latency_ms or "",
            ),
            outcome.status,
        )

    def _write(self, row: ResultRow, status: Status) -> None:
        self.counts.add(status)
        self.results.write(row)
        if self.failure_limit is not None and status in (Status.INVALID, Status.REJECTED):
            self._check_failures(self.failure_limit)

    def _check_failures(self, limit: FailureLimit) -> None:
        # Only this run's rows count: rows settled by earlier runs are not sent again.
        by = self.counts
        failed = by.get(Status.INVALID) + by.get(Status.REJECTED) - self._failed_earlier
        answered = sum(by.by_status.values()) - self._earlier
        read = by.rows_read - self._earlier
        if limit.exceeded(failed, answered, read) and not self.stop.is_set:
            self.stop.set(
                f"stopped by --max-failures {limit}: {failed} of {max(answered, read)} rows "
                "read so far are invalid or rejected; unsent rows are sent by the next run",
                ExitCode.MAX_FAILURES,
            )

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        by = self.counts
        self.progress(
            Progress(
                rows_read=by.rows_read,
                settled=sum(by.by_status.values()),
                delivered=by.get(Status.DELIVERED)
                + by.get(Status.ALREADY_EXISTED)
                - by.skipped_done,
                failed=sum(by.get(s) for s in FAILED),
                skipped=by.skipped_done,
                requests=self.sender.requests if self.sender else 0,
                elapsed_s=time.monotonic() - self.started,
                estimated_rows=self._estimated_rows(),
            )
        )

    def _estimated_rows(self) -> int | None:
        fraction = self._read_fraction
        if fraction <= 0:
            return None
        estimate = max(self.counts.rows_read, round(self.counts.rows_read / fraction))
        limit = self.settings.limit
        return min(estimate, limit) if limit is not None else estimate

    def _learnt_budget(self) -> str:
        auto = self.sender.auto if self.sender else None
        if auto is None or not auto.limit:
            return ""
        window = f"{auto.window_s:.3g}s window" if auto.window_s else "window"
        share = self.settings.rate.headroom
        return f"{auto.limit} requests per {window}, {share:.0%} left to other traffic"

    def _summarise(self) -> RunSummary:
        elapsed = time.monotonic() - self.started
        by = self.counts
        if self.stop.is_set:
            exit_code, state = self.stop.exit_code, "stopped"
        elif any(by.get(s) for s in FAILED):
            exit_code, state = ExitCode.FAILED_ROWS, "finished with failures"
        else:
            exit_code, state = ExitCode.OK, "finished"
        if self.settings.dry_run:
            state = f"dry run {state}"
        sent_ok = by.get(Status.DELIVERED) + by.get(Status.ALREADY_EXISTED) - by.skipped_done
        workspace = self.workspace
        summary = RunSummary(
            run_id=self.run_id,
            exit_code=exit_code,
            state=state,
            counts=dict(by.by_status),
            rows_read=by.rows_read,
            requests=self.sender.requests if self.sender else 0,
            rate_limited=self.sender.rate_limited if self.sender else 0,
            skipped_done=by.skipped_done,
            changed_payloads=by.changed_payloads,
            elapsed_s=round(elapsed, 3),
            events_per_s=round(sent_ok / elapsed, 2) if elapsed > 0 else 0.0,
            results_dir=str(self.folder),
            ledger=self.ledger.path,
            workspace_id=workspace.id if workspace else "",
            workspace_name=workspace.name if workspace else "",
            message=self.stop.reason,
            unknown_customers=len(self.unknown_customers),
            customers_upserted=self.upserts.upserted,
            dry_run=self.settings.dry_run,
            events_per_request=self.settings.events_per_request,
            events_per_request_used=(
                self.sender.events_per_request if self.sender else self.settings.events_per_request
            ),
            fallbacks=tuple(self.sender.fallbacks) if self.sender else (),
            outages=self.sender.breaker.outages if self.sender else 0,
            rate=str(self.settings.rate),
            learnt_budget=self._learnt_budget(),
            selection=self.settings.selection_text,
        )
        if not self.settings.dry_run:
            self.ledger.end_run(
                self.run_id,
                state=state,
                exit_code=exit_code,
                counts=summary.counts,
                workspace_id=summary.workspace_id,
            )
        write_summary(summary, self.folder)
        return summary
