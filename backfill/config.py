"""Settings of a run, resolved in one place: flag > environment > default (pure)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from backfill.errors import ConfigError
from backfill.plain import DEFAULT_API_URL
from backfill.ratelimit import parse_rate
from backfill.selection import Shard, parse_bound

DEFAULT_RATE: Final = "450/min"
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_MAX_RETRIES: Final = 5
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_RESULTS_DIR: Final = "results"
DEFAULT_LEDGER_DIR: Final = ".backfill"
DEFAULT_CHUNK_ROWS: Final = 1000
DEFAULT_OUTAGE_LIMIT: Final = "10m"
DEFAULT_HEADROOM: Final = "10%"
#: The rate `--rate auto` starts from, until Plain's headers tell the budget.
AUTO_START_RATE: Final = DEFAULT_RATE
MAX_EVENTS_PER_REQUEST: Final = 100

ENV_API_KEY: Final = "PLAIN_API_KEY"
ENV_API_URL: Final = "PLAIN_API_URL"
ENV_PREFIX: Final = "BACKFILL_"


class _Unset:
    """The "not given" sentinel: `None` can be a real value (no limit)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()

#: Settings never read from the environment (repeatable options).
_NOT_FROM_ENV: Final = frozenset({"params", "retry_rejected", "retry_code"})
_PARAM_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SqlSource:
    """`--source-sql`: a query (or `@file` holding one), the database URL, bound parameters.

    >>> SqlSource("SELECT 1", "sqlite://", (("since", "2024-01-01"),)).shown
    'sqlite://'
    """

    query: str
    url: str = field(repr=False)  # it may hold a password
    #: (name, value) pairs, bound as query parameters, never pasted into the text.
    params: tuple[tuple[str, str], ...] = ()

    @property
    def shown(self) -> str:
        """The database as rows, results and messages name it: no password."""
        return display_name(self.url)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to know. The API key never appears in its repr."""

    sources: tuple[str, ...]
    mapping: str
    api_key: str = field(default="", repr=False)
    api_url: str = DEFAULT_API_URL
    ledger: str = field(default="", repr=False)  # a database URL may hold a password
    results_dir: str = DEFAULT_RESULTS_DIR
    rate: str = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout_s: float = DEFAULT_TIMEOUT_S
    limit: int | None = None
    expect_workspace: str = ""
    allow_id_change: bool = False
    upsert_customers: bool = False
    dry_run: bool = False
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    events_per_request: int = 1
    #: csv, jsonl or parquet for every source; empty: from each file's name.
    format: str = ""
    outage_limit: str = DEFAULT_OUTAGE_LIMIT
    max_failures: str = ""
    headroom: str = DEFAULT_HEADROOM
    #: A query to read rows from instead of files (`@path` reads it from a file).
    source_sql: str = ""
    #: The SQLAlchemy URL of the database `source_sql` runs on.
    source_url: str = field(default="", repr=False)
    #: `name=value` parameters of `source_sql`.
    params: tuple[str, ...] = ()
    #: `I/N`: this run takes shard I of N (by externalId hash); empty: every row.
    shard: str = ""
    #: ISO 8601 bounds on the mapping's timestamp column: since <= timestamp < until.
    since: str = ""
    until: str = ""
    #: Send again the rows Plain rejected (all, or those with `retry_code`).
    retry_rejected: bool = False
    retry_code: str = ""

    @property
    def sql(self) -> SqlSource | None:
        """The SQL source, or None when the sources are files."""
        return sql_source(self.source_sql, self.source_url, self.params)

    @property
    def shard_spec(self) -> Shard | None:
        return Shard.parse(self.shard) if self.shard.strip() else None

    @property
    def rate_share(self) -> float:
        """This run's share of the workspace's budget: 1/N for a shard of N."""
        shard = self.shard_spec
        return 1.0 / shard.count if shard is not None else 1.0

    @property
    def rate_auto(self) -> bool:
        """`--rate auto`: learn the budget from Plain's rate-limit headers."""
        return self.rate.strip().lower() == "auto"

    @property
    def rate_per_s(self) -> float:
        """The configured rate, or where `--rate auto` starts."""
        return parse_rate(AUTO_START_RATE if self.rate_auto else self.rate)

    @property
    def outage_limit_s(self) -> float:
        return parse_duration(self.outage_limit)

    @property
    def headroom_share(self) -> float:
        """The share of a learned budget left unused, 0..0.9."""
        return parse_share(self.headroom)

    @property
    def failure_limit(self) -> FailureLimit | None:
        return FailureLimit.parse(self.max_failures) if self.max_failures.strip() else None

    def public(self) -> dict[str, Any]:
        """The options worth recording with a run: no key, no credentials in URLs."""
        return {
            "sources": [display_name(source) for source in self.sources],
            "mapping": self.mapping,
            "api_url": mask_url(self.api_url),
            "rate": self.rate,
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
            "timeout_s": self.timeout_s,
            "limit": self.limit,
            "expect_workspace": self.expect_workspace,
            "allow_id_change": self.allow_id_change,
            "upsert_customers": self.upsert_customers,
            "dry_run": self.dry_run,
            "events_per_request": self.events_per_request,
            "format": self.format,
            "outage_limit": self.outage_limit,
            "max_failures": self.max_failures,
            "headroom": self.headroom,
            "source_sql": self.source_sql,
            "source_url": display_name(self.source_url),
            "params": list(self.params),
            "shard": self.shard,
            "since": self.since,
            "until": self.until,
            "retry_rejected": self.retry_rejected,
            "retry_code": self.retry_code,
        }


