"""plain-backfill: backfill historical activity into Plain as customer events.

The library API is what the CLI, Airflow and notebooks call::

    from backfill import resolve, run
    summary = run(resolve(sources=("activity.csv",), mapping="mapping.toml"))
"""

from backfill.config import UNSET, Settings, resolve
from backfill.errors import (
    AuthError,
    BackfillError,
    ConfigError,
    LedgerBusy,
    LedgerError,
    MappingError,
    PlainError,
    RateLimited,
    Rejected,
    SourceError,
    Transient,
)
from backfill.mapping import MappingSpec, load_mapping
from backfill.models import RESULT_COLUMNS, Progress, Status
from backfill.pipeline import arun, run
from backfill.reports import RunSummary

__all__ = [
    "RESULT_COLUMNS",
    "UNSET",
    "AuthError",
    "BackfillError",
    "ConfigError",
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
    "arun",
    "load_mapping",
    "resolve",
    "run",
]
