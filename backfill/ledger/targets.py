"""What a `--ledger` value names: a SQLite file (a path, or `sqlite:///path`) or a
PostgreSQL database. Pure, and free of psycopg (an extra), so every command may ask."""

from __future__ import annotations

import re
from typing import Final

#: A PostgreSQL URL, with or without SQLAlchemy's driver (`postgresql+psycopg://`).
POSTGRES_URL: Final = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")
#: SQLAlchemy's URL of a SQLite file: `sqlite:///relative.db`, `sqlite:////abs/path.db`.
SQLITE_URL: Final = re.compile(r"sqlite(?:\+\w+)?:///(.+)\Z")


def is_postgres_url(target: str) -> bool:
    """Whether a `--ledger` value names a PostgreSQL database rather than a file.

    >>> is_postgres_url("postgresql+psycopg://u@db/ledger"), is_postgres_url("l.sqlite")
    (True, False)
    """
    return POSTGRES_URL.match(target) is not None


def sqlite_file(target: str) -> str | None:
    """The file a `sqlite:///path` URL names, or None for anything else.

    >>> sqlite_file("sqlite:///runs/ledger.sqlite"), sqlite_file("ledger.sqlite")
    ('runs/ledger.sqlite', None)
    """
    found = SQLITE_URL.match(target)
    return found.group(1) if found is not None else None
