"""Settings of a run, resolved in one place: flag > environment > default (pure)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from backfill.errors import ConfigError
from backfill.plain import DEFAULT_API_URL
from backfill.ratelimit import parse_rate

DEFAULT_RATE: Final = "450/min"
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_MAX_RETRIES: Final = 5
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_RESULTS_DIR: Final = "results"
DEFAULT_LEDGER_DIR: Final = ".backfill"
DEFAULT_CHUNK_ROWS: Final = 1000

ENV_API_KEY: Final = "PLAIN_API_KEY"
ENV_API_URL: Final = "PLAIN_API_URL"
ENV_PREFIX: Final = "BACKFILL_"


class _Unset:
    """The "not given" sentinel: `None` can be a real value (no limit)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to know. The API key never appears in its repr."""

    sources: tuple[str, ...]
    mapping: str
    api_key: str = field(default="", repr=False)
    api_url: str = DEFAULT_API_URL
    ledger: str = ""
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

    @property
    def rate_per_s(self) -> float:
        return parse_rate(self.rate)

    def public(self) -> dict[str, Any]:
        """The options worth recording with a run: no key, no credentials in URLs."""
        return {
            "sources": list(self.sources),
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
        }


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
    """Hide a password in a URL (``scheme://user:***@host``)."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


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
    for name in names - values.keys():
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
    try:
        settings.rate_per_s  # noqa: B018 - parsing is the check
    except ValueError as exc:
        raise ConfigError(f"{_option('rate')}: {exc}") from None
    limits = [
        ("concurrency", settings.concurrency >= 1, "at least 1"),
        ("max_retries", settings.max_retries >= 0, "0 or more"),
        ("limit", settings.limit is None or settings.limit >= 0, "0 or more"),
        ("timeout_s", settings.timeout_s > 0, "above zero"),
        ("chunk_rows", settings.chunk_rows >= 1, "at least 1"),
    ]
    for name, ok, wanted in limits:
        if not ok:
            raise ConfigError(f"{_option(name)} must be {wanted}")
    if not _is_http_url(settings.api_url):
        raise ConfigError(
            f"{_option('api_url')} must be an http(s) URL: {mask_url(settings.api_url)!r}"
        )
    seen: set[str] = set()
    for source in settings.sources:
        real = os.path.realpath(source)
        if real in seen:
            raise ConfigError(f"the source {source} is given twice")
        seen.add(real)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
