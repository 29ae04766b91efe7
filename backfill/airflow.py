"""Run a backfill from Apache Airflow: validate, N shard tasks, a summary.

The functions here are what the tasks of a DAG call (see
`examples/airflow/backfill_dag.py`); each returns a small JSON-able dict for XCom.
Airflow is imported inside the functions that need it, so this module imports (and
its pure parts work) without Airflow installed.

A job is a `BackfillJob`: the sources, the mapping, a ledger every worker can reach
(a PostgreSQL URL, since shard tasks and their retries run on any worker), the number
of shards and the workspace's whole rate budget (each shard paces at 1/N of it). The
Plain API key comes from an Airflow connection (`plain_default`: the key is its
password), read inside the shard task: it never travels through XCom, task arguments
or rendered fields, and nothing here logs it (it is also given to Airflow's secrets
masker).

A retried shard task starts a new run of the same shard over the same ledger: rows
delivered by the failed try are skipped, rows it left `in_flight` are sent again (safe:
Plain refuses a second event with the same externalId), so retries are idempotent.

>>> job = BackfillJob(sources=("activity.csv",), mapping="mapping.toml",
...                   ledger="postgresql+psycopg://backfill@db/ledger", shards=4)
>>> job.shard_label(1)
'1/4'
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NoReturn

from backfill import pipeline
from backfill.config import (
    DEFAULT_API_URL,
    DEFAULT_RATE,
    DEFAULT_RESULTS_DIR,
    UNSET,
    Settings,
    resolve,
)
from backfill.errors import BackfillError, ConfigError, ExitCode
from backfill.models import Progress
from backfill.reports import RunSummary
from backfill.urls import mask_url

log = logging.getLogger(__name__)

#: The Airflow connection holding the Plain API key (as its password).
DEFAULT_CONN_ID: Final = "plain_default"
DEFAULT_SHARDS: Final = 4
#: How often a running shard logs its progress.
PROGRESS_LOG_S: Final = 30.0
#: Exit codes after which a retry of the task would do no better (or harm): the task
#: fails without its retries. 3: a retry would send rows past `--max-failures`;
#: 4: the key is refused. Every other failing exit code fails the try, and a retry
#: resumes from the ledger.
NO_RETRY_EXIT_CODES: Final = frozenset({ExitCode.MAX_FAILURES, ExitCode.AUTH})
#: Settings the job sets itself for each task; `BackfillJob.options` may not give them.
_JOB_SETTINGS: Final = frozenset(
    {"api_key", "api_url", "ledger", "rate", "results_dir", "shard", "since", "until", "dry_run"}
)
_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


class TaskFailed(BackfillError):
    """A task of the backfill failed; `summary` is what it would have returned."""

    def __init__(self, message: str, *, exit_code: int, summary: Mapping[str, Any]) -> None:
        self.exit_code = ExitCode(exit_code)
        self.summary = dict(summary)
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PlainConnection:
    """Where to send events and with which key; the key never appears in its repr."""

    api_key: str = field(repr=False)
    api_url: str = DEFAULT_API_URL


@dataclass(frozen=True, slots=True)
class BackfillJob:
    """One backfill job as a DAG runs it: what to read, where the ledger is, how to split.

    `options` holds any other setting of `backfill.resolve` (e.g. `concurrency`,
    `max_failures`, `source_sql` and `source_url`, `upsert_customers`); the job sets the
    key, URL, ledger, rate, results folder, shard and window itself. With more than one
    shard the ledger must be a PostgreSQL URL: shard tasks and their retries run on any
    worker, at once. `max_invalid` fails the validate task when more rows than that are
    invalid (None: invalid rows are reported by the shards, in their failed.csv).

    >>> BackfillJob(sources=("a.csv",), mapping="m.toml", ledger="l.sqlite", shards=2)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    backfill.errors.ConfigError: 2 shards run at once on any worker: the ledger must be a ...
    """

    sources: tuple[str, ...]
    mapping: str
    ledger: str = field(repr=False)  # a database URL may hold a password
    shards: int = DEFAULT_SHARDS
    #: The workspace's whole budget: each shard paces at 1/`shards` of it.
    rate: str = DEFAULT_RATE
    results_dir: str = DEFAULT_RESULTS_DIR
    conn_id: str = DEFAULT_CONN_ID
    max_invalid: int | None = None
    #: Not in the repr: `source_url` may hold a password.
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"a job needs at least one shard, not {self.shards}")
        if not self.mapping:
            raise ConfigError("give the job its mapping file")
        if not self.sources and not self.options.get("source_sql"):
            raise ConfigError("give the job its sources, or a source_sql query in its options")
        if not self.ledger:
            raise ConfigError(
                "give the job a ledger every worker can reach: a PostgreSQL URL "
                "(postgresql+psycopg://user@host/db); a worker's own disk does not outlive it"
            )
        taken = sorted(_JOB_SETTINGS & set(self.options))
        if taken:
            raise ConfigError(
                f"options {', '.join(taken)}: the job sets these itself (give rate, ledger "
                "and results_dir as fields of BackfillJob)"
            )
        settings = self.settings()  # every option is checked when the DAG is parsed
        if self.shards > 1 and settings.ledger.kind != "postgres":
            raise ConfigError(
                f"{self.shards} shards run at once on any worker: the ledger must be a "
                "PostgreSQL URL (postgresql+psycopg://...), not a file"
            )

    def shard_label(self, index: int) -> str:
        """`I/N`, as `--shard` takes it."""
        if not 0 <= index < self.shards:
            raise ValueError(f"shard index {index} is not within 0..{self.shards - 1}")
        return f"{index}/{self.shards}"

    def settings(
        self,
        *,
        plain: PlainConnection | None = None,
        shard: str = "",
        since: str = "",
        until: str = "",
        results_dir: str = "",
    ) -> Settings:
        """The settings of one task's run; the environment of the worker plays no part."""
        return resolve(
            sources=self.sources,
            mapping=self.mapping,
            trust_env=False,
            api_key=plain.api_key if plain is not None else UNSET,
            api_url=plain.api_url if plain is not None else UNSET,
            ledger=self.ledger,
            rate=self.rate,
            results_dir=results_dir or self.results_dir,
            shard=shard,
            since=since,
            until=until,
            **self.options,
        )


