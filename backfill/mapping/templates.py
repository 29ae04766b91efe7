"""The Jinja sandbox: mapping templates and `when` expressions, compiled once.

Templates render in a sandboxed, immutable environment where an undefined name is an
error. A bare ``{{ column }}`` and text without template syntax skip Jinja; other
templates remember their renders by the values of the columns they read. The columns a
template reads are found from its syntax tree, so they can be checked against a
source's header before any row is read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from backfill.errors import MappingError

_BARE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\Z")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_SYNTAX = re.compile(r"\{[{%#]")
#: Names a fast path must not take for a column: `row` and Jinja's literals.
_NOT_COLUMNS: Final = frozenset({"row", "true", "false", "none", "True", "False", "None"})

#: What a template renders from: the names `context()` gives.
Context = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template; a bare ``{{ column }}`` skips Jinja entirely."""

    source: str
    key: str
    columns: frozenset[str]
    render: Callable[[Context], str]
    #: For a bare ``{{ column }}``: the column, so callers can read it without a call.
    column: str = ""
    #: Names of Jinja's globals the template reads (`range`, `lipsum`...).
    globals_read: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled `when` expression."""

    source: str
    key: str
    columns: frozenset[str]
    test: Callable[[Context], Any]


def environment() -> SandboxedEnvironment:
    """The one Jinja environment: sandboxed and immutable (a template cannot change the
    row it renders), undefined names are errors."""
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


_GLOBALS: Final = dict(environment().globals)


def compile_template(env: SandboxedEnvironment, source: str, *, file: str, key: str) -> Template:
    """Compile a template once; syntax errors name the mapping key and show the template.

    Rendering takes a context from `context()`. Two fast paths skip Jinja: a bare
    ``{{ column }}`` (the common case) and text with no template syntax at all.
    """
    bare = _BARE.match(source)
    if bare and bare.group(1) not in _NOT_COLUMNS:
        column = bare.group(1)
        return Template(source, key, frozenset({column}), lambda ctx: _text_of(ctx[column]), column)
    if not _SYNTAX.search(source):
        return Template(source, key, frozenset(), lambda ctx: source)
    ast, render = _compile(env, source, file=file, key=key, what="template")
    columns = _columns_of(ast)
    globals_read = frozenset(_free_names(ast) & set(_GLOBALS))
    return Template(source, key, columns, _memoised(ast, columns, render), "", globals_read)


def compile_condition(env: SandboxedEnvironment, source: str, *, file: str, key: str) -> Condition:
    """Compile a `when` expression (Jinja expression syntax, e.g. ``amount != ''``).

    A bare column name (``when = "amount"``) is true when the column is not empty.
    """
    bare = _NAME.match(source.strip())
    if bare and bare.group(0) not in _NOT_COLUMNS:
        column = bare.group(0)
        # Blank counts as empty, as a template that renders blank does.
        return Condition(source, key, frozenset({column}), lambda ctx: _filled(ctx[column]))
    try:
        env.parse("{{ (" + source + ") }}")
    except jinja2.TemplateSyntaxError as exc:
        raise MappingError(
            f"expression syntax error: {exc.message} in {source!r}", file=file, key=key
        ) from None
    ast, render = _compile(
        env, "{% if (" + source + ") %}1{% endif %}", file=file, key=key, what="expression"
    )
    return Condition(source, key, _columns_of(ast), lambda ctx: render(ctx) == "1")


def _filled(value: str) -> bool:
    return bool(value) and not value.isspace()


def context(values: Mapping[str, str]) -> dict[str, Any]:
    """The names a row's templates see: the columns, and `row` (last, so it is always the
    whole row, even in a source with a column named "row"). Jinja's globals are added
    only when Jinja renders."""
    ctx: dict[str, Any] = dict(values)
    ctx["row"] = values
    return ctx


#: Renders remembered per template: titles and labels take few distinct values.
MEMO_SIZE: Final = 2048


def _memoised(
    ast: nodes.Template, columns: frozenset[str], render: Callable[[Context], str]
) -> Callable[[Context], str]:
    """Remember renders by the values of the columns a template reads.

    Only for templates that read nothing but named columns: no globals (`lipsum` is
    random), no `row[...]` with a computed key. The same values then give the same text.
    """
    free = _free_names(ast)
    if free & set(_GLOBALS) or ("row" in free and not _row_lookups_only(ast)):
        # A global (`lipsum` is random; a column may shadow it) or a computed row key.
        return render
    names = tuple(sorted(columns))

    @functools.lru_cache(maxsize=MEMO_SIZE)
    def by_values(values: tuple[str, ...]) -> str:
        return render(context(dict(zip(names, values, strict=True))))

    def cached(ctx: Context) -> str:
        row = ctx["row"]
        try:
            values = tuple(row[name] for name in names)
        except KeyError:
            return render(ctx)  # let Jinja report the missing name
        return by_values(values)

    return cached


def _row_lookups_only(ast: nodes.Template) -> bool:
    """Whether every use of `row` is `row['constant']`."""
    lookups = sum(
        1
        for item in ast.find_all(nodes.Getitem)
        if isinstance(item.node, nodes.Name)
        and item.node.name == "row"
        and isinstance(item.arg, nodes.Const)
    )
    uses = sum(1 for name in ast.find_all(nodes.Name) if name.name == "row")
    return lookups == uses


def _compile(
    env: SandboxedEnvironment, source: str, *, file: str, key: str, what: str
) -> tuple[nodes.Template, Callable[[Context], str]]:
    try:
        ast = env.parse(source)
        compiled = env.from_string(ast)
    except jinja2.TemplateSyntaxError as exc:
        raise MappingError(
            f"{what} syntax error: {exc.message} in {source!r}", file=file, key=key
        ) from None
    root = compiled.root_render_func
    new_context = compiled.new_context

    def render(ctx: Context) -> str:
        # shared=True: the context is used as it is, without Jinja's own copy through a
        # ChainMap of the globals (most of a render's cost).
        return "".join(root(new_context({**_GLOBALS, **ctx}, True)))

    return ast, render


def _columns_of(ast: nodes.Template) -> frozenset[str]:
    """The columns a template must find: names it reads, and `row['name']` lookups.

    Names of Jinja's globals (`range`, `namespace`...) are not required: a column of that
    name is used when the source has one (it shadows the global), the global otherwise.
    """
    names = _free_names(ast) - _NOT_COLUMNS - set(_GLOBALS)
    for item in ast.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "row"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            names.add(item.arg.value)
    return frozenset(names)


def _free_names(ast: nodes.Template) -> set[str]:
    """Names a template reads and does not set itself (loop variables, `set`)."""
    loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
    stored = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return loaded - stored


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else str(value)
