"""Rows of a SQL query, streamed through SQLAlchemy (the `sql` extra) with a server-side cursor.

The query is sent as written, its `:name` parameters bound by the driver (never pasted
into the text). Rows arrive a chunk at a time (`stream_results`, `yield_per`), so a
table of any size reads in bounded memory. Typed values become text by the same rules
as Parquet and JSON (`readers.values.canonical`), so a table gives the rows its CSV
export gives. A row's position is its key columns' values (`id=42`, `a=1,b=x`), or its
number (`row=7`) when the mapping's externalId is a template.

Failures (no driver, unreachable server, bad password, SQL errors) raise SourceError
naming the database as `SqlSource.shown` gives it, with the database's own short
message and never the password.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from backfill.config import SqlSource
from backfill.errors import ConfigError, SourceError
from backfill.models import SourceRow
from backfill.readers.values import canonical_column

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["load_query", "read_chunks", "read_header"]

DEFAULT_CHUNK_ROWS: Final = 1000
_INSTALL: Final = "pip install 'plain-backfill[sql]'"


def load_query(text: str) -> str:
    """The query itself: `text`, or the content of the file `@path` names.

    >>> load_query("SELECT 1")
    'SELECT 1'
    """
    if not text.startswith("@"):
        return text
    path = Path(text[1:])
    try:
        query = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"--source-sql {text}: cannot read the query file ({exc.strerror})"
        ) from None
    if not query.strip():
        raise ConfigError(f"--source-sql {text}: the query file is empty")
    return query


def read_header(source: SqlSource) -> list[str]:
    """The column names the query gives, without fetching its rows.

    `source.query` is the query itself (see `load_query` for `@file`). It is asked as
    `SELECT * FROM (query) LIMIT 0`, which the database plans but need not run; a query
    that cannot be wrapped so (not a plain SELECT) runs as it is, up to its first row.
    """
    with _connected(source) as conn, _failing_as_source(source, conn):
        from sqlalchemy import text  # _connected said how to install it if it is missing
        from sqlalchemy.exc import SQLAlchemyError

        inner = source.query.strip().rstrip(";").rstrip()
        wrapped = text(f"SELECT * FROM ({inner}\n) AS backfill_columns LIMIT 0")
        if source.params:
            wrapped = wrapped.bindparams(**dict(source.params))
        try:
            names = list(conn.execute(wrapped).keys())
        except SQLAlchemyError:
            conn.rollback()
            # A server-side cursor: a plain one would fetch every row just to name them.
            streaming = conn.execution_options(stream_results=True, yield_per=1)
            result = streaming.execute(_statement(source))
            try:
                names = list(result.keys())
            finally:
                result.close()
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SourceError(
            f"the query gives the column {twice[0]!r} twice: give each column its own name "
            "(SELECT a.id AS a_id, b.id AS b_id ...)",
            file=source.shown,
        )
    return names


def read_chunks(
    source: SqlSource,
    *,
    key_columns: Sequence[str] = (),
    limit: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[list[SourceRow]]:
    """The query's rows, `chunk_rows` at a time, at most `limit` in all.

    Each value is text by `canonical`; a row's position is `key_columns`' values.
    """
    if limit is not None and limit <= 0:
        return
    shown = source.shown
    taken = 0
    with _connected(source) as conn, _failing_as_source(source, conn):
        streaming = conn.execution_options(stream_results=True, yield_per=chunk_rows)
        result = streaming.execute(_statement(source))
        try:
            names = list(result.keys())
            keys = [names.index(column) if column in names else None for column in key_columns]
            for records in result.partitions(chunk_rows):
                if limit is not None:
                    records = records[: limit - taken]
                columns = [canonical_column(column) for column in zip(*records, strict=True)]
                keyed = [None if i is None else columns[i] for i in keys]
                positions = _positions(key_columns, keyed, taken, len(records))
                taken += len(records)
                yield [
                    SourceRow(shown, position, dict(zip(names, values, strict=True)))
                    for position, values in zip(positions, zip(*columns, strict=True), strict=True)
                ]
                if limit is not None and taken >= limit:
                    return
        finally:
            result.close()


def _positions(
    key_columns: Sequence[str], keys: list[Sequence[str] | None], before: int, count: int
) -> list[str]:
    """Each row's position: its key columns' values, or its number when there are none.

    A key column the query does not give (`keys` holds None for it) reads as empty.
    """
    if not key_columns:
        return [f"row={number}" for number in range(before + 1, before + count + 1)]
    columns = [[""] * count if values is None else values for values in keys]
    if len(columns) == 1:
        prefix = f"{key_columns[0]}="
        return [prefix + value for value in columns[0]]
    return [
        ",".join(f"{column}={value}" for column, value in zip(key_columns, row, strict=True))
        for row in zip(*columns, strict=True)
    ]


def _statement(source: SqlSource) -> Any:
    from sqlalchemy import text

    statement = text(source.query)
    return statement.bindparams(**dict(source.params)) if source.params else statement


@contextmanager
def _connected(source: SqlSource) -> Iterator[Connection]:
    """A connection to the source's database, the engine disposed of afterwards."""
    try:
        import sqlalchemy
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    except ImportError:
        raise ConfigError(
            f"--source-sql needs SQLAlchemy and a database driver: {_INSTALL}"
        ) from None
    try:
        engine = sqlalchemy.create_engine(source.url, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:
        raise ConfigError(
            f"--source-url {source.shown}: the database driver is not installed ({exc.name}): "
            f"{_INSTALL}, or the extra of your warehouse (snowflake, bigquery, redshift)"
        ) from None
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is no number
        raise ConfigError(
            f"--source-url {source.shown}: not a SQLAlchemy database URL ({_first_line(exc)}); "
            "write e.g. postgresql+psycopg://user@host:5432/db"
        ) from None
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise SourceError(
                f"cannot connect: {_scrubbed(exc, source)}", file=source.shown
            ) from None
        with conn:
            _dates_as_text_when_out_of_range(conn.connection.driver_connection)
            yield conn
    finally:
        engine.dispose()


def _dates_as_text_when_out_of_range(driver: object) -> None:
    """On psycopg 3, dates Python cannot hold arrive as the database's own text.

    PostgreSQL has `infinity` and years BC or past 9999; psycopg fails the whole fetch on
    such a value. With this, the value reaches the mapper as text (`infinity`), where a
    timestamp column makes just that row invalid, naming the column, and any other column
    keeps the text. Other drivers are left as they are.
    """
    adapters = getattr(driver, "adapters", None)
    if adapters is None or type(driver).__module__.partition(".")[0] != "psycopg":
        return
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    for name in ("date", "timestamp", "timestamptz"):
        info = adapters.types.get(name)
        if info is None:
            continue
        inner = adapters.get_loader(info.oid, Format.TEXT)
        if inner is None:
            continue

        class _TextWhenOutOfRange(Loader):
            _inner = inner

            def __init__(self, oid: int, context: Any = None) -> None:
                super().__init__(oid, context)
                self._load = self._inner(oid, context).load

            def load(self, data: Any) -> Any:
                try:
                    return self._load(data)
                except psycopg.DataError:
                    return bytes(data).decode("utf-8", "replace")

        adapters.register_loader(info.oid, _TextWhenOutOfRange)


@contextmanager
def _failing_as_source(source: SqlSource, conn: Connection) -> Iterator[None]:
    """SQL errors (syntax, unknown table, a lost connection) as SourceError."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        raise SourceError(
            f"the query failed: {_scrubbed(exc, source)}", file=source.shown
        ) from None


def _scrubbed(exc: Exception, source: SqlSource) -> str:
    """The database's own short message, without the password in any case."""
    orig = getattr(exc, "orig", None)
    message = _first_line(orig if orig is not None else exc)
    from sqlalchemy.engine import make_url

    try:
        password = make_url(source.url).password
    except Exception:  # an unparsable URL fails earlier; nothing to hide then
        password = None
    if password:
        message = message.replace(str(password), "***")
    return message


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
