"""Backfill activity into Plain from Airflow 3: validate, N shard tasks, a summary.

Each DAG run takes the rows of its data interval (`since` / `until` on the mapping's
timestamp column): with `catchup`, one run per interval from the start date walks the
history, and later runs keep feeding new activity. The shards of a run are mapped tasks
(`map_index` = shard index) sharing the workspace's rate budget and one PostgreSQL
ledger, so a retried shard resumes on any worker without sending a row twice.

Configure it with environment variables on the scheduler and workers (or edit
`job_from_env` and the call at the bottom):

    BACKFILL_SOURCES      source files or URLs, separated by spaces
    BACKFILL_SOURCE_SQL   or a query (`@file.sql` reads it from a file; may use :since
                          and :until) with BACKFILL_SOURCE_URL, its database URL
    BACKFILL_MAPPING      the mapping file
    BACKFILL_LEDGER       the shared ledger: postgresql+psycopg://user@host:5432/db
    BACKFILL_RESULTS_DIR  where result folders go (a disk every worker shares)
    BACKFILL_SHARDS       shard tasks per run [4]
    BACKFILL_RATE         the workspace's whole request budget [450/min]
    BACKFILL_SCHEDULE     a cron expression or preset; one interval per run [@daily]
    BACKFILL_START_DATE   where the history starts, ISO 8601 [2023-01-01]

and the API key in the Airflow connection `plain_default` (its password), e.g.
AIRFLOW_CONN_PLAIN_DEFAULT='{"conn_type": "generic", "password": "..."}'.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from backfill.airflow import BackfillJob, run_shard, summarise, validate_task

#: A try that died without a word (a lost worker) holds its rows until the ledger takes
#: its run for dead, a minute after its last heartbeat: the retry comes after that.
RETRY_DELAY = timedelta(minutes=2)


def job_from_env(env: Mapping[str, str]) -> BackfillJob:
    """The job the `BACKFILL_*` variables describe (see the module's docstring)."""
    options: dict[str, Any] = {}
    if env.get("BACKFILL_SOURCE_SQL"):
        options = {
            "source_sql": env["BACKFILL_SOURCE_SQL"],
            "source_url": env.get("BACKFILL_SOURCE_URL", ""),
        }
    return BackfillJob(
        sources=tuple(env.get("BACKFILL_SOURCES", "").split()),
        mapping=env.get("BACKFILL_MAPPING", ""),
        ledger=env.get("BACKFILL_LEDGER", ""),
        shards=int(env.get("BACKFILL_SHARDS", "4")),
        rate=env.get("BACKFILL_RATE", "450/min"),
        results_dir=env.get("BACKFILL_RESULTS_DIR", "results"),
        options=options,
    )


def build_dag(
    job: BackfillJob,
    *,
    dag_id: str = "plain_backfill",
    schedule: str = "@daily",
    start_date: datetime = datetime(2023, 1, 1, tzinfo=UTC),
    retries: int = 3,
    retry_delay: timedelta = RETRY_DELAY,
) -> DAG:
    """The DAG of `job`: validate >> backfill_shard x job.shards >> summary."""

    @dag(
        dag_id=dag_id,
        # A data interval per run (Airflow 3's plain cron schedule has none).
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC"),
        start_date=start_date,
        catchup=True,
        # Runs in parallel would each spend the whole rate budget.
        max_active_runs=1,
        default_args={"retries": retries, "retry_delay": retry_delay},
        tags=["plain", "backfill"],
    )
    def plain_backfill() -> None:
        @task
        def validate(
            run_id: str | None = None,
            data_interval_start: datetime | None = None,
            data_interval_end: datetime | None = None,
        ) -> dict[str, Any]:
            return validate_task(
                job, since=data_interval_start, until=data_interval_end, run_id=run_id or ""
            )

        @task
        def backfill_shard(
            shard_index: int,
            run_id: str | None = None,
            data_interval_start: datetime | None = None,
            data_interval_end: datetime | None = None,
        ) -> dict[str, Any]:
            return run_shard(
                job,
                shard_index,
                since=data_interval_start,
                until=data_interval_end,
                run_id=run_id or "",
            )

        # It runs when shards failed too, so the job's state is always reported; it then
        # fails itself, so the DAG run shows the failure.
        @task(trigger_rule="all_done")
        def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
            return summarise(job, list(results))

        shards = backfill_shard.expand(shard_index=list(range(job.shards)))
        validate() >> shards
        summary(shards)

    return plain_backfill()


def start_date_from_env(env: Mapping[str, str]) -> datetime:
    """`BACKFILL_START_DATE` (ISO 8601, UTC unless it gives an offset)."""
    start = datetime.fromisoformat(env.get("BACKFILL_START_DATE", "2023-01-01"))
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


backfill_dag = build_dag(
    job_from_env(os.environ),
    schedule=os.environ.get("BACKFILL_SCHEDULE", "@daily"),
    start_date=start_date_from_env(os.environ),
)
