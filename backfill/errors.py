"""The errors of plain-backfill: one tree, every message says what, where and the fix.

```
BackfillError
  ConfigError        bad option or environment value
  MappingError       the mapping file (file, key, column)
  SourceError        a source file cannot be read at all (file, line)
  LedgerError        the ledger cannot be opened, migrated or used
  LedgerBusy         another live run holds the ledger (exit 6)
  PlainError(retryable)
    AuthError        bad or under-privileged key, wrong workspace (exit 4)
    RateLimited      HTTP 429; wait for the window to reset
    Rejected         Plain refused the event (validation, unknown customer...)
    Transient        5xx, timeouts, dropped connections
      Unreachable    no answer for longer than the outage limit (exit 5)
```

Context is keyword-only. This module imports nothing from `backfill`. Messages
never contain the API key. `ExitCode` is the one table of exit codes every command uses.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How a command ends (later work adds codes, never changes these)."""

    #: Every row ended delivered, already_existed or duplicate_in_source.
    OK = 0
    #: Finished, but some rows are invalid, rejected or retryable.
    FAILED_ROWS = 1
    #: Usage, mapping, source-file or ledger error: nothing (more) sent.
    USAGE = 2
    #: Stopped by `--max-failures`.
    MAX_FAILURES = 3
    #: Authentication or permission failure.
    AUTH = 4
    #: Plain unreachable longer than the outage limit.
    UNREACHABLE = 5
    #: Rows are claimed by another live run of the same job.
    BUSY = 6
    #: Interrupted by SIGINT / SIGTERM; the ledger is consistent.
    SIGINT = 130
    SIGTERM = 143


class BackfillError(Exception):
    """Base of every error the job reports to its user."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(BackfillError):
    """An option, environment variable or settings value is not usable."""


class MappingError(BackfillError):
    """The mapping file is invalid; names the file and the key (and column)."""

    def __init__(
        self, message: str, *, file: str = "", key: str = "", column: str | None = None
    ) -> None:
        self.file = file
        self.key = key
        self.column = column
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(BackfillError):
    """A source file cannot be read at all (missing, empty, no header...)."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        self.file = file
        self.line = line
        #: The message without its `file:line: ` prefix.
        self.reason = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


class LedgerError(BackfillError):
    """The ledger cannot be opened, migrated or written."""


class LedgerBusy(BackfillError):
    """Another live run holds the ledger (or the rows this run needs)."""

    exit_code = ExitCode.BUSY


class PlainError(BackfillError):
    """Plain (or the network to it) answered something other than success."""

    retryable = False

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class AuthError(PlainError):
    """The key is rejected or lacks a permission: every further request would fail too."""

    exit_code = ExitCode.AUTH


class RateLimited(PlainError):
    """HTTP 429: wait until the window resets; not a failed attempt."""

    retryable = True

    def __init__(self, message: str, *, wait_s: float, status: int | None = 429) -> None:
        self.wait_s = wait_s
        super().__init__(message, code="RATE_LIMITED", status=status)


class Rejected(PlainError):
    """Plain refused this event; sending it again would fail the same way."""

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, field: str = ""
    ) -> None:
        self.field = field
        super().__init__(message, code=code, status=status)


class Transient(PlainError):
    """A failure that may pass: 5xx, timeouts, dropped connections."""

    retryable = True


class Unreachable(Transient):
    """Plain gave no answer for longer than the outage limit: the run stops, rows stay retryable."""

    exit_code = ExitCode.UNREACHABLE
