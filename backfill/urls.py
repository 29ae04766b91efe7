"""URL helpers: which sources are URLs, and how URLs are shown without credentials (pure)."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit


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


def is_http_url(url: str) -> bool:
    """Whether `url` is an http(s) URL with a host and a valid port.

    >>> is_http_url("http://127.0.0.1:8080/graphql"), is_http_url("ftp://host")
    (True, False)
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
