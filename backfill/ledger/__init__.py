"""The ledger: one row per event, per row issue, per attempt and per run.

It is what makes a run resumable without duplicates. Two kinds answer the same calls
(`backfill.models.Ledger`): a SQLite file (`SqliteLedger`, the default) and a
PostgreSQL database (`backfill.ledger.postgres.PostgresLedger`, for runs that share a
ledger; it needs psycopg, an extra). Inside:

- `schema`: the schema version and its forward migrations;
- `statements`: every statement, written once, and the two dialects that say them;
- `base`: what both kinds do, over a few primitives of each;
- `sqlite`, `postgres`: the kinds (connections, locks, transactions);
- `queries`: the reads `backfill status` and `backfill export` make.

What a `--ledger` value names is `backfill.config.LedgerTarget`'s to say.
"""

from __future__ import annotations

from pathlib import Path

from backfill.config import LedgerTarget
from backfill.errors import LedgerError
from backfill.ledger.schema import MIGRATIONS, SCHEMA_VERSION
from backfill.ledger.sqlite import SqliteLedger
from backfill.models import CustomerRecord, Ledger, RunRecord

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CustomerRecord",
    "Ledger",
    "RunRecord",
    "SqliteLedger",
    "open_ledger",
]


def open_ledger(
    target: LedgerTarget | str, *, readonly: bool = False, must_exist: bool = False
) -> Ledger:
    """The ledger `target` names: a SQLite file, or a PostgreSQL database.

    Text is read as `--ledger` takes it (`LedgerTarget.parse`). `readonly` (dry runs,
    validate, status) reads the ledger as it is and creates nothing; a missing one reads
    as empty, unless `must_exist` (status, export), which makes it an error.

    >>> with open_ledger("runs/ledger.sqlite", readonly=True) as ledger:  # doctest: +SKIP
    ...     ledger.status_counts()
    {'delivered': 2400}
    """
    if isinstance(target, str):
        try:
            target = LedgerTarget.parse(target)
        except ValueError as exc:
            raise LedgerError(f"--ledger {exc}") from None
    if target.kind == "sqlite":
        path = target.location
        if must_exist and not Path(path).is_file():
            raise LedgerError(f"no ledger at {path}: give --ledger (a run's ledger)")
        return SqliteLedger.open_readonly(path) if readonly else SqliteLedger.open(path)
    url = target.location
    try:
        from backfill.ledger.postgres import PostgresLedger
    except ImportError as exc:
        raise LedgerError(
            f"a PostgreSQL ledger needs {exc.name}: pip install 'plain-backfill[sql]'"
        ) from None
    if readonly:
        ledger = PostgresLedger.open(url, migrate=False)
        if ledger.schema_version == 0:  # nothing recorded yet: it reads as empty
            ledger.close()
            return SqliteLedger.scratch(label=ledger.path)
        return ledger
    return PostgresLedger.open(url)
