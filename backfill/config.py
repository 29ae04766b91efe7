"""Settings of every command, resolved in one place: flag > environment > default (pure).

Option text is parsed here, once, into typed values (`Rate`, `Shard`, `Window`,
`LedgerTarget`, `FailureLimit`, `SqlSource`); nothing downstream parses it again, and
what a run records (`Settings.public`) reads back through the same types.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Final, Literal

from backfill.errors import ConfigError
from backfill.ids import KeyValueError, in_zone, read_timestamp
from backfill.urls import display_name, is_http_url, is_url, mask_url

DEFAULT_API_URL: Final = "https://core-api.uk.plain.com/graphql/v1"
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
#: More shards than this is a typo, not a plan (each shard is a task of its own).
MAX_SHARDS: Final = 10_000

ENV_API_KEY: Final = "PLAIN_API_KEY"
ENV_API_URL: Final = "PLAIN_API_URL"
ENV_PREFIX: Final = "BACKFILL_"


class _Unset:
    """The "not given" sentinel: `None` can be a real value (no limit)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# --- typed values ------------------------------------------------------------------------

_RATE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS: Final = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def parse_rate(text: str) -> float:
    """Requests per second from a rate such as ``450/min`` or ``7.5/s``.

    >>> parse_rate("450/min")
    7.5
    """
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (write e.g. 450/min or 7.5/s, or auto)")
    per_second = float(match.group(1)) / _UNIT_SECONDS[match.group(2)]
    if per_second <= 0:
        raise ValueError(f"the rate must be above zero: {text!r}")
    return per_second


@dataclass(frozen=True, slots=True)
class Rate:
    """The request budget: a fixed rate, or `auto` (learnt from Plain's headers, less
    `headroom`), of which this run spends `share` (1/N for a shard of N).

    >>> Rate.parse("450/min", share=0.5).pace_per_s
    3.75
    >>> str(Rate.parse(" Auto "))
    'auto'
    """

    #: The workspace's budget in requests per second (under `auto`: where it starts).
    per_s: float
    auto: bool = False
    #: Under `auto`: the share of the learnt budget left to other traffic, 0..0.9.
    headroom: float = 0.1
    share: float = 1.0
    text: str = DEFAULT_RATE

    @classmethod
    def parse(cls, text: str, *, headroom: float = 0.1, share: float = 1.0) -> Rate:
        if text.strip().lower() == "auto":
            return cls(parse_rate(AUTO_START_RATE), True, headroom, share, "auto")
        return cls(parse_rate(text), False, headroom, share, text.strip())

    @property
    def pace_per_s(self) -> float:
        """What this run paces at: its share of the budget."""
        return self.per_s * self.share

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (0-based, as Airflow's `map_index`)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` with `0 <= I < N`; any other form is refused.

        >>> Shard.parse("2/4")
        Shard(index=2, count=4)
        """
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"not a shard: {text!r} (write I/N with 0 <= I < N, e.g. 0/4)")
        index, count = int(match[1]), int(match[2])
        if not 0 <= index < count or count > MAX_SHARDS:
            raise ValueError(
                f"not a shard: {text!r} (I/N needs 0 <= I < N and N <= {MAX_SHARDS}; "
                "shards count from 0, as Airflow's map_index)"
            )
        return cls(index, count)

    @property
    def share(self) -> float:
        """This shard's share of the workspace's budget."""
        return 1.0 / self.count

    @property
    def label(self) -> str:
        """How result folders name it: `shard-I-of-N`."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_SHARD: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*\Z")


@dataclass(frozen=True, slots=True)
class Window:
    """Rows whose timestamp is at or after `since` and before `until` (either may be open).

    A bound without offset is naive here: it is read in the mapping's zone (`in_zone`).

    >>> window = Window.parse("2024-05-01", "2024-05-02T00:00:00Z")
    >>> window.since.tzinfo is None, str(window)
    (True, 'since 2024-05-01T00:00:00, until 2024-05-02T00:00:00+00:00')
    """

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, since: str = "", until: str = "") -> Window:
        window = cls(_bound(since, "since"), _bound(until, "until"))
        if window.since is not None and window.until is not None:
            utc = window.in_zone(UTC)
            assert utc.since is not None and utc.until is not None
            if utc.since >= utc.until:
                raise ValueError(f"--since ({since}) must be before --until ({until})")
        return window

    def in_zone(self, tz: tzinfo) -> Window:
        """The window in UTC, bounds without offset read in `tz`."""
        return Window(*(None if b is None else in_zone(b, tz) for b in (self.since, self.until)))

    def holds(self, moment: datetime) -> bool:
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None

    def __str__(self) -> str:
        return ", ".join(
            f"{name} {bound.isoformat()}"
            for name, bound in (("since", self.since), ("until", self.until))
            if bound is not None
        )


