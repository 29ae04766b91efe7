"""The component table: every component type a mapping can write, and Plain's field limits.

Each type names its `EventComponentInput` field, its fields' GraphQL paths and the
checks made offline: required fields, groups of which exactly one is given, the
schema enum a value must belong to, and the longest text Plain accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

FieldKind = Literal["text", "url", "enum", "timestamp"]
#: What to do with a value longer than its field's limit.
Policy = Literal["reject", "truncate"]

MAX_TEXT: Final = 10_000
MAX_LABEL: Final = 500
MAX_COPY_VALUE: Final = 1_000


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a component: its mapping key, GraphQL path and offline checks.

    `gql` may be a dotted path for fields nested in an input object
    (``userIdentifier.emailAddress``).
    """

    name: str
    gql: str
    kind: FieldKind
    required: bool = False
    max_len: int | None = None
    enum: str = ""


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A component type: its `EventComponentInput` field, its fields and their rules.

    `one_of` lists groups of fields of which exactly one must be given (a workflow
    id or key; a user id or email).
    """

    gql: str
    fields: tuple[FieldSpec, ...]
    one_of: tuple[tuple[str, ...], ...] = ()


def _text(name: str, gql: str, max_len: int, *, required: bool = False) -> FieldSpec:
    return FieldSpec(name, gql, "text", required=required, max_len=max_len)


def _enum(name: str, gql: str, enum: str, *, required: bool = False) -> FieldSpec:
    return FieldSpec(name, gql, "enum", required=required, enum=enum)


#: Every component type the mapping knows, keyed by the `type` a mapping writes.
#: `row` is special: its `main` and `aside` hold lists of the other types.
COMPONENTS: Final[dict[str, ComponentSpec]] = {
    "text": ComponentSpec(
        "componentText",
        (
            _text("text", "text", MAX_TEXT, required=True),
            _enum("size", "textSize", "ComponentTextSize"),
            _enum("color", "textColor", "ComponentTextColor"),
        ),
    ),
    "plain_text": ComponentSpec(
        "componentPlainText",
        (
            _text("text", "plainText", MAX_TEXT, required=True),
            _enum("size", "plainTextSize", "ComponentPlainTextSize"),
            _enum("color", "plainTextColor", "ComponentPlainTextColor"),
        ),
    ),
    "divider": ComponentSpec(
        "componentDivider", (_enum("spacing", "dividerSpacingSize", "ComponentDividerSpacingSize"),)
    ),
    "spacer": ComponentSpec(
        "componentSpacer", (_enum("size", "spacerSize", "ComponentSpacerSize", required=True),)
    ),
    "link_button": ComponentSpec(
        "componentLinkButton",
        (
            FieldSpec("url", "linkButtonUrl", "url", required=True),
            _text("label", "linkButtonLabel", MAX_LABEL, required=True),
        ),
    ),
    "workflow_button": ComponentSpec(
        "componentWorkflowButton",
        (
            _text("label", "workflowButtonLabel", MAX_LABEL, required=True),
            _text("workflow_id", "workflowButtonWorkflowIdentifier.workflowId", MAX_LABEL),
            _text("workflow_key", "workflowButtonWorkflowIdentifier.workflowKey", MAX_LABEL),
        ),
        one_of=(("workflow_id", "workflow_key"),),
    ),
    "badge": ComponentSpec(
        "componentBadge",
        (
            _text("label", "badgeLabel", MAX_LABEL, required=True),
            _enum("color", "badgeColor", "ComponentBadgeColor"),
        ),
    ),
    "copy_button": ComponentSpec(
        "componentCopyButton",
        (
            _text("value", "copyButtonValue", MAX_COPY_VALUE, required=True),
            _text("tooltip", "copyButtonTooltipLabel", MAX_LABEL),
        ),
    ),
    "date_time": ComponentSpec(
        "componentDateTime", (FieldSpec("value", "dateTimeIso8601", "timestamp", required=True),)
    ),
    "user": ComponentSpec(
        "componentUser",
        (
            _text("user_id", "userIdentifier.userId", MAX_LABEL),
            _text("email", "userIdentifier.emailAddress", MAX_LABEL),
        ),
        one_of=(("user_id", "email"),),
    ),
    "row": ComponentSpec("componentRow", ()),
}
ROW: Final = "row"
