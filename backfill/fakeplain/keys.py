"""API keys of the fake Plain: what each may do and which workspace it writes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ALL_PERMISSIONS: Final = frozenset(
    {
        "customerEvent:create",
        "threadEvent:create",
        "customer:create",
        "customer:edit",
        "customer:read",
    }
)
DEFAULT_WORKSPACE_ID: Final = "w_01FAKEWORKSPACE0000000000"
DEFAULT_API_KEY: Final = "test-key"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What an API key may do, and which workspace (and so which rate-limit budget) it uses."""

    permissions: frozenset[str] = ALL_PERMISSIONS
    workspace_id: str = DEFAULT_WORKSPACE_ID


def parse_api_key(text: str) -> tuple[str, ApiKey]:
    """`KEY` (every permission) or `KEY=PERM,PERM` (only those), as the CLI takes them.

    >>> parse_api_key("ro=customer:read")[1].permissions
    frozenset({'customer:read'})
    """
    key, sep, permissions = text.partition("=")
    if not sep:
        return key, ApiKey()
    return key, ApiKey(
        permissions=frozenset(p.strip() for p in permissions.split(",") if p.strip())
    )