#: How many answered rows a percentage of failures is judged on, at the least.
MIN_ANSWERS_FOR_SHARE: Final = 100


@dataclass(frozen=True, slots=True)
class FailureLimit:
    """`--max-failures`: a count of failed rows, or a share of the rows answered so far."""

    count: int | None = None
    share: float | None = None

    @classmethod
    def parse(cls, text: str) -> FailureLimit:
        """`50` (rows) or `2%` (of the rows answered so far).

        >>> FailureLimit.parse("2.5%").share
        0.025
        """
        value = text.strip()
        try:
            if value.endswith("%"):
                share = float(value[:-1]) / 100
                if not 0 <= share < 1:
                    raise ValueError
                return cls(share=share)
            count = int(value)
            if count < 0:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise ValueError(
                f"not a failure limit: {text!r} (write a number of rows, e.g. 50, or a share "
                "below 100%, e.g. 2%)"
            ) from None

    def exceeded(self, failed: int, answered: int, read: int) -> bool:
        """Do `failed` rows (invalid or rejected) go over the limit?

        A share is of the rows read so far (invalid rows are known as soon as they are
        read, the others once Plain answers), judged once `MIN_ANSWERS_FOR_SHARE` rows
        have their answer.

        >>> FailureLimit(share=0.1).exceeded(failed=20, answered=99, read=150)
        False
        >>> FailureLimit(share=0.1).exceeded(failed=20, answered=100, read=150)
        True
        """
        if self.count is not None:
            return failed > self.count
        assert self.share is not None
        return answered >= MIN_ANSWERS_FOR_SHARE and failed > self.share * max(answered, read)

    def __str__(self) -> str:
        return f"{self.count} rows" if self.count is not None else f"{self.share:.1%}"


_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `10m` or `1h`.

    >>> parse_duration("10m")
    600.0
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 90s, 10m or 1h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_share(text: str) -> float:
    """A share from `10%` (or `10`), at most 90%.

    >>> parse_share("25%")
    0.25
    """
    value = text.strip().removesuffix("%")
    try:
        share = float(value) / 100
    except ValueError:
        share = -1.0
    if not 0 <= share <= 0.9:
        raise ValueError(f"not a share: {text!r} (write a percentage from 0% to 90%, e.g. 10%)")
    return share