def api_key_from_airflow(conn_id: str = DEFAULT_CONN_ID) -> PlainConnection:
    """The API key (the connection's password) and endpoint from an Airflow connection.

    The endpoint is the connection's `api_url` extra, else its host when that is a URL
    (`https://core-api.uk.plain.com/graphql/v1`), else `https://host[:port][/schema]`,
    else Plain's production endpoint. Airflow finds the connection in its secrets
    backend (Vault, AWS Secrets Manager...), an `AIRFLOW_CONN_<ID>` variable or its
    database, and masks the password in task logs; it is masked here once more::

        AIRFLOW_CONN_PLAIN_DEFAULT='{"conn_type": "generic", "password": "plainApiKey_..."}'

    Call it inside a task (it needs the task's Airflow context), never at parse time.
    """
    from airflow.sdk import Connection
    from airflow.sdk.log import mask_secret

    conn = Connection.get(conn_id)
    key = (conn.password or "").strip()
    if not key:
        raise ConfigError(
            f"the Airflow connection {conn_id!r} has no password: put the Plain API key there"
        )
    mask_secret(key)
    url = api_url_of(conn.host or "", conn.port, conn.schema or "", conn.extra_dejson)
    return PlainConnection(api_key=key, api_url=url)


def api_url_of(host: str, port: int | None, schema: str, extra: Mapping[str, Any]) -> str:
    """The GraphQL endpoint a connection names (see `api_key_from_airflow`).

    >>> api_url_of("core-api.uk.plain.com", None, "graphql/v1", {})
    'https://core-api.uk.plain.com/graphql/v1'
    >>> api_url_of("", None, "", {"api_url": "http://127.0.0.1:8080/graphql/v1"})
    'http://127.0.0.1:8080/graphql/v1'
    """
    given = str(extra.get("api_url") or "").strip()
    if given:
        return given
    host = host.strip()
    if not host:
        return DEFAULT_API_URL
    if "://" in host:
        return host
    where = f"{host}:{port}" if port else host
    path = schema.strip().strip("/")
    return f"https://{where}/{path}" if path else f"https://{where}"


