"""Salvaging what a damaged SQLite store still holds into a new file (``telephonyd db recover``).

The damaged file is never written: it (with its ``-wal``) is copied to a work directory first, and
the copy is read. SQLite's own recovery (the ``sqlite3`` shell's ``.recover``, which reads every
page it can and puts rows it cannot place in ``lost_and_found``) is used when the shell is
installed; otherwise a row-by-row salvage with Python's `sqlite3` copies each table's readable rows.
The result is checked (``quick_check``) before it is used.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError
from .integrity import quick_check, wal_path

log = logging.getLogger(__name__)

#: Seconds the ``sqlite3`` shell may take over one recovery.
SHELL_TIMEOUT_S = 3600.0
#: Row-by-row salvage: how many unreadable stretches one table may skip (steps double up to 2**20 rowids).
_MAX_SKIPS = 64


@dataclass
class Recovery:
    """What `recover_into` did: ``method`` (``sqlite3 .recover`` or ``python salvage``), rows per
    table in the new file, ``problems`` met on the way."""

    method: str
    tables: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: bool = False


def recover_into(damaged: Path, output: Path, *, use_shell: bool = True) -> Recovery:
    """Write what ``damaged`` still holds to the new SQLite file ``output`` (which must not exist).

    An empty or missing ``damaged`` gives a new empty database. Raises `StoreError`
    (``retryable=False``) when ``output`` exists or the result fails ``quick_check``.
    """
    if output.exists():
        raise StoreError(f"{output} already exists; give another --output", retryable=False)
    with tempfile.TemporaryDirectory(prefix="telephonyd-recover-", dir=output.parent) as work:
        copy = Path(work) / "damaged.db"
        if damaged.exists():
            shutil.copyfile(damaged, copy)
        else:
            copy.touch()
        if wal_path(damaged).exists():
            shutil.copyfile(wal_path(damaged), wal_path(copy))
        _fit_header_to_file(copy)
        shell = shutil.which("sqlite3") if use_shell else None
        recovery = _shell_recover(shell, copy, output) if shell else None
        if recovery is None or recovery.failed:
            for leftover in (output, wal_path(output), output.with_name(output.name + "-shm")):
                leftover.unlink(missing_ok=True)
            salvaged = _salvage(copy, output)
            if recovery is not None:
                salvaged.problems.insert(0, f"sqlite3 .recover failed, salvaged row by row: {recovery.problems}")
            recovery = salvaged
    _finish(output)
    problems = quick_check(output)
    if problems:
        raise StoreError(f"the recovered file {output} is not whole either: {problems[:3]}", retryable=False)
    recovery.tables = _row_counts(output)
    return recovery


def _shell_recover(shell: str, source: Path, output: Path) -> Recovery:
    recovery = Recovery("sqlite3 .recover")
    if source.stat().st_size == 0:
        return recovery  # nothing to read; _finish makes the empty database
    dump = subprocess.run([shell, str(source), ".recover"], capture_output=True, timeout=SHELL_TIMEOUT_S)
    if dump.stderr.strip():
        recovery.problems.append(dump.stderr.decode(errors="replace").strip()[:2000])
    if dump.returncode != 0 or b"INSERT" not in dump.stdout:
        # Some builds of the shell lack what .recover needs (sqlite_dbpage) and answer
        # "SQL logic error" with an empty script.
        recovery.failed = True
        return recovery
    load = subprocess.run([shell, str(output)], input=dump.stdout, capture_output=True, timeout=SHELL_TIMEOUT_S)
    if load.returncode != 0 or load.stderr.strip():
        recovery.problems.append(load.stderr.decode(errors="replace").strip()[:2000])
    return recovery


def _salvage(source: Path, output: Path) -> Recovery:
    recovery = Recovery("python salvage")
    if source.stat().st_size == 0:
        return recovery
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    dst = sqlite3.connect(str(output), isolation_level=None)
    try:
        try:
            schema = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                                 "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'").fetchall()
        except sqlite3.DatabaseError as exc:
            recovery.problems.append(f"schema unreadable: {exc}")
            return recovery
        for kind, name, sql in schema:
            try:
                dst.execute(sql)
            except sqlite3.DatabaseError as exc:
                recovery.problems.append(f"{kind} {name}: {exc}")
        for kind, name, _sql in schema:
            if kind == "table":
                _copy_table(src, dst, name, recovery)
    finally:
        src.close()
        dst.close()
    return recovery


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, recovery: Recovery) -> None:
    """Copy the readable rows of ``table``; past an unreadable stretch, seek on by rowid in
    growing steps (a missing page hides a range of rowids)."""
    quoted = '"' + table.replace('"', '""') + '"'
    last: int | None = None
    step, skips, first_gap, error = 1, 0, None, ""
    dst.execute("BEGIN")
    try:
        while skips <= _MAX_SKIPS:
            where, params = ("WHERE rowid > ?", (last,)) if last is not None else ("", ())
            try:
                for row in src.execute(f"SELECT rowid, * FROM {quoted} {where} ORDER BY rowid", params):  # noqa: S608
                    last, step = row[0], 1
                    marks = ", ".join("?" * (len(row) - 1))
                    dst.execute(f"INSERT OR IGNORE INTO {quoted} VALUES ({marks})", row[1:])  # noqa: S608
                break
            except sqlite3.DatabaseError as exc:
                skips += 1
                first_gap = last if first_gap is None else first_gap
                error = str(exc)
                last = (last or 0) + step
                step = min(step * 2, 1 << 20)
    finally:
        dst.execute("COMMIT")
    if skips:
        recovery.problems.append(f"table {table}: rows unreadable after rowid {first_gap} ({error}); "
                                 f"{skips} stretches skipped")


def _fit_header_to_file(copy: Path) -> None:
    """A truncated file still claims its old size in its header (bytes 28-31, pages), which makes
    SQLite call even its first pages malformed; on the work copy, claim what is there."""
    size = copy.stat().st_size
    if size < 100:
        return
    with open(copy, "r+b") as file:
        header = file.read(100)
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512:
            return
        pages = size // page_size
        if 0 < pages < int.from_bytes(header[28:32], "big"):
            file.seek(28)
            file.write(pages.to_bytes(4, "big"))


def _finish(output: Path) -> None:
    """Make ``output`` a WAL-mode database even when nothing was recovered into it."""
    conn = sqlite3.connect(str(output), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # writes the header of an empty file too
    finally:
        conn.close()


def _row_counts(path: Path) -> dict[str, int]:
    # Read-write, so closing the last connection checkpoints the WAL into the file and removes it
    # before the file is renamed into place.
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}  # noqa: S608
    finally:
        conn.close()


def set_aside(path: Path, stamp: str | None = None) -> Path:
    """Rename the store ``path`` (and its ``-wal``/``-shm``) to ``<path>.damaged-<UTC time>``; the
    new name of the main file is returned (kept for later study, never deleted)."""
    stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(kept.with_name(kept.name + suffix))
    return kept
