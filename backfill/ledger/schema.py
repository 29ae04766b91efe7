"""The ledger's tables: the schema version, its forward migrations, and PostgreSQL's words.

One schema, written in SQLite's words; `postgres_ddl` says it in PostgreSQL's. A user
resumes a half-done ledger with a newer version: its migrations run forward from the
version the ledger records.
"""

from __future__ import annotations

import re
from typing import Final

SCHEMA_VERSION: Final = 4

#: Forward migrations: index i upgrades a ledger from version i to i + 1.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        heartbeat_at REAL,
        state TEXT NOT NULL,
        exit_code INTEGER,
        options TEXT NOT NULL,
        mapping_hash TEXT NOT NULL,
        id_rule TEXT NOT NULL,
        id_format_version INTEGER NOT NULL,
        workspace_id TEXT,
        counts TEXT
    );
    CREATE TABLE events (
        external_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        kind TEXT NOT NULL,
        plain_event_id TEXT,
        plain_customer_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        code TEXT,
        message TEXT,
        source TEXT NOT NULL,
        position TEXT NOT NULL,
        event_timestamp TEXT,
        payload_hash TEXT NOT NULL,
        mapping_hash TEXT NOT NULL,
        run_id TEXT NOT NULL,
        delivered_by TEXT,
        claimed_by TEXT,
        claimed_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        sent_at REAL,
        answered_at REAL,
        latency_ms REAL
    );
    CREATE INDEX events_status ON events (status);
    CREATE TABLE row_issues (
        run_id TEXT NOT NULL,
        source TEXT NOT NULL,
        position TEXT NOT NULL,
        status TEXT NOT NULL,
        external_id TEXT,
        column_name TEXT,
        code TEXT,
        message TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, source, position)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        external_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        http_status INTEGER,
        code TEXT,
        message TEXT,
        sent_at REAL NOT NULL,
        answered_at REAL NOT NULL,
        latency_ms REAL NOT NULL
    );
    CREATE INDEX attempts_event ON attempts (external_id);
    """,
    """
    CREATE TABLE customers (
        identifier TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        plain_customer_id TEXT,
        result TEXT,
        code TEXT,
        message TEXT,
        run_id TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    """
    CREATE INDEX events_claimed ON events (claimed_by) WHERE claimed_by IS NOT NULL;
    """,
    # `status` and `export`: a source row's latest issue, and whether it became an event.
    """
    CREATE INDEX events_place ON events (source, position);
    CREATE INDEX row_issues_place ON row_issues (source, position, created_at);
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

#: SQLite's migrations in PostgreSQL's words: one schema, two dialects.
_POSTGRES_TYPES: Final = (
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (
        re.compile(r"\bid INTEGER PRIMARY KEY\b"),
        "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    ),
)


def postgres_ddl(sqlite_ddl: str) -> str:
    """A migration of SQLite's ledger as PostgreSQL runs it.

    >>> postgres_ddl("CREATE TABLE t (at REAL NOT NULL)")
    'CREATE TABLE t (at DOUBLE PRECISION NOT NULL)'
    """
    for pattern, replacement in _POSTGRES_TYPES:
        sqlite_ddl = pattern.sub(replacement, sqlite_ddl)
    return sqlite_ddl


def split_statements(script: str) -> list[str]:
    """The statements of a migration, one by one (drivers run one at a time).

    >>> split_statements("CREATE TABLE a (x TEXT); CREATE INDEX a_x ON a (x);")
    ['CREATE TABLE a (x TEXT)', 'CREATE INDEX a_x ON a (x)']
    """
    return [s.strip() for s in script.split(";") if s.strip()]
