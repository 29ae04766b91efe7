"""The SQLite ledger: one file, held by one process at a time.

WAL mode, so that an event committed `in_flight` is on disk before its request goes
out. A lock file beside the ledger lets one process in, so a resume after a crash
takes over the dead run's claims at once. Also: scratch ledgers (a private temporary
file, for dry runs and validate) and read-only opening that changes nothing.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, ClassVar

from backfill.errors import LedgerBusy, LedgerError
from backfill.ledger.base import LedgerBase, Transaction
from backfill.ledger.schema import SCHEMA_VERSION
from backfill.ledger.statements import SQLITE, Statements


class SqliteLedger(LedgerBase):
    """A ledger in one SQLite file. Open it with `SqliteLedger.open(path)`."""

    sql: ClassVar[Statements] = Statements(SQLITE)

    def __init__(self, path: str, conn: sqlite3.Connection, lock: IO[str] | None) -> None:
        super().__init__()
        self.path = path
        self._conn = conn
        self._lock = lock

    @classmethod
    def open(cls, path: str) -> SqliteLedger:
        """Open (creating and migrating as needed) and lock the ledger at `path`."""
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{path}.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger at {path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise LedgerBusy(
                f"the ledger {path} is in use by {holder}; wait for it to finish, or stop it"
            ) from None
        return cls._connect(path, path, lock, writable=True)

    @classmethod
    def open_readonly(cls, path: str) -> SqliteLedger:
        """Read a ledger without changing it (dry runs, validate).

        A missing ledger reads as empty and is not created. While no run holds the
        ledger (and no crash left a -wal file) it is opened immutable, so not even
        SQLite's shared-memory files appear beside it.
        """
        if not Path(path).exists():
            return cls.scratch(label=path)
        # immutable skips SQLite's locking and its -wal file: only safe when no run holds
        # the ledger and no crash left committed pages in a -wal file.
        quiet = not _held(path) and not Path(f"{path}-wal").exists()
        mode = "immutable=1" if quiet else "mode=ro"
        target = f"{Path(path).resolve().as_uri()}?{mode}"
        return cls._connect(path, target, None, writable=False)

    @classmethod
    def scratch(cls, *, label: str = "scratch") -> SqliteLedger:
        """An empty ledger in a private temporary file SQLite deletes on close.

        On disk, not in memory, so the ids seen in a big source do not fill the RAM.
        """
        return cls._connect(label, "", None, writable=True)

    @classmethod
    def _connect(
        cls, path: str, target: str, lock: IO[str] | None, *, writable: bool
    ) -> SqliteLedger:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                target,
                isolation_level=None,
                check_same_thread=False,
                uri=target.startswith("file:"),
            )
            if writable:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            # The temporary tables' rollback journal is off (it tripled the cost of an
            # insert): they live only as long as the run, and a failed write stops it anyway.
            conn.execute("PRAGMA temp.cache_size = -32768")
            conn.execute("PRAGMA temp.journal_mode = OFF")
            ledger = cls(path, conn, lock)
            ledger._create_seen(Transaction(conn.cursor()))
            if writable:
                ledger._migrate()
            elif ledger.schema_version > SCHEMA_VERSION:
                raise LedgerError(f"{path} was written by a newer plain-backfill; upgrade it")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if lock is not None:
                lock.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise LedgerError(f"{path} is not a usable ledger: {exc}") from None
            raise
        return ledger

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.close()

    # --- schema ------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        # The driver's own errors: opening tells a file that is no ledger by them.
        with self._mutex:
            return self._version(Transaction(self._conn.cursor()))

    def _migrate(self) -> None:
        version = self.schema_version
        self._refuse_newer(version)
        for step in range(version, SCHEMA_VERSION):
            with self._transaction() as tx:
                self._upgrade(tx, step)

    # --- primitives --------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        """One atomic write; a database failure becomes a LedgerError naming the file."""
        with self._mutex:
            try:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failed(exc) from None
            try:
                yield Transaction(cur)
            except BaseException as exc:
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._failed(exc) from None
                raise
            else:
                try:
                    cur.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise self._failed(exc) from None

    @contextmanager
    def _statement(self) -> Iterator[Transaction]:
        """One statement, atomic on its own: no transaction to begin, so one on the
        temporary tables runs on a read-only ledger too."""
        with self._mutex:
            try:
                yield Transaction(self._conn.cursor())
            except sqlite3.Error as exc:
                raise self._failed(exc) from None

    def _failed(self, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(f"the ledger {self.path} failed: {exc}; nothing more is sent")

    def _announce(self, run_id: str) -> None:
        """Name the run in the lock file, for a second process to say who holds it."""
        if self._lock is not None:
            self._lock.seek(0)
            self._lock.truncate()
            self._lock.write(f"run {run_id} (pid {os.getpid()})")
            self._lock.flush()

    def _before_end(self) -> None:
        """Nothing to do: the file stays open until the ledger is closed."""


def _held(path: str) -> bool:
    """Whether a live run holds the ledger at `path` (its lock file is locked)."""
    try:
        with open(f"{path}.lock", encoding="utf-8") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False
