"""The ledger in PostgreSQL: what SQLite's ledger keeps, where every worker reaches it.

The same tables, statuses, migrations and statements as SQLite's ledger, for runs whose
disk does not outlive them (Airflow workers). Several processes may use one ledger at
once, so a row is claimed before it is sent (see `Dialect.concurrent`). The only module
that imports psycopg, an extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Final

import psycopg

from backfill.errors import LedgerError
from backfill.ledger.base import LedgerBase, Transaction
from backfill.ledger.schema import SCHEMA_VERSION
from backfill.ledger.statements import POSTGRES, Statements
from backfill.urls import mask_url

#: Tries of a claim that lost a deadlock with another run's (PostgreSQL cancels one).
_CLAIM_TRIES: Final = 3
#: Migrations of concurrent runs wait for each other on this advisory lock.
_MIGRATION_LOCK: Final = 0x706C61696E  # "plain"
_LOCK_MIGRATIONS: Final = POSTGRES.statement("SELECT pg_advisory_xact_lock(:key)")


def conninfo(url: str) -> str:
    """libpq's form of a SQLAlchemy-style URL (`postgresql+psycopg://` becomes `postgresql://`).

    >>> conninfo("postgresql+psycopg://u:p@127.0.0.1:5432/db")
    'postgresql://u:p@127.0.0.1:5432/db'
    """
    return "postgresql://" + url.split("://", 1)[1]


class PostgresLedger(LedgerBase):
    """A ledger in a PostgreSQL database. Open it with `PostgresLedger.open(url)`."""

    sql: ClassVar[Statements] = Statements(POSTGRES)

    def __init__(self, url: str, conn: psycopg.Connection[Any]) -> None:
        super().__init__()
        self.path = mask_url(url)
        self._url = url
        self._conn = conn

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> PostgresLedger:
        """Connect, creating and migrating the tables as needed (unless `migrate` is off)."""
        shown = mask_url(url)
        try:
            conn = psycopg.connect(conninfo(url), autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot reach the ledger {shown}: {_reason(exc, url)}") from None
        ledger = cls(url, conn)
        try:
            ledger._setup(migrate=migrate)
        except BaseException:
            conn.close()
            raise
        return ledger

    def _setup(self, *, migrate: bool) -> None:
        with self._transaction() as tx:
            if migrate:
                tx.execute(_LOCK_MIGRATIONS, {"key": _MIGRATION_LOCK})
            version = self._version(tx)
            self._refuse_newer(version)
            for step in range(version, SCHEMA_VERSION if migrate else version):
                self._upgrade(tx, step)
        with self._transaction() as tx:
            self._create_seen(tx)

    def close(self) -> None:
        self._conn.close()

    # --- primitives --------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, reraise: bool = False) -> Iterator[Transaction]:
        """One atomic unit; a database failure becomes a LedgerError naming the ledger
        (a deadlock is raised as it is with `reraise`, for the caller to try again)."""
        with self._mutex:
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield Transaction(cur)
            except psycopg.Error as exc:
                if reraise and isinstance(exc, psycopg.errors.DeadlockDetected):
                    raise
                raise self._failed(exc) from None

    def _failed(self, exc: psycopg.Error) -> LedgerError:
        return LedgerError(
            f"the ledger {self.path} failed: {_reason(exc, self._url)}; nothing more is sent"
        )

    def _announce(self, run_id: str) -> None:
        """Nothing to do: the runs table says which runs are alive (their heartbeats)."""

    def _before_end(self) -> None:
        """When the connection was lost (the likely reason a run ends early) make a new one
        to record the end, so the run is not left looking alive."""
        if self._conn.broken or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    conninfo(self._url), autocommit=True, connect_timeout=10
                )
            except psycopg.Error as exc:
                raise self._failed(exc) from None

    def _claim(self, run_id: str, batch: Sequence[Mapping[str, Any]]) -> set[str]:
        for tries_left in range(_CLAIM_TRIES - 1, -1, -1):
            try:
                with self._transaction(reraise=True) as tx:
                    return self._claim_in(tx, run_id, batch)
            except psycopg.errors.DeadlockDetected as exc:
                if not tries_left:
                    raise self._failed(exc) from None
        raise AssertionError("unreachable")


def _reason(exc: psycopg.Error, url: str) -> str:
    """The first line of the driver's message, with the URL's password masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        password = psycopg.conninfo.conninfo_to_dict(conninfo(url)).get("password")
    except psycopg.Error:  # a URL libpq cannot read: its message names no password
        return text
    return text.replace(str(password), "***") if password else text