def validate_task(
    job: BackfillJob,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    run_id: str = "",
) -> dict[str, Any]:
    """Map the job's rows offline (no key, no ledger); write invalid.csv; return counts.

    A broken mapping or an unreadable source raises (the task fails before any shard
    starts). Only the interval's rows are checked, as the shards take them (a
    `source_sql` query gets the interval as `:since` and `:until`). Invalid rows are
    logged with examples and do not fail the task (each shard reports its own in
    failed.csv, and a later run maps them again) unless there are more than
    `job.max_invalid`: then it fails without retries (the same rows would be read again).
    """
    settings = job.settings(
        since=_bound(since), until=_bound(until), results_dir=_run_folder(job, run_id)
    )
    checked = pipeline.validate(settings)
    result: dict[str, Any] = {
        "rows_read": checked.rows_read,
        "valid": checked.valid,
        "invalid": checked.invalid,
        "duplicates": checked.duplicates,
        "by_code": dict(checked.by_code),
        "invalid_csv": checked.invalid_csv,
    }
    if checked.invalid:
        examples = [line for lines in checked.examples.values() for line in lines]
        log.warning(
            "%d of %d rows are invalid (%s), see %s; e.g.\n  %s",
            checked.invalid,
            checked.rows_read,
            ", ".join(f"{code}: {n}" for code, n in sorted(checked.by_code.items())),
            checked.invalid_csv,
            "\n  ".join(examples),
        )
    else:
        log.info("all %d rows map to valid events", checked.rows_read)
    if job.max_invalid is not None and checked.invalid > job.max_invalid:
        _fail_without_retry(
            f"{checked.invalid} rows are invalid, more than max_invalid={job.max_invalid}; "
            f"fix the source or the mapping (see {checked.invalid_csv})"
        )
    return result


def run_shard(
    job: BackfillJob,
    shard_index: int,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    run_id: str = "",
) -> dict[str, Any]:
    """Run shard `shard_index` of `job.shards` over [since, until); return its summary.

    Pass Airflow's `data_interval_start` / `data_interval_end` as `since` / `until` and
    the DAG run's `run_id` (results go to `<results_dir>/<run_id>/<run>-shard-I-of-N/`).
    The API key comes from the job's Airflow connection. Outcomes:

    - exit 0, or exit 1 with only invalid or rejected rows: the task succeeds; those
      rows are in the counts and failed.csv (a retry would change nothing for them: fix
      the data, or run `backfill run --retry-rejected`).
    - exit 1 with retryable rows (Plain kept failing for them), 2, 5, 6, 130, 143: the
      try fails with `TaskFailed`, and Airflow's retry resumes from the ledger.
    - exit 3 (`max_failures`) or 4 (the key is refused): the task fails at once,
      without retries (`AirflowFailException`).
    """
    label = job.shard_label(shard_index)
    plain = api_key_from_airflow(job.conn_id)
    settings = job.settings(
        plain=plain,
        shard=label,
        since=_bound(since),
        until=_bound(until),
        results_dir=_run_folder(job, run_id),
    )
    summary = pipeline.run(
        settings,
        progress=_ProgressLog(label),
        handle_signals=threading.current_thread() is threading.main_thread(),
    )
    result = _shard_result(label, settings, summary)
    log.info(
        "shard %s: run %s %s (exit %d): %s",
        label,
        summary.run_id,
        summary.state,
        summary.exit_code,
        _counts_text(summary.counts),
    )
    _raise_for(result)
    return result


