"""Rows of a SQL query, streamed through SQLAlchemy (the `sql` extra) with a server-side cursor.

The query is sent as written, its `:name` parameters bound by the driver (never pasted
into the text). Rows arrive a chunk at a time from a server-side cursor (psycopg's own
on PostgreSQL, SQLAlchemy's `stream_results` elsewhere), so a table of any size reads in
bounded memory. Typed values become text by the same rules
as Parquet and JSON (`readers.values.canonical`), so a table gives the rows its CSV
export gives. A row's position is its key columns' values (`id=42`, `a=1,b=x`), or its
number (`row=7`) when the mapping's externalId is a template.

Failures (no driver, unreachable server, bad password, SQL errors) raise SourceError
naming the database as `SqlSource.shown` gives it, with the database's own short
message and never the password.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from backfill.config import SqlSource
from backfill.errors import ConfigError, SourceError
from backfill.models import SourceRow
from backfill.readers.values import canonical, canonical_column

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
    with _connected(source) as conn, _failing_as_source(source, conn):
        driver = conn.connection.driver_connection
        if _is_psycopg(driver):
            records = _psycopg_records(source, conn, driver, chunk_rows)
        else:
            records = _sqlalchemy_records(source, conn, chunk_rows)
        with closing(records):
            yield from _chunks(records, source.shown, key_columns, limit)


def _chunks(
    records: Iterator[Any], shown: str, key_columns: Sequence[str], limit: int | None
) -> Iterator[list[SourceRow]]:
    """SourceRows from `records`: names and converters first, then chunks of tuples."""
    names, texts = next(records)
    keys = [names.index(column) if column in names else None for column in key_columns]
    taken = 0
    for chunk in records:
        if limit is not None:
            chunk = chunk[: limit - taken]
        columns = [
            convert(column) for convert, column in zip(texts, zip(*chunk, strict=True), strict=True)
        ]
        keyed = [None if i is None else columns[i] for i in keys]
        positions = _positions(key_columns, keyed, taken, len(chunk))
        taken += len(chunk)
        yield [
            SourceRow(shown, position, dict(zip(names, values, strict=True)))
            for position, values in zip(positions, zip(*columns, strict=True), strict=True)
        ]
        if limit is not None and taken >= limit:
            return


#: Makes one column's values text (see `canonical_column`).
_Texts = Callable[[Sequence[Any]], Sequence[str]]


def _sqlalchemy_records(
    source: SqlSource, conn: Connection, chunk_rows: int
) -> Generator[Any, None, None]:
    """Any dialect: the column names and their converters, then the rows a chunk at a time."""
    streaming = conn.execution_options(stream_results=True, yield_per=chunk_rows)
    result = streaming.execute(_statement(source))
    try:
        names = list(result.keys())
        yield names, [canonical_column] * len(names)
        yield from result.partitions(chunk_rows)
    finally:
        result.close()


def _psycopg_records(
    source: SqlSource, conn: Connection, driver: Any, chunk_rows: int
) -> Generator[Any, None, None]:
    """PostgreSQL through psycopg 3: the same, from the driver's own server-side cursor.

    Plain tuples cost a third of SQLAlchemy's rows, and dates, times and numerics arrive
    as PostgreSQL's text (see `_text_loaders`), made canonical a column at a time.
    """
    import psycopg

    compiled = _statement(source).compile(dialect=conn.dialect)
    try:
        with driver.cursor(name="backfill_source") as cur:
            # The compiled text escapes % as %%: its parameters always go with it.
            cur.execute(str(compiled), dict(compiled.params))
            description = cur.description or []
            yield (
                [d.name for d in description],
                [_PG_TEXTS.get(d.type_code, canonical_column) for d in description],
            )
            while chunk := cur.fetchmany(chunk_rows):
                yield chunk
    except psycopg.Error as exc:
        # SQLAlchemy did not see the error: the connection is dropped, never reset (a lost
        # one cannot roll back).
        conn.invalidate()
        raise SourceError(
            f"the query failed: {_scrubbed(exc, source)}", file=source.shown
        ) from None


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
            _text_loaders(conn.connection.driver_connection)
            yield conn
    finally:
        engine.dispose()


def _is_psycopg(driver: object) -> bool:
    return type(driver).__module__.partition(".")[0] == "psycopg"


def _text_loaders(driver: object) -> None:
    """On psycopg 3, dates, timestamps, times and numerics arrive as PostgreSQL's text.

    Their text in the ISO DateStyle (set here; it changes how values are written, not
    how the query reads dates) is turned into `canonical`'s by the converters below,
    faster than through Python objects. And values Python cannot hold (`infinity`,
    years BC or past 9999, `24:00:00`), on which psycopg would fail the whole fetch,
    keep that text: in a timestamp column it makes just its row invalid. Other drivers
    are left as they are.
    """
    if not _is_psycopg(driver):
        return
    from psycopg.pq import Format

    adapters: Any = driver.adapters  # type: ignore[attr-defined]
    text_loader = adapters.get_loader(adapters.types["text"].oid, Format.TEXT)
    for name in _PG_TEXT_TYPES:
        adapters.register_loader(name, text_loader)
    driver.execute("SET DateStyle TO ISO")  # type: ignore[attr-defined]


def _timestamptz_texts(column: Sequence[str | None]) -> list[str]:
    """`2023-04-08 20:09:17.005+00` as `2023-04-08T20:09:17.005000Z`; other offsets via
    a datetime; text Python cannot read (`infinity`, BC) as it is."""
    return [
        ""
        if text is None
        else f"{text[:10]}T{text[11:19]}{text[19:-3].ljust(7, '0') if len(text) > 22 else ''}Z"
        if text.endswith("+00") and len(text) >= 22 and text[10] == " " and text[4] == "-"
        else _via_datetime(text)
        for text in column
    ]


def _timestamp_texts(column: Sequence[str | None]) -> list[str]:
    """`2023-04-08 20:09:17.005` as `2023-04-08T20:09:17.005000` (naive, no zone)."""
    return [
        ""
        if text is None
        else f"{text[:10]}T{text[11:19]}{text[19:].ljust(7, '0') if len(text) > 19 else ''}"
        if len(text) >= 19 and text[10] == " " and text[4] == "-" and text[-1].isdigit()
        else _via_datetime(text)
        for text in column
    ]


def _time_texts(column: Sequence[str | None]) -> list[str]:
    return [_via(dt.time.fromisoformat, text) for text in column]


def _via_datetime(text: str) -> str:
    return _via(dt.datetime.fromisoformat, text)


def _via(parse: Callable[[str], object], text: str | None) -> str:
    if text is None:
        return ""
    try:
        return canonical(parse(text))
    except ValueError:  # infinity, BC, past 9999, 24:00:00: the database's text
        return text


_PG_TEXT_TYPES: Final = ("date", "timestamp", "timestamptz", "time", "numeric")
#: Converters by type OID (PostgreSQL's, fixed); date and numeric text is canonical as is.
_PG_TEXTS: Final[dict[int, _Texts]] = {
    1184: _timestamptz_texts,
    1114: _timestamp_texts,
    1083: _time_texts,
}


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
