"""Intake: a command's mapping and sources, checked before any row is read, and their rows
in chunks (files in order, or a query's rows)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from backfill.config import DEFAULT_CHUNK_ROWS, Settings, SqlSource
from backfill.errors import ConfigError, MappingError
from backfill.mapper import Mapper, compile_mapper
from backfill.mapping import MappingSpec, check_columns, load_mapping
from backfill.models import SourceRow
from backfill.readers import (
    FORMATS,
    CsvOptions,
    Format,
    ReadProgress,
    expand,
    read_chunks,
    read_header,
)
from backfill.readers.files import kind_of
from backfill.selection import Selection, query_bounds


@dataclass(frozen=True, slots=True)
class Prepared:
    """A command's mapping and sources, checked, and the rows it takes of them."""

    spec: MappingSpec
    mapper: Mapper
    selection: Selection
    #: Every file the sources name (directories and globs expanded, sorted).
    files: list[str]
    fmt: Format | None
    csv: CsvOptions
    #: The query the rows come from instead of files (its `@file` already read).
    sql: SqlSource | None = None

    def chunks(
        self,
        *,
        limit: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        progress: ReadProgress | None = None,
    ) -> Iterator[list[SourceRow]]:
        """The source's rows in chunks: the files in order, or the query's rows."""
        if self.sql is not None:
            from backfill.readers import sql

            keys = [key.column for key in self.spec.keys]
            return sql.read_chunks(self.sql, key_columns=keys, limit=limit, chunk_rows=chunk_rows)
        return read_chunks(
            self.files,
            fmt=self.fmt,
            options=self.csv,
            limit=limit,
            chunk_rows=chunk_rows,
            progress=progress,
        )


def prepare(settings: Settings) -> Prepared:
    """Load the mapping, find the files (or the query), check the columns before any row.

    The window (`--since`, `--until`) is bound to a query's `:since` / `:until`, widened
    to whole days (see `selection.query_bounds`): the run keeps the window's rows exactly.
    """
    spec = load_mapping(settings.mapping)
    mapper = compile_mapper(spec)
    taken = Selection.of(settings, spec)
    sql, sources, fmt = settings.sql, settings.sources, settings.format
    if sql is not None:
        if sources:
            raise ConfigError("give either source files or --source-sql, not both")
        from backfill.readers import sql as sql_reader

        sql = replace(sql, query=sql_reader.load_query(sql.query))
        sql = bind_window(sql, query_bounds(taken))
        check_columns(spec, sql_reader.read_header(sql), source=sql.shown)
        return Prepared(spec, mapper, taken, [], None, CsvOptions(), sql)
    if not sources:
        raise ConfigError("give at least one source file, or --source-sql")
    given: Format | None = fmt if fmt in FORMATS else None
    files = expand(sources)
    source = spec.source
    options = CsvOptions(
        delimiter=source.delimiter,
        quotechar=source.quote,
        columns=source.columns,
        null=frozenset(source.null),
    )
    for path in files:
        check_columns(spec, read_header(path, given, options), source=path)
    parquet = [path for path in files if kind_of(path, given).format == "parquet"]
    if len(parquet) > 1:
        from backfill.readers.parquet import schema_problem

        problem = schema_problem(parquet)
        if problem is not None:
            raise ConfigError(f"{problem}; nothing was sent")
    return Prepared(spec, mapper, taken, files, given, options)


def bind_window(sql: SqlSource, bounds: Mapping[str, str]) -> SqlSource:
    """Bind `since` / `until` (ISO 8601 text) to the query's `:since` / `:until`, unless
    `--param` gives them or the query does not name them. A run filters the rows by its
    window as well, bound or not."""
    given = {name for name, _ in sql.params}
    added = tuple(
        (name, value)
        for name, value in bounds.items()
        if value and name not in given and re.search(rf"(?<![:\w]):{name}\b", sql.query) is not None
    )
    return replace(sql, params=sql.params + added) if added else sql


def check_upsert(spec: MappingSpec) -> None:
    """`--upsert-customers` needs the customer's email and full name in the mapping."""
    customer = spec.customer
    if customer is None or not customer.email_column or not customer.full_name_column:
        raise MappingError(
            "--upsert-customers needs the customer's email and full name: give "
            'email = "<column>" and full_name = "<column>" in [customer]',
            file=spec.file,
            key="customer",
        )