def summarise(job: BackfillJob, results: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Merge the shards' results with what the shared ledger holds; log them as a table.

    The ledger's counts cover every run of the job so far (earlier intervals included);
    the shards' counts are this DAG run's. It runs when shards failed too (a failed
    shard has no result): the job's state is logged, then the task fails without
    retries, so the DAG run shows the failure.
    """
    done = [result for result in results if result]
    counts: Counter[str] = Counter()
    for result in done:
        counts.update(result.get("counts", {}))
    # Every row of the job as the ledger knows it: events and rows that never became one.
    ledger_only = resolve(ledger=job.ledger, trust_env=False)
    status = pipeline.status(ledger_only, rate=job.settings().rate)
    in_ledger = status.counts
    merged: dict[str, Any] = {
        "shards": len(done),
        "rows_read": sum(int(result.get("rows_read", 0)) for result in done),
        "skipped_done": sum(int(result.get("skipped_done", 0)) for result in done),
        "requests": sum(int(result.get("requests", 0)) for result in done),
        "counts": dict(sorted(counts.items())),
        "exit_codes": {str(r.get("shard")): int(r.get("exit_code", 0)) for r in done},
        "ledger": dict(sorted(in_ledger.items())),
        "left": status.left,
        "codes": [asdict(code) for code in status.codes],
        "results_dirs": [str(result.get("results_dir", "")) for result in done],
    }
    log.info("backfill summary\n%s", render_table(done, in_ledger))
    for code in status.codes:
        log.info("  %s: %d rows %s, e.g. %s", code.code, code.rows, code.status, code.sample)
    failed = job.shards - len(done)
    if failed:
        _fail_without_retry(
            f"{failed} of {job.shards} shard tasks did not finish; the ledger knows of "
            f"{status.left} rows left to send: clear the failed tasks (they resume from the "
            "ledger), and see backfill status"
        )
    return merged


def render_table(results: Sequence[Mapping[str, Any]], in_ledger: Mapping[str, int]) -> str:
    """The shards of a DAG run, one line each, and the ledger's totals.

    >>> print(render_table([{"shard": "0/2", "exit_code": 0, "rows_read": 3,
    ...                      "skipped_done": 1, "counts": {"delivered": 3}}], {"delivered": 5}))
    shard  exit  read  skipped  delivered  failed
    0/2       0     3        1          2       0
    ledger: delivered 5
    """
    lines = [f"{'shard':<5}  {'exit':>4}  {'read':>4}  {'skipped':>7}  {'delivered':>9}  failed"]
    for result in results:
        counts = result.get("counts", {})
        done = counts.get("delivered", 0) + counts.get("already_existed", 0)
        failed = sum(counts.get(status, 0) for status in ("invalid", "rejected", "retryable"))
        lines.append(
            f"{result.get('shard', '?'):<5}  {result.get('exit_code', 0):>4}  "
            f"{result.get('rows_read', 0):>4}  {result.get('skipped_done', 0):>7}  "
            f"{done - result.get('skipped_done', 0):>9}  {failed:>6}"
        )
    lines.append(f"ledger: {_counts_text(in_ledger)}")
    return "\n".join(lines)


def _shard_result(label: str, settings: Settings, summary: RunSummary) -> dict[str, Any]:
    """What a shard task hands on through XCom: counts and places, nothing secret."""
    return {
        "shard": label,
        "run_id": summary.run_id,
        "exit_code": summary.exit_code,
        "state": summary.state,
        "message": summary.message,
        "since": settings.public()["since"],
        "until": settings.public()["until"],
        "counts": dict(summary.counts),
        "rows_read": summary.rows_read,
        "skipped_done": summary.skipped_done,
        "requests": summary.requests,
        "rate_limited": summary.rate_limited,
        "elapsed_s": summary.elapsed_s,
        "api_url": mask_url(settings.api_url),
        "results_dir": summary.results_dir,
    }


def _raise_for(result: Mapping[str, Any]) -> None:
    """Fail the task when the shard's exit code says a retry must (or must not) follow."""
    code = int(result["exit_code"])
    retryable = int(result["counts"].get("retryable", 0))
    if code == ExitCode.OK or (code == ExitCode.FAILED_ROWS and not retryable):
        return
    message = (
        f"shard {result['shard']}: run {result['run_id']} {result['state']} (exit {code})"
        + (f": {result['message']}" if result["message"] else "")
        + (f"; {retryable} rows are retryable" if retryable else "")
    )
    if code in NO_RETRY_EXIT_CODES:
        _fail_without_retry(message)
    raise TaskFailed(f"{message}; a retry resumes from the ledger", exit_code=code, summary=result)


def _fail_without_retry(message: str) -> NoReturn:
    """Fail the task and skip its retries: trying again would do no better."""
    from airflow.exceptions import AirflowFailException

    raise AirflowFailException(f"{message}; not retried: fix the cause, then clear the task")


def _bound(value: datetime | str | None) -> str:
    """A `since` / `until` setting from one end of a data interval (None: open)."""
    return value.isoformat() if isinstance(value, datetime) else (value or "")


def _run_folder(job: BackfillJob, run_id: str) -> str:
    """The results folder of one DAG run: `<results_dir>/<run_id>` (made safe for a path)."""
    if not run_id:
        return job.results_dir
    return str(Path(job.results_dir) / _UNSAFE_NAME.sub("_", run_id).strip("_"))


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()) if n) or "no rows"


class _ProgressLog:
    """A progress callback that logs one line every `PROGRESS_LOG_S` seconds."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._next = time.monotonic() + PROGRESS_LOG_S

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + PROGRESS_LOG_S
        log.info(
            "shard %s: %d rows read, %d delivered, %d skipped, %d failed (%.1f events/s)",
            self._label,
            progress.rows_read,
            progress.delivered,
            progress.skipped,
            progress.failed,
            progress.events_per_s,
        )
