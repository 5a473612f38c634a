"""The package's exception tree.

Every error raised on purpose by telephonyd derives from `TelephonydError`. Whether retrying can help
is a property of the error (`retryable`), not of the place that catches it.
"""

from __future__ import annotations

import asyncio


class TelephonydError(Exception):
    """Root of telephonyd's errors. `retryable` tells whether the same operation may succeed later."""

    retryable: bool = False


class ConfigError(TelephonydError):
    """The configuration is invalid. `path` is the dotted key (``fastagi.listen``) when one is known.

    The CLI maps it to exit code 78 (EX_CONFIG), which systemd's RestartPreventExitStatus honours.
    """

    exit_code = 78

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class ProtocolError(TelephonydError):
    """A peer broke its protocol (AGI, AMI, HTTP body). Permanent for that connection."""


class LimitExceeded(ProtocolError):
    """A peer sent more than a configured limit (line, block, message size) or took too long."""


class StoreError(TelephonydError):
    """The store (SQLite or MariaDB/MySQL) failed; a lost connection is retryable.

    ``retryable=False`` marks an error that waiting cannot fix (a damaged file, an unwritable state
    directory, a refused login): the daemon exits with `exit_code` (78, so systemd does not restart
    it in a loop) instead of retrying.
    """

    retryable = True
    exit_code = 78

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class StoreDamaged(StoreError):
    """The SQLite store file is damaged, empty or missing although it held the store (permanent).

    The file is left as it is for ``telephonyd db recover``. ``path`` is the store file.
    """

    retryable = False

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StoreMissing(StoreError):
    """There is no store yet where the configuration points (the CLI never creates one)."""

    retryable = False


class UpstreamError(TelephonydError):
    """An upstream API failed. `retryable` is set per instance from the reply's class."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a store error replaced.

    A task cancelled while a database driver is mid-statement can see the driver's cleanup fail
    and raise its own error (SQLAlchemy's, aiomysql's) in place of `CancelledError`. A loop that
    catches store errors and goes on would then never stop. Call this first in such a handler:
    it raises `CancelledError` when the current task has a cancellation pending
    (`asyncio.Task.cancelling`, Python 3.11+).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