def sql_source(query: str, url: str, params: Sequence[str] = ()) -> SqlSource | None:
    """The SQL source `--source-sql`, `--source-url` and `--param` give, checked.

    >>> sql_source("SELECT * FROM t WHERE d > :since", "sqlite://", ["since=2024-01-01"]).params
    (('since', '2024-01-01'),)
    """
    if not query:
        if url or params:
            given = "--source-url" if url else "--param"
            raise ConfigError(f"{given} is for --source-sql: give the query too")
        return None
    if not url:
        raise ConfigError(
            "--source-sql needs --source-url (BACKFILL_SOURCE_URL), the database's SQLAlchemy "
            "URL, e.g. postgresql+psycopg://user@host:5432/db"
        )
    pairs = []
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not _PARAM_NAME.match(name.strip()):
            raise ConfigError(f"--param {param!r}: write name=value, e.g. --param since=2024-01-01")
        pairs.append((name.strip(), value))
    return SqlSource(query, url, tuple(pairs))


def resolve_sql(
    *,
    source_sql: str | None = None,
    source_url: str | None = None,
    params: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> SqlSource | None:
    """The SQL source from options (None: not given), else the environment, as `resolve` does.

    >>> resolve_sql(source_sql="SELECT 1", env={"BACKFILL_SOURCE_URL": "sqlite://"}).url
    'sqlite://'
    """
    environ = os.environ if env is None else env
    return sql_source(
        source_sql or environ.get(env_name_of("source_sql"), ""),
        source_url or environ.get(env_name_of("source_url"), ""),
        params,
    )


def default_ledger(mapping: str) -> str:
    """Where a job's ledger lives unless told: `.backfill/<stem>.sqlite` beside the mapping.

    One mapping file is one job: its ledger follows the file (not the working
    directory, not the namespace, not `--results-dir`), so editing the mapping's
    namespace or key columns meets the ledger's id-rule check instead of a fresh ledger,
    and two jobs never share a ledger by accident.

    >>> default_ledger("jobs/orders/mapping.toml")
    'jobs/orders/.backfill/mapping.sqlite'
    """
    path = Path(mapping)
    return str(path.parent / DEFAULT_LEDGER_DIR / f"{path.stem}.sqlite")


def mask_url(url: str) -> str:
    """A URL with its password as `***` and every query value too (`?password=` exists).

    >>> mask_url("postgresql+psycopg://u:pw@host:5432/db?sslmode=require&password=pw")
    'postgresql+psycopg://u:***@host:5432/db?sslmode=***&password=***'
    >>> mask_url("postgresql://:pw@host/db"), mask_url("https://host/path")
    ('postgresql://:***@host/db', 'https://host/path')
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://(a URL that cannot be parsed)"
    user, at, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:***@{host}" if at and ":" in user else parts.netloc
    return parts._replace(netloc=netloc, query=_masked_query(parts.query)).geturl()


def _masked_query(query: str) -> str:
    return (
        "&".join(
            f"{name}=***" if sep else "***"
            for name, sep, _ in (item.partition("=") for item in query.split("&"))
        )
        if query
        else ""
    )


_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(source: str) -> bool:
    """Whether a source is a URL (`s3://...`, `https://...`) rather than a local path."""
    return _URL.match(source) is not None


def display_name(source: str) -> str:
    """A source as it may be shown or stored: a URL without its credentials.

    A password (and, over http(s), any user name: it may be a token) is dropped and
    every query value becomes `***` (SAS tokens and presigned signatures live there).
    `container@account` in an Azure URL stays. A local path is returned as it is.

    >>> display_name("https://user:pw@host/a.csv.gz?sig=abc&se=2030")
    'https://host/a.csv.gz?sig=***&se=***'
    """
    if not is_url(source):
        return source
    try:
        parts = urlsplit(source)
    except ValueError:
        return source.split("://", 1)[0] + "://(a URL that cannot be parsed)"
    user, at, host = parts.netloc.rpartition("@")
    netloc = host if at and (":" in user or parts.scheme in ("http", "https")) else parts.netloc
    if netloc == parts.netloc and not parts.query and not parts.fragment:
        return source
    shown = parts._replace(netloc=netloc, query=_masked_query(parts.query), fragment="")
    return shown.geturl() + ("#***" if parts.fragment else "")


def resolve(
    *,
    sources: tuple[str, ...],
    mapping: str,
    env: Mapping[str, str] | None = None,
    trust_env: bool = True,
    **given: Any,
) -> Settings:
    """Build Settings from given options (UNSET = not given), the environment and defaults.

    >>> resolve(sources=("a.csv",), mapping="m.toml", env={}, rate=UNSET).rate
    '450/min'
    """
    environ = (os.environ if env is None else env) if trust_env else {}
    values: dict[str, Any] = {}
    names = {f for f in Settings.__dataclass_fields__ if f not in ("sources", "mapping")}
    for name, value in given.items():
        if name not in names:
            raise TypeError(f"unknown setting {name!r}")
        if value is not UNSET:
            values[name] = value
    for name in names - values.keys() - _NOT_FROM_ENV:
        env_name = env_name_of(name)
        if env_name in environ and environ[env_name] != "":
            values[name] = _from_env(name, environ[env_name], env_name)
    settings = Settings(sources=sources, mapping=mapping, **values)
    _check(settings)
    return settings


def env_name_of(setting: str) -> str:
    """The environment variable of a setting: `PLAIN_*` for the API, else `BACKFILL_<OPTION>`.

    >>> env_name_of("timeout_s")
    'BACKFILL_TIMEOUT'
    """
    special = {"api_key": ENV_API_KEY, "api_url": ENV_API_URL, "timeout_s": "BACKFILL_TIMEOUT"}
    return special.get(setting, ENV_PREFIX + setting.upper())


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _from_env(name: str, text: str, env_name: str) -> Any:
    kind = Settings.__dataclass_fields__[name].type
    value = text.strip()
    try:
        if kind in ("int", "int | None"):
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        wanted = "a whole number" if kind.startswith("int") else "a number"
        raise ConfigError(f"{env_name}={text!r} is not {wanted}") from None
    if kind == "bool":
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{env_name}={text!r} is not true or false (1/0, yes/no, on/off)")
    return text


def _option(name: str) -> str:
    """How a user names a setting: its flag and its environment variable."""
    flag = "--timeout" if name == "timeout_s" else "--" + name.replace("_", "-")
    return f"{flag} ({env_name_of(name)})"


def _check(settings: Settings) -> None:
    checks = [
        ("rate", "rate_per_s"),
        ("outage_limit", "outage_limit_s"),
        ("headroom", "headroom_share"),
        ("max_failures", "failure_limit"),
        ("shard", "shard_spec"),
    ]
    for name, parsed in checks:
        try:
            getattr(settings, parsed)  # parsing is the check
        except ValueError as exc:
            raise ConfigError(f"{_option(name)}: {exc}") from None
    limits = [
        ("concurrency", settings.concurrency >= 1, "at least 1"),
        ("max_retries", settings.max_retries >= 0, "0 or more"),
        ("limit", settings.limit is None or settings.limit >= 0, "0 or more"),
        ("timeout_s", settings.timeout_s > 0, "above zero"),
        ("chunk_rows", settings.chunk_rows >= 1, "at least 1"),
        (
            "events_per_request",
            1 <= settings.events_per_request <= MAX_EVENTS_PER_REQUEST,
            f"from 1 to {MAX_EVENTS_PER_REQUEST}",
        ),
        ("outage_limit", settings.outage_limit_s > 0, "above zero"),
    ]
    for name, ok, wanted in limits:
        if not ok:
            raise ConfigError(f"{_option(name)} must be {wanted}")
    if settings.sql is not None and settings.sources:
        raise ConfigError(
            "give either source files or --source-sql, not both (run one job per source)"
        )
    try:
        # Only the form is checked here: a bound without offset is read in the mapping's zone.
        since, until = (parse_bound(getattr(settings, n), UTC, name=n) for n in ("since", "until"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"--since ({settings.since}) must be before --until ({settings.until})")
    if settings.retry_code and not settings.retry_rejected:
        raise ConfigError("--code picks which rejected rows to send again: give --retry-rejected")
    if not _is_http_url(settings.api_url):
        raise ConfigError(
            f"{_option('api_url')} must be an http(s) URL: {mask_url(settings.api_url)!r}"
        )
    seen: set[str] = set()
    for source in settings.sources:
        real = source if is_url(source) else os.path.realpath(source)
        if real in seen:
            raise ConfigError(f"the source {display_name(source)} is given twice")
        seen.add(real)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
