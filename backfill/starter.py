"""A starter mapping from a source's header and first rows: the engine of `backfill init`.

`starter_mapping` is pure: given the column names and a few sample rows it guesses
which column is the row's key, the customer, the timestamp, the title and a few
components, and writes a TOML mapping that loads as it is, with every guess that may
be wrong marked ``# check:`` and commented examples of every component type after the
real ones. `write_starter` reads the rows from a CSV file and writes the text out.

The guesses look at normalised column names first (``Event ID``, ``eventId`` and
``event_id`` all read as ``event_id``) and at the sample values second; ties go to the
column further left. They are a starting point for a person to read, never a
substitute: the header of the file says what to check and how to try it.
"""

from __future__ import annotations

import keyword
import re
import shlex
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import PurePath
from typing import Final

from backfill.errors import ConfigError
from backfill.readers import read_header, read_rows

DEFAULT_SAMPLE_ROWS: Final = 200
#: Share of the non-empty sample values that must look right for a guess by values.
MOSTLY: Final = 0.8
#: Columns shown as extra plain_text components, and how long their values may be.
MAX_EXTRA_COLUMNS: Final = 3
MAX_EXTRA_LENGTH: Final = 60
MAX_NAMESPACE: Final = 64

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PLAIN_CUSTOMER_ID = re.compile(r"c_[0-9A-Za-z]{10,}")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Names a bare `{{ name }}` cannot mean as a column: Python and Jinja keywords and
#: constants, the `row` context variable and the Jinja globals, which the column
#: check does not count as columns.
_NOT_BARE: Final = frozenset(
    {*keyword.kwlist, "true", "false", "none", "row", "loop"}
    | {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)

# Name lists are in order of preference; a later entry is a weaker hint.
_KEY_NAMES: Final = (
    "id",
    "event_id",
    "activity_id",
    "record_id",
    "row_id",
    "uuid",
    "guid",
    "key",
    "event_key",
    "event_uuid",
)
_KEY_SUFFIXES: Final = ("_uuid", "_guid", "_key", "_id")
_CUSTOMERISH: Final = frozenset({"customer", "client", "contact", "user", "account", "member"})
_EXTERNAL_ID_NAMES: Final = (
    "customer_external_id",
    "external_id",
    "customer_id",
    "account_id",
    "user_id",
    "client_id",
    "customer",
    "account",
)
_CUSTOMER_ID_NAMES: Final = ("plain_customer_id", "plain_id")
_FULL_NAME_NAMES: Final = (
    "full_name",
    "customer_name",
    "customer_full_name",
    "contact_name",
    "user_name",
    "name",
)
_THREAD_NAMES: Final = ("thread_id", "plain_thread_id", "thread")
_TIME_NAMES: Final = (
    "occurred_at",
    "timestamp",
    "event_time",
    "event_timestamp",
    "event_at",
    "created_at",
    "time",
    "date",
    "datetime",
    "ts",
    "event_date",
    "updated_at",
)
_TIME_SUFFIXES: Final = ("_at", "_time", "_timestamp", "_ts", "_date", "_datetime")
_TITLE_NAMES: Final = (
    "event_type",
    "type",
    "event",
    "event_name",
    "action",
    "activity",
    "activity_type",
    "kind",
    "name",
)
_TITLE_SUFFIXES: Final = ("_type", "_action", "_event")
_TEXT_NAMES: Final = (
    "description",
    "details",
    "detail",
    "message",
    "body",
    "text",
    "note",
    "notes",
    "summary",
    "comment",
    "comments",
    "content",
)
_TEXT_SUFFIXES: Final = (
    "_description",
    "_details",
    "_message",
    "_body",
    "_text",
    "_note",
    "_summary",
    "_comment",
)
_URL_NAMES: Final = ("url", "link", "href", "uri", "permalink")
_URL_SUFFIXES: Final = ("_url", "_link", "_href", "_uri")

#: Where trailing comments start, so a column of them reads as one.
_COMMENT_AT: Final = 32


@dataclass(frozen=True, slots=True)
class _Column:
    """A source column: its name, its normalised words, its sample values."""

    name: str
    words: str
    position: int
    values: tuple[str, ...]

    @property
    def filled(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in self.values if v.strip())

    @property
    def ref(self) -> str:
        """How a Jinja template or `when` names this column."""
        if _ASCII_NAME.fullmatch(self.name) and self.name not in _NOT_BARE:
            return self.name
        return f"row[{_jinja_string(self.name)}]"

    def mostly(self, test: Callable[[str], bool]) -> bool | None:
        """Whether most non-empty sample values pass `test`; None when there are none."""
        filled = self.filled
        if not filled:
            return None
        return sum(1 for v in filled if test(v)) >= MOSTLY * len(filled)

    def rank(self, names: Sequence[str], suffixes: Sequence[str] = ()) -> int | None:
        """How well the name matches: its index among `names`, then among `suffixes`."""
        if self.words in names:
            return names.index(self.words)
        for i, suffix in enumerate(suffixes):
            if self.words.endswith(suffix):
                return len(names) + i
        return None


@dataclass(frozen=True, slots=True)
class _Guess:
    """A chosen column and, when the choice is doubtful, what a person should check."""

    column: _Column
    check: str = ""


@dataclass(frozen=True, slots=True)
class _Customer:
    """The customer identifier: which mapping key (email, external_id...) and column."""

    field: str
    guess: _Guess


def starter_mapping(
    columns: Sequence[str], samples: Sequence[Mapping[str, str]], *, source: str
) -> str:
    """Pure: the TOML text of a starter mapping for a source with these columns and sample rows.

    The text loads as a mapping as it is. Doubtful guesses carry a ``# check:`` line;
    commented examples of every component type, ``when`` and ``too_long`` follow the
    real components. How each part is guessed (names are compared normalised:
    lower-case ASCII words joined by ``_``, camelCase split):

    - key (``[external_id] key``): a column named ``id``, ``event_id``, ``uuid``, ``key``...
      or ending in ``_uuid``, ``_key``, ``_id``; one whose sample values are all
      non-empty and distinct wins. Its type is always ``string``, which keeps values
      exactly (leading zeros too). With no such name, the first column, to check.
    - customer: a column whose name contains ``email`` (one also naming a customer,
      user, contact or account first), else one whose values are mostly emails;
      without one, Plain customer ids (``c_...``) as ``customer_id``, or a column
      named like ``external_id`` / ``account_id`` as ``external_id``, to check.
    - timestamp: a column named ``occurred_at``, ``timestamp``, ``created_at``,
      ``time``, ``date``... or ending in ``_at``, ``_time``, ``_date``, whose values
      mostly parse with `datetime.fromisoformat`; else such a name anyway, else a
      column whose values parse, else the first column, each to check.
    - title: ``{{ col | replace('_', ' ') | capitalize }}`` over a column named
      ``event_type``, ``type``, ``event``, ``action``, ``activity``, ``name``...;
      else the constant ``Activity``, to check.
    - components: a ``text`` for a description-like column (``description``,
      ``details``, ``message``, ``body``, ``text``, ``note``, ``summary``...), a
      ``link_button`` for a URL-like one (named ``url``, ``link``, ``href``... or with
      values starting ``http``), and a ``plain_text`` ("plan: {{ plan }}") for each
      of the first three other columns with short non-empty values; each with a
      ``when`` on its column, so empty values leave it out.
    - namespace: the source file's stem, accents dropped, lower-cased, characters
      other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``-``, prefixed
      with ``job-`` unless it starts with a letter or digit, at most 64 characters.

    Columns whose names are not plain identifiers (or are Jinja words such as
    ``row``, ``true``, ``range``) are written ``row['name']`` in templates and ``when``.

    >>> import tomllib
    >>> text = starter_mapping(
    ...     ["id", "email", "created_at"],
    ...     [{"id": "1", "email": "ada@example.com", "created_at": "2024-05-01T09:00:00Z"}],
    ...     source="exports/Sign-ups 2024.csv",
    ... )
    >>> tomllib.loads(text)["external_id"]
    {'namespace': 'sign-ups-2024', 'key': [{'column': 'id', 'type': 'string'}]}
    """
    if not columns:
        raise ValueError("a starter mapping needs at least one column")
    cols = [
        _Column(name, _words(name), i, tuple(row.get(name, "") for row in samples))
        for i, name in enumerate(columns)
    ]
    key = _key_column(cols)
    customer = _customer(cols)
    stamp = _timestamp_column(cols)
    used = {key.column.name, customer.guess.column.name, stamp.column.name}
    full_name = _named(cols, used, _FULL_NAME_NAMES) if customer.field == "email" else None
    thread = _named(cols, used, _THREAD_NAMES)
    used |= {c.name for c in (full_name, thread) if c is not None}
    title = _named(cols, used, _TITLE_NAMES, _TITLE_SUFFIXES)
    if title is not None:
        used.add(title.name)
    text = _named(cols, used, _TEXT_NAMES, _TEXT_SUFFIXES)
    if text is not None:
        used.add(text.name)
    link = _url_column(cols, used)
    if link is not None:
        used.add(link.name)
    extras = _extra_columns(cols, used, has_samples=bool(samples))

    out = _header(source)
    if title is None:
        out.append("# check: no event-type column found; to title each event from a column, write")
        out.append("# a template such as \"{{ event_type | replace('_', ' ') | capitalize }}\"")
        out.append(_line("title", "Activity", "a Jinja2 template over the columns"))
    else:
        template = f"{{{{ {title.ref} | replace('_', ' ') | capitalize }}}}"
        out.append(_line("title", template, "a Jinja2 template over the columns"))
    out += ["", *_customer_table(cols, customer, full_name)]
    out += ["", *_thread_table(thread)]
    out += ["", *_timestamp_table(stamp)]
    out += ["", *_external_id_table(key, source)]
    out += ["", "# [limits]", _line("too_long", "reject", _TOO_LONG_NOTE, off=True)]
    out += _components(text, link, extras)
    sample = (extras or [title or key.column])[0]
    out += _examples(sample, key.column, stamp.column)
    return "\n".join(out) + "\n"


def write_starter(
    source: str, output: str, *, force: bool = False, sample_rows: int = DEFAULT_SAMPLE_ROWS
) -> str:
    """Write a starter mapping for the file `source` (CSV, JSON Lines, Parquet) to `output`.

    The guesses use the header and the well-formed rows among the first
    `sample_rows` records (rows the reader flags with a problem are skipped). An
    existing `output` is kept unless `force`.

    >>> text = write_starter("data/sample_activity.csv", "mapping.toml")  # doctest: +SKIP
    >>> text.splitlines()[0]  # doctest: +SKIP
    '# Starter mapping written by `backfill init` from data/sample_activity.csv.'
    """
    columns = read_header(source)
    samples = [row.values for row in islice(read_rows(source), sample_rows) if row.problem is None]
    text = starter_mapping(columns, samples, source=source)
    try:
        # "x" refuses an existing file atomically, so a file that appears meanwhile is kept.
        with open(output, "w" if force else "x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        raise ConfigError(f"{output} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {output} ({exc.strerror})") from None
    return text


# --- guesses -------------------------------------------------------------------------


def _words(name: str) -> str:
    """`Event ID`, `eventId`, `Événement_id` -> `event_id`, `evenement_id`."""
    text = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _named(
    cols: Sequence[_Column],
    used: set[str],
    names: Sequence[str],
    suffixes: Sequence[str] = (),
) -> _Column | None:
    ranked = [
        (rank, c.position, c)
        for c in cols
        if c.name not in used and (rank := c.rank(names, suffixes)) is not None
    ]
    return min(ranked, key=lambda item: item[:2])[2] if ranked else None


def _key_column(cols: Sequence[_Column]) -> _Guess:
    ranked = []
    for c in cols:
        rank = c.rank(_KEY_NAMES, _KEY_SUFFIXES)
        if rank is not None:
            values = [v.strip() for v in c.values]
            unique = all(values) and len(set(values)) == len(values)
            ranked.append((not unique, rank, c.position, c))
    if not ranked:
        return _Guess(
            cols[0], "no obvious unique id column; choose key columns that identify a row"
        )
    repeats, _, _, best = min(ranked, key=lambda item: item[:3])
    if repeats:
        return _Guess(
            best,
            f"values of {_toml_string(best.name)} repeat or are empty in the first rows; "
            "choose key columns that identify a row",
        )
    return _Guess(best)


def _customer(cols: Sequence[_Column]) -> _Customer:
    ranked = []
    for c in cols:
        looks = c.mostly(lambda v: _EMAIL.fullmatch(v) is not None)
        if "email" in c.words.replace("_", "") and looks is not False:
            rank = 0 if _CUSTOMERISH & set(c.words.split("_")) else 1
        elif looks:
            rank = 2
        else:
            continue
        ranked.append((rank, c.position, c))
    if ranked:
        best = min(ranked, key=lambda item: item[:2])
        check = "" if best[0] < 2 else "chosen because its values look like email addresses"
        return _Customer("email", _Guess(best[2], check))
    for c in cols:
        if c.mostly(lambda v: _PLAIN_CUSTOMER_ID.fullmatch(v) is not None):
            return _Customer("customer_id", _Guess(c, "its values look like Plain customer ids"))
    named = _named(cols, set(), _CUSTOMER_ID_NAMES) or _named(cols, set(), _EXTERNAL_ID_NAMES)
    if named is not None:
        if named.words in _CUSTOMER_ID_NAMES:
            return _Customer("customer_id", _Guess(named, "no email column; Plain customer ids?"))
        check = "no email column; is this the customer's external id in Plain?"
        return _Customer("external_id", _Guess(named, check))
    return _Customer(
        "email",
        _Guess(
            cols[0],
            "no email column found; name the customer's column: email, external_id or customer_id",
        ),
    )


def _parses_as_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _timestamp_column(cols: Sequence[_Column]) -> _Guess:
    ranked = []
    for c in cols:
        rank = c.rank(_TIME_NAMES, _TIME_SUFFIXES)
        if rank is not None:
            parses = c.mostly(_parses_as_timestamp) is not False
            ranked.append((not parses, rank, c.position, c))
    if ranked:
        fails, _, _, best = min(ranked, key=lambda item: item[:3])
        if fails:
            return _Guess(
                best,
                f"values of {_toml_string(best.name)} do not look like ISO 8601 timestamps "
                "in the first rows",
            )
        return _Guess(best)
    for c in cols:
        if c.mostly(_parses_as_timestamp):
            return _Guess(c, "chosen because its values look like timestamps")
    return _Guess(
        cols[0], "no timestamp-like column; name the column holding when each event happened"
    )


def _url_column(cols: Sequence[_Column], used: set[str]) -> _Column | None:
    named = _named(cols, used, _URL_NAMES, _URL_SUFFIXES)
    if named is not None:
        return named
    for c in cols:
        if c.name not in used and c.mostly(lambda v: _URL.match(v) is not None):
            return c
    return None


def _extra_columns(cols: Sequence[_Column], used: set[str], *, has_samples: bool) -> list[_Column]:
    # Without sample rows there is nothing to judge length by: take the first ones.
    short = [
        c
        for c in cols
        if c.name not in used
        and (not has_samples or (c.filled and max(map(len, c.filled)) <= MAX_EXTRA_LENGTH))
    ]
    return short[:MAX_EXTRA_COLUMNS]


def _namespace(source: str) -> str:
    """A valid namespace from the file name: `exports/Sign-ups 2024.csv` -> `sign-ups-2024`."""
    name = PurePath(re.split(r"[\\/]", source)[-1]).stem
    name = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    name = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-")
    if not name:
        return "job"
    if not name[0].isalnum():
        name = f"job-{name}"
    return name[:MAX_NAMESPACE]


# --- writing -------------------------------------------------------------------------

_TOO_LONG_NOTE: Final = 'or "truncate": a value over its Plain limit is cut, not refused'


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped.

    Escaped text holds no control character, so it is also safe inside a comment.
    """
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _jinja_string(text: str) -> str:
    """A Jinja string literal; Jinja reads escapes as Python's unicode-escape does."""
    out = []
    for ch in text:
        if ch in "'\\":
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            # Raw line breaks would be normalised to \n by Jinja's lexer.
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def _comment_text(text: str) -> str:
    """`text` for a comment, control characters (not allowed in TOML comments) escaped."""
    return "".join(f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)


def _line(key: str, value: str, comment: str = "", *, off: bool = False) -> str:
    """`key = "value"`, commented out when `off`, with `comment` aligned after it."""
    line = f"{'# ' if off else ''}{key} = {_toml_string(value)}"
    return _with_comment(line, comment)


def _with_comment(line: str, comment: str) -> str:
    if not comment:
        return line
    return f"{line.ljust(_COMMENT_AT - 1)} # {comment}"


def _check(note: str) -> list[str]:
    return [f"# check: {note}"] if note else []


def _header(source: str) -> list[str]:
    shown = _comment_text(source)
    command = _comment_text(shlex.quote(source))
    return [
        f"# Starter mapping written by `backfill init` from {shown}.",
        "#",
        "# Each value below is a guess from the header and the first rows of that file.",
        '# Read it through and settle every line marked "check:". Above all, the key',
        "# columns ([external_id]) must identify a row: they decide each event's identity,",
        "# so changing them after events were sent sends those rows again.",
        "# Templates are Jinja2 over the columns: {{ column }}, or {{ row['column name'] }}",
        "# for names that are not identifiers. Then try it on the source:",
        "#",
        f"#   backfill validate {command} --mapping <this file>",
        f"#   backfill preview {command} --mapping <this file>",
        "",
    ]


def _customer_table(
    cols: Sequence[_Column], customer: _Customer, full_name: _Column | None
) -> list[str]:
    chosen = customer.guess.column.name
    external = _named(cols, {chosen}, _EXTERNAL_ID_NAMES)
    plain_id = _named(cols, {chosen}, _CUSTOMER_ID_NAMES)
    candidates = {
        "email": ("customer_email", "the column holding the customer's email"),
        "external_id": (
            external.name if external else "account_id",
            "or the customer's external id column",
        ),
        "customer_id": (
            plain_id.name if plain_id else "plain_id",
            "or a Plain customer id column (c_...)",
        ),
    }
    out = ["[customer]", *_check(customer.guess.check)]
    for field, (example, comment) in candidates.items():
        if field == customer.field:
            out.append(_line(field, chosen, comment))
        else:
            out.append(_line(field, example, comment, off=True))
    by_note = "which of those identifies the customer, when several are given"
    out.append(_line("identify_by", customer.field, by_note, off=True))
    name = full_name.name if full_name else "customer_name"
    out.append(_line("full_name", name, "for --upsert-customers (with email)", off=True))
    return out


def _thread_table(thread: _Column | None) -> list[str]:
    if thread is None:
        return [
            _with_comment("# [thread]", "rows with a thread id become thread events"),
            _line("id", "thread_id", off=True),
        ]
    return [
        f"# check: {_toml_string(thread.name)} looks like a Plain thread id; uncomment to send",
        "# rows that have one as thread events (the others stay customer events)",
        "# [thread]",
        _line("id", thread.name, off=True),
    ]


def _timestamp_table(stamp: _Guess) -> list[str]:
    naive = [
        v
        for v in stamp.column.filled
        if _parses_as_timestamp(v) and datetime.fromisoformat(v).tzinfo is None
    ]
    zone_note = "IANA zone for values without an offset"
    return [
        "[timestamp]",
        *_check(stamp.check),
        _line("column", stamp.column.name),
        *_check("some values have no UTC offset; they are read in this zone" if naive else ""),
        _line("timezone", "UTC", zone_note),
    ]


def _external_id_table(key: _Guess, source: str) -> list[str]:
    entry = f'[{{ column = {_toml_string(key.column.name)}, type = "string" }}]'
    return [
        "[external_id]",
        _line(
            "namespace",
            _namespace(source),
            "this job's name: letters, digits, . _ - (1-64, starting alphanumeric)",
        ),
        *_check(key.check),
        "# types: string (exactly the text: keeps leading zeros), int, decimal, timestamp",
        f"key = {entry}",
    ]


def _component(
    kind: str, fields: Sequence[tuple[str, str, str]], *, off: bool = False
) -> list[str]:
    return [
        "# [[components]]" if off else "[[components]]",
        _line("type", kind, off=off),
        *(_line(k, v, c, off=off) for k, v, c in fields),
    ]


def _components(text: _Column | None, link: _Column | None, extras: Sequence[_Column]) -> list[str]:
    out: list[str] = []
    if text is not None:
        fields = [("text", f"{{{{ {text.ref} }}}}", "markdown"), ("when", text.ref, _WHEN_NOTE)]
        out += ["", *_component("text", fields)]
    if link is not None:
        fields = [
            ("url", f"{{{{ {link.ref} }}}}", ""),
            ("label", "Open link", ""),
            ("when", link.ref, ""),
        ]
        out += ["", *_component("link_button", fields)]
    for c in extras:
        # A name with braces would read as Jinja syntax in the label: show the value alone.
        label = c.name.strip() if c.name.isprintable() and not set("{}") & set(c.name) else ""
        value = f"{{{{ {c.ref} }}}}"
        fields = [
            ("text", f"{label}: {value}" if label else value, ""),
            ("size", "S", ""),
            ("color", "MUTED", ""),
            ("when", c.ref, ""),
        ]
        out += ["", *_component("plain_text", fields)]
    if not out:
        out = ["", "# check: no column left for components; see the examples below"]
    return out


_WHEN_NOTE: Final = "leave the component out when false/empty"


def _examples(sample: _Column, key: _Column, stamp: _Column) -> list[str]:
    """Commented examples of every component type, using this source's columns."""
    value = f"{{{{ {sample.ref} }}}}"
    examples: list[tuple[str, list[tuple[str, str, str]]]] = [
        (
            "text",
            [
                ("text", f"**{value}**", "markdown"),
                ("size", "M", "S M L"),
                ("color", "NORMAL", "NORMAL MUTED SUCCESS WARNING ERROR"),
                ("when", sample.ref, "any component: leave it out when false/empty"),
                ("too_long", "truncate", "any component: cut over-long values"),
            ],
        ),
        (
            "plain_text",
            [("text", value, "no markdown"), ("size", "S", "S M L"), ("color", "MUTED", "")],
        ),
        ("badge", [("label", value, ""), ("color", "BLUE", "GREY GREEN YELLOW RED BLUE")]),
        (
            "link_button",
            [
                ("url", f"https://admin.example.com/events/{{{{ {key.ref} }}}}", ""),
                ("label", "Open in admin", ""),
            ],
        ),
        ("copy_button", [("value", f"{{{{ {key.ref} }}}}", ""), ("tooltip", "Copy id", "")]),
        ("divider", [("spacing", "M", "XS S M L XL")]),
        ("spacer", [("size", "S", "XS S M L XL")]),
        ("date_time", [("value", f"{{{{ {stamp.ref} }}}}", "a timestamp")]),
        (
            "workflow_button",
            [("label", "Review", ""), ("workflow_key", "review", 'or workflow_id = "..."')],
        ),
        ("user", [("email", "teammate@example.com", 'a Plain user; or user_id = "u_..."')]),
    ]
    out = [
        "",
        "# More component types: uncomment and adapt. Every component also takes `when`",
        '# and `too_long = "truncate"` (the default, "reject", makes the row invalid).',
    ]
    for kind, fields in examples:
        out += ["#", *_component(kind, fields, off=True)]
    out += [
        "#",
        "# [[components]]",
        _line("type", "row", "main and aside: lists of the other types", off=True),
        "# [[components.main]]",
        _line("type", "text", off=True),
        _line("text", value, off=True),
        "# [[components.aside]]",
        _line("type", "badge", off=True),
        _line("label", f"{{{{ {key.ref} }}}}", off=True),
        _line("color", "GREY", off=True),
    ]
    return out
