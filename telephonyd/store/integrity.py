"""Checks of a SQLite store file before it is opened, so a damaged store is never replaced silently.

SQLite opens a missing or empty (0-byte) file as a new, empty database. For the daemon's store that
would drop every acknowledged but undelivered outcome without a word, so the file is judged first:

- **Did a store exist here?** The daemon writes a marker file beside the store
  (``<store>.created``, JSON: when, which file) once its schema is in place. A missing or
  empty store file with that marker (or with a non-empty ``-wal`` file beside it) held a store
  that is now gone: `StoreDamaged`, never a fresh start. Without the marker (first start, or a
  state directory removed on purpose) a new store is created.
- **Is it a SQLite file?** The first 16 bytes must be SQLite's magic string; a shorter or foreign
  file is damaged.
- **Is it whole?** ``PRAGMA quick_check`` (`quick_check`) reports torn or missing pages (a
  half-truncated file, garbage in a page).
- **Can SQLite work there?** The directory must be writable: SQLite keeps its ``-wal`` and ``-shm``
  files beside the store.

Every refusal is permanent (``retryable=False``): the daemon exits with code 78 and leaves the file
as it is for ``telephonyd db check`` / ``telephonyd db recover`` (see docs/operations.md).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..errors import StoreDamaged, StoreError, StoreMissing

SQLITE_MAGIC = b"SQLite format 3\x00"
MARKER_SUFFIX = ".created"
#: Problems of ``quick_check`` named in the error (it lists up to 100).
_PROBLEMS_SHOWN = 3


def marker_path(path: Path) -> Path:
    """The marker beside the store file ``path``: ``<path>.created``."""
    return path.with_name(path.name + MARKER_SUFFIX)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker's content for store file ``path``; None when there is no marker."""
    marker = marker_path(path)
    try:
        text = marker.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {marker}: {exc.strerror}", retryable=False) from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def write_marker(path: Path) -> None:
    """Record that the store ``path`` exists (idempotent; written once, atomically)."""
    marker = marker_path(path)
    if marker.exists():
        return
    tmp = marker.with_name(marker.name + ".tmp")
    data = {"store": str(path), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "note": "telephonyd refuses to start when this store is missing or empty; see docs/operations.md"}
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


def _held_a_store(path: Path) -> str | None:
    """Why we know ``path`` held a store (marker or WAL), or None."""
    marker = read_marker(path)
    if marker is not None:
        return f"the store was created at {marker.get('created_at', '?')} (marker {marker_path(path)})"
    try:
        if wal_path(path).stat().st_size > 0:
            return f"its write-ahead log {wal_path(path)} still holds data"
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot look at {wal_path(path)}: {exc.strerror}", retryable=False) from None
    return None


def preflight(path: Path, *, create: bool) -> bool:
    """Judge the store file ``path`` before SQLite opens it; True when a new store will be created.

    ``create``: the daemon may create a store where there is none; the CLI (False) gets
    `StoreMissing` instead. Raises `StoreDamaged` for a missing, empty or foreign file that held the
    store, `StoreError` (``retryable=False``) for a state directory that cannot be created or
    written. Reads at most the file's first 100 bytes.
    """
    directory = path.parent
    if not directory.exists():
        if not create:
            raise StoreMissing(f"no store at {path}: its directory {directory} does not exist")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {directory}: {exc.strerror}",
                             retryable=False) from None
    if not directory.is_dir():
        raise StoreError(f"the store's directory {directory} is not a directory", retryable=False)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(f"the state directory {directory} is not writable (SQLite keeps its -wal and -shm "
                         "files beside the store)", retryable=False)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError as exc:
        raise StoreError(f"cannot look at the store {path}: {exc.strerror}", retryable=False) from None
    if size is None or size == 0:
        held = _held_a_store(path)
        state = "missing" if size is None else "empty (0 bytes)"
        if held is not None:
            raise StoreDamaged(f"the store {path} is {state} but {held}; refusing to start with a new, empty "
                               "store. Restore it from a backup or run `telephonyd db recover` "
                               "(see docs/operations.md)", path=str(path))
        if not create:
            raise StoreMissing(f"no store at {path}" + ("" if size is None else " (empty file)")
                               + "; the daemon creates it at its first start")
        return True
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}", retryable=False) from None
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        raise StoreDamaged(f"the store {path} is not a SQLite database (its header is {header[:16]!r}); it is "
                           "kept as it is: restore it from a backup or run `telephonyd db recover`",
                           path=str(path))
    return False


def quick_check(path: Path, timeout_s: float = 30.0) -> list[str]:
    """``PRAGMA quick_check`` on the store file ``path``: [] when whole, else SQLite's problems.

    Raises `StoreDamaged` when SQLite cannot read the file as a database at all, `StoreError`
    (retryable) when another process holds a lock longer than ``timeout_s``. O(size of the file).
    """
    try:
        conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path}: {exc}", retryable=False) from None
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"the store {path} is locked: {exc}", retryable=True) from None
        raise StoreDamaged(f"the store {path} is damaged: {exc}", path=str(path)) from None
    except sqlite3.DatabaseError as exc:
        raise StoreDamaged(f"the store {path} is damaged: {exc}", path=str(path)) from None
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


def check_whole(path: Path) -> None:
    """Raise `StoreDamaged` naming the first problems when `quick_check` finds any."""
    problems = quick_check(path)
    if problems:
        shown = "; ".join(problems[:_PROBLEMS_SHOWN]) + (f" (and {len(problems) - _PROBLEMS_SHOWN} more)"
                                                         if len(problems) > _PROBLEMS_SHOWN else "")
        raise StoreDamaged(f"the store {path} is damaged (quick_check: {shown}); it is kept as it is: restore "
                           "it from a backup or run `telephonyd db recover`", path=str(path))
