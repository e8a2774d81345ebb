"""One error family. Every error the user can cause or meet is an EtlError with a one-line
message; `transient` says whether retrying the same run may succeed."""

from __future__ import annotations


class EtlError(Exception):
    """A failure to report as `Error: <message>` (and a hint), without a traceback."""

    transient = False
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, step: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.step = step


class ConfigError(EtlError):
    """A bad setting, flag or environment variable."""


class UsageError(EtlError):
    """A command given without what it needs (exit 2, like a bad flag)."""

    exit_code = 2


class InputError(EtlError):
    """A source drop that cannot be read: missing directory, file, column, bad encoding."""


class DatabaseUnavailable(EtlError):
    """The server refuses connections or is down: retrying later may succeed."""

    transient = True


class DatabaseError(EtlError):
    """The database refused a statement."""


class LockTimeout(EtlError):
    """Another run holds the warehouse lock."""

    transient = True


class ClusterError(EtlError):
    """The local PostgreSQL cluster could not be created, started or stopped."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like SIGINT (Ctrl-C): the run rolls back and removes its staging."""
