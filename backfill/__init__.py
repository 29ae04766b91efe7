"""plain-backfill: backfill historical activity into Plain as customer events.

The library API is what the CLI, Airflow and notebooks call::

    from backfill import resolve, run, status
    settings = resolve(sources=("activity.csv",), mapping="mapping.toml")
    summary = run(settings)
    print(status(settings).counts)

`validate`, `preview`, `status` and `export` take the same `Settings`.
"""

from backfill.config import UNSET, Settings, resolve
from backfill.errors import (
    AuthError,
    BackfillError,
    ConfigError,
    ExitCode,
    LedgerBusy,
    LedgerError,
    MappingError,
    PlainError,
    RateLimited,
    Rejected,
    SourceError,
    Transient,
)
from backfill.job_export import ExportSummary
from backfill.mapping import MappingSpec, load_mapping
from backfill.models import RESULT_COLUMNS, JobStatus, Progress, Status
from backfill.pipeline import arun, export, preview, run, status, validate
from backfill.reports import RunSummary, ValidateSummary

__all__ = [
    "RESULT_COLUMNS",
    "UNSET",
    "AuthError",
    "BackfillError",
    "ConfigError",
    "ExitCode",
    "ExportSummary",
    "JobStatus",
    "LedgerBusy",
    "LedgerError",
    "MappingError",
    "MappingSpec",
    "PlainError",
    "Progress",
    "RateLimited",
    "Rejected",
    "RunSummary",
    "Settings",
    "SourceError",
    "Status",
    "Transient",
    "ValidateSummary",
    "arun",
    "export",
    "load_mapping",
    "resolve",
    "preview",
    "run",
    "status",
    "validate",
]