def _bound(text: str, name: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        return read_timestamp(text)
    except KeyValueError as exc:
        raise ValueError(f"--{name}: {exc}") from None


_POSTGRES_URL: Final = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")
#: SQLAlchemy's URL of a SQLite file: `sqlite:///relative.db`, `sqlite:////abs/path.db`.
_SQLITE_URL: Final = re.compile(r"^sqlite(?:\+\w+)?:///(.+)\Z")


@dataclass(frozen=True, slots=True)
class LedgerTarget:
    """Where a job's ledger lives: a SQLite file, or a PostgreSQL database URL.

    >>> LedgerTarget.parse("sqlite:///jobs/a.sqlite")
    LedgerTarget(kind='sqlite', location='jobs/a.sqlite')
    >>> LedgerTarget.parse("postgresql+psycopg://u:pw@db/backfill").shown
    'postgresql+psycopg://u:***@db/backfill'
    """

    kind: Literal["sqlite", "postgres"]
    location: str  # a database URL may hold a password: shown masked

    @classmethod
    def parse(cls, text: str) -> LedgerTarget:
        """A `--ledger` value: a path, `sqlite:///path`, or a PostgreSQL URL; another URL
        is refused."""
        if _POSTGRES_URL.match(text):
            return cls("postgres", text)
        if (file := _SQLITE_URL.match(text)) is not None:
            return cls("sqlite", file.group(1))
        if is_url(text):
            raise ValueError(
                f"{mask_url(text)}: a ledger is a SQLite file (a path, or sqlite:///path) or "
                "a PostgreSQL database (postgresql+psycopg://...)"
            )
        if not text.strip():
            raise ValueError("empty: give a SQLite file or a PostgreSQL URL")
        return cls("sqlite", text)

    @classmethod
    def default_for(cls, mapping: str) -> LedgerTarget:
        """`.backfill/<stem>.sqlite` beside the mapping.

        One mapping file is one job: its ledger follows the file (not the working
        directory, not the namespace, not `--results-dir`), so editing the mapping's
        namespace or key columns meets the ledger's id-rule check instead of a fresh
        ledger, and two jobs never share a ledger by accident.

        >>> LedgerTarget.default_for("jobs/orders/mapping.toml").location
        'jobs/orders/.backfill/mapping.sqlite'
        """
        path = Path(mapping)
        return cls("sqlite", str(path.parent / DEFAULT_LEDGER_DIR / f"{path.stem}.sqlite"))

    @property
    def shown(self) -> str:
        """As messages and summaries name it: no password."""
        return mask_url(self.location) if self.kind == "postgres" else self.location

    def __repr__(self) -> str:
        return f"LedgerTarget(kind={self.kind!r}, location={self.shown!r})"


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

    @property
    def text(self) -> str:
        """As `--max-failures` takes it."""
        if self.count is not None:
            return str(self.count)
        assert self.share is not None
        return f"{self.share * 100:g}%"


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


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a command needs to know, typed. The API key never appears in its repr."""

    sources: tuple[str, ...]
    mapping: str
    ledger: LedgerTarget
    api_key: str = field(default="", repr=False)
    api_url: str = DEFAULT_API_URL
    results_dir: str = DEFAULT_RESULTS_DIR
    rate: Rate = Rate(parse_rate(DEFAULT_RATE))
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
    outage_limit_s: float = 600.0
    max_failures: FailureLimit | None = None
    #: The query rows come from instead of files.
    sql: SqlSource | None = None
    #: This run takes one shard of the rows (by externalId hash); None: every row.
    shard: Shard | None = None
    #: Bounds on the mapping's timestamp column: since <= timestamp < until.
    window: Window = Window()
    #: Send again the rows Plain rejected (all, or those with `retry_code`).
    retry_rejected: bool = False
    retry_code: str = ""

    @property
    def selection_text(self) -> str:
        """The part of the job a run takes, as its summary says it."""
        shard = f"shard {self.shard}" if self.shard is not None else ""
        return ", ".join(part for part in (shard, str(self.window)) if part)

    def public(self) -> dict[str, Any]:
        """The options worth recording with a run, as option text: no key, no credentials.

        The runs table keeps this; `Rate.parse` and `Shard.parse` read it back.
        """
        sql = self.sql
        return {
            "sources": [display_name(source) for source in self.sources],
            "mapping": self.mapping,
            "api_url": mask_url(self.api_url),
            "rate": str(self.rate),
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
            "outage_limit": f"{self.outage_limit_s:g}s",
            "max_failures": self.max_failures.text if self.max_failures else "",
            "headroom": f"{self.rate.headroom * 100:g}%",
            "source_sql": sql.query if sql else "",
            "source_url": sql.shown if sql else "",
            "params": [f"{name}={value}" for name, value in sql.params] if sql else [],
            "shard": str(self.shard) if self.shard else "",
            "since": self.window.since.isoformat() if self.window.since else "",
            "until": self.window.until.isoformat() if self.window.until else "",
            "retry_rejected": self.retry_rejected,
            "retry_code": self.retry_code,
        }


@dataclass(frozen=True, slots=True)
class Option:
    """An option every command reads the same way: its environment variable and type."""

    name: str
    env: str
    kind: Literal["text", "int", "float", "bool", "list"] = "text"
    #: Repeatable or per-invocation options are never read from the environment.
    from_env: bool = True

    @property
    def flag(self) -> str:
        return "--timeout" if self.name == "timeout_s" else "--" + self.name.replace("_", "-")

    @property
    def named(self) -> str:
        """How a user names it: its flag and its environment variable."""
        return f"{self.flag} ({self.env})" if self.from_env else self.flag


def _option(name: str, kind: Literal["text", "int", "float", "bool", "list"] = "text") -> Option:
    special = {"api_key": ENV_API_KEY, "api_url": ENV_API_URL, "timeout_s": "BACKFILL_TIMEOUT"}
    env = special.get(name, ENV_PREFIX + name.upper())
    return Option(name, env, kind, from_env=name not in ("params", "retry_rejected", "retry_code"))


#: Every option `resolve` takes, by its keyword.
OPTIONS: Final = {
    option.name: option
    for option in (
        _option("api_key"),
        _option("api_url"),
        _option("ledger"),
        _option("results_dir"),
        _option("rate"),
        _option("headroom"),
        _option("concurrency", "int"),
        _option("max_retries", "int"),
        _option("timeout_s", "float"),
        _option("limit", "int"),
        _option("expect_workspace"),
        _option("allow_id_change", "bool"),
        _option("upsert_customers", "bool"),
        _option("dry_run", "bool"),
        _option("chunk_rows", "int"),
        _option("events_per_request", "int"),
        _option("format"),
        _option("outage_limit"),
        _option("max_failures"),
        _option("source_sql"),
        _option("source_url"),
        _option("params", "list"),
        _option("shard"),
        _option("since"),
        _option("until"),
        _option("retry_rejected", "bool"),
        _option("retry_code"),
    )
}


def env_name_of(setting: str) -> str:
    """The environment variable of an option: `PLAIN_*` for the API, else `BACKFILL_<OPTION>`.

    >>> env_name_of("timeout_s")
    'BACKFILL_TIMEOUT'
    """
    return OPTIONS[setting].env


FORMATS: Final = ("csv", "jsonl", "parquet")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


#: Options that pick rows of the sources: without sources (`status`, `export` of a whole
#: ledger) they are refused when given and not read from the environment.
ROW_OPTIONS: Final = ("source_url", "params", "shard", "since", "until", "format", "limit")


def resolve(
    *,
    sources: Sequence[str] = (),
    mapping: str = "",
    env: Mapping[str, str] | None = None,
    trust_env: bool = True,
    sources_optional: bool = False,
    **given: Any,
) -> Settings:
    """Settings from given options (UNSET or absent: not given), the environment and
    defaults, every value parsed and checked. Every command resolves its options here.

    `sources_optional` is for commands that read a ledger and may check sources too
    (`status`, `export`): without sources, options that pick rows are refused.

    >>> resolve(sources=("a.csv",), mapping="m.toml", env={}, rate=UNSET).rate.per_s
    7.5
    >>> resolve(sources=("a.csv",), mapping="m.toml", env={"BACKFILL_SHARD": "1/4"}).shard
    Shard(index=1, count=4)
    """
    environ = (os.environ if env is None else env) if trust_env else {}
    raw: dict[str, Any] = {}
    for name, value in given.items():
        if name not in OPTIONS:
            raise TypeError(f"unknown setting {name!r}")
        if value is not UNSET:
            raw[name] = value
    for name, option in OPTIONS.items():
        if name not in raw and option.from_env and environ.get(option.env, "") != "":
            raw[name] = _from_env(option, environ[option.env])
    if sources_optional:
        _sources_optional(sources, mapping, raw, given)
    return _settings(tuple(sources), mapping, raw)


def _sources_optional(
    sources: Sequence[str], mapping: str, raw: dict[str, Any], given: Mapping[str, Any]
) -> None:
    with_sources = bool(sources) or bool(raw.get("source_sql"))
    if with_sources and not mapping:
        raise ConfigError("checking sources needs their --mapping")
    if with_sources:
        return
    named = sorted(
        OPTIONS[name].flag
        for name in ROW_OPTIONS
        if given.get(name, UNSET) not in (UNSET, None, (), "")
    )
    if named:
        raise ConfigError(
            f"{', '.join(named)} pick rows of the sources: give SOURCE... (or --source-sql) "
            "and --mapping, or leave them out to summarise the whole ledger"
        )
    for name in ROW_OPTIONS:
        raw.pop(name, None)


def given_rate(text: str | None, env: Mapping[str, str] | None = None) -> Rate | None:
    """A rate given as an option, else `BACKFILL_RATE`, else None (`status`'s ETA then
    assumes the last run's).

    >>> given_rate(None, {"BACKFILL_RATE": "10/s"}).per_s, given_rate(None, {})
    (10.0, None)
    """
    environ = os.environ if env is None else env
    value = text or environ.get(OPTIONS["rate"].env, "")
    return _parsed("rate", Rate.parse, value) if value else None


def _from_env(option: Option, text: str) -> Any:
    value = text.strip()
    try:
        if option.kind == "int":
            return int(value)
        if option.kind == "float":
            return float(value)
    except ValueError:
        wanted = "a whole number" if option.kind == "int" else "a number"
        raise ConfigError(f"{option.env}={text!r} is not {wanted}") from None
    if option.kind == "bool":
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{option.env}={text!r} is not true or false (1/0, yes/no, on/off)")
    return text


def _parsed(name: str, parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{OPTIONS[name].named}: {exc}") from None


def _settings(sources: tuple[str, ...], mapping: str, raw: dict[str, Any]) -> Settings:
    def text(name: str, default: str = "") -> str:
        value = raw.get(name, default)
        return default if value is None else str(value)

    shard_text = text("shard").strip()
    shard = _parsed("shard", Shard.parse, shard_text) if shard_text else None
    headroom = _parsed("headroom", parse_share, text("headroom", DEFAULT_HEADROOM))
    share = shard.share if shard is not None else 1.0
    rate = _parsed(
        "rate",
        lambda t: Rate.parse(t, headroom=headroom, share=share),
        text("rate", DEFAULT_RATE),
    )
    failures = text("max_failures").strip()
    try:
        window = Window.parse(text("since"), text("until"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    ledger_text = text("ledger")
    if ledger_text:
        ledger = _parsed("ledger", LedgerTarget.parse, ledger_text)
    elif mapping:
        ledger = LedgerTarget.default_for(mapping)
    else:
        raise ConfigError("give --ledger (BACKFILL_LEDGER), or --mapping to use its default ledger")
    fmt = text("format")
    if fmt and fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    typed = {
        name: raw[name]
        for name in (
            "api_key",
            "api_url",
            "results_dir",
            "concurrency",
            "max_retries",
            "timeout_s",
            "limit",
            "expect_workspace",
            "allow_id_change",
            "upsert_customers",
            "dry_run",
            "chunk_rows",
            "events_per_request",
            "retry_rejected",
            "retry_code",
        )
        if name in raw and raw[name] is not None
    }
    settings = Settings(
        sources=sources,
        mapping=mapping,
        ledger=ledger,
        rate=rate,
        format=fmt,
        outage_limit_s=_parsed(
            "outage_limit", parse_duration, text("outage_limit", DEFAULT_OUTAGE_LIMIT)
        ),
        max_failures=_parsed("max_failures", FailureLimit.parse, failures) if failures else None,
        sql=sql_source(text("source_sql"), text("source_url"), tuple(raw.get("params") or ())),
        shard=shard,
        window=window,
        **typed,
    )
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
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
            raise ConfigError(f"{OPTIONS[name].named} must be {wanted}")
    if settings.sql is not None and settings.sources:
        raise ConfigError(
            "give either source files or --source-sql, not both (run one job per source)"
        )
    if settings.retry_code and not settings.retry_rejected:
        raise ConfigError("--code picks which rejected rows to send again: give --retry-rejected")
    if not is_http_url(settings.api_url):
        raise ConfigError(
            f"{OPTIONS['api_url'].named} must be an http(s) URL: {mask_url(settings.api_url)!r}"
        )
    seen: set[str] = set()
    for source in settings.sources:
        real = source if is_url(source) else os.path.realpath(source)
        if real in seen:
            raise ConfigError(f"the source {display_name(source)} is given twice")
        seen.add(real)


def recorded_rate(options: Mapping[str, Any]) -> Rate | None:
    """The rate a run recorded (`Settings.public`), read back; None if it recorded none.

    >>> recorded_rate({"rate": "30/s"}).per_s
    30.0
    """
    given = str(options.get("rate") or "")
    try:
        return Rate.parse(given) if given else None
    except ValueError:
        return None


def recorded_shard(options: Mapping[str, Any]) -> Shard | None:
    """The shard a run recorded, read back."""
    given = str(options.get("shard") or "")
    try:
        return Shard.parse(given) if given else None
    except ValueError:
        return None
