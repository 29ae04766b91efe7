"""The ledger: one row per event, per row issue, per attempt and per run.

It is what makes a run resumable without duplicates. Two kinds answer the same calls
(`backfill.models.Ledger`): a SQLite file (`SqliteLedger`, the default) and a
PostgreSQL database (`backfill.ledger.postgres.PostgresLedger`, for runs that share a
ledger; it needs psycopg, an extra). Inside:

- `schema`: the schema version and its forward migrations;
- `statements`: every statement, written once, and the two dialects that say them;
- `base`: what both kinds do, over a few primitives of each;
- `sqlite`, `postgres`: the kinds (connections, locks, transactions);
- `queries`: the reads `backfill status` and `backfill export` make;
- `targets`: what a `--ledger` value names.
"""

from __future__ import annotations

from pathlib import Path

from backfill.errors import LedgerError
from backfill.ledger.schema import MIGRATIONS, SCHEMA_VERSION
from backfill.ledger.sqlite import SqliteLedger
from backfill.ledger.targets import is_postgres_url, sqlite_file
from backfill.models import CustomerRecord, Ledger, RunRecord

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CustomerRecord",
    "Ledger",
    "RunRecord",
    "SqliteLedger",
    "is_postgres_url",
    "open_ledger",
]


def open_ledger(target: str, *, readonly: bool = False, must_exist: bool = False) -> Ledger:
    """The ledger a `--ledger` value names: a SQLite file, or a PostgreSQL database URL.

    A SQLite file may be given as a path or as SQLAlchemy's `sqlite:///path`; a URL of any
    other database is refused. `readonly` (dry runs, validate, status) reads the ledger as
    it is and creates nothing; a missing one reads as empty, unless `must_exist` (status,
    export), which makes it an error.

    >>> with open_ledger("runs/ledger.sqlite", readonly=True) as ledger:  # doctest: +SKIP
    ...     ledger.status_counts()
    {'delivered': 2400}
    """
    from backfill.config import is_url, mask_url

    if not is_postgres_url(target):
        file = sqlite_file(target)
        path = target if file is None else file
        if must_exist and not is_url(path) and not Path(path).is_file():
            raise LedgerError(f"no ledger at {path}: give --ledger (a run's ledger)")
        if file is None and is_url(target):
            raise LedgerError(
                f"--ledger {mask_url(target)}: a ledger is a SQLite file (a path, or "
                "sqlite:///path) or a PostgreSQL database (postgresql+psycopg://...)"
            )
        return SqliteLedger.open_readonly(path) if readonly else SqliteLedger.open(path)
    try:
        from backfill.ledger.postgres import PostgresLedger
    except ImportError as exc:
        raise LedgerError(
            f"a PostgreSQL ledger needs {exc.name}: pip install 'plain-backfill[sql]'"
        ) from None
    if readonly:
        ledger = PostgresLedger.open(target, migrate=False)
        if ledger.schema_version == 0:  # nothing recorded yet: it reads as empty
            ledger.close()
            return SqliteLedger.scratch(label=ledger.path)
        return ledger
    return PostgresLedger.open(target)
