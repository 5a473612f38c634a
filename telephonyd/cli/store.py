"""``telephonyd db upgrade|check|recover``: the store's schema, integrity and recovery.

    telephonyd db check [--json]                  # is the store there and whole? exit 0 yes, 1 no
    telephonyd db recover [--output PATH] [--no-shell] [--json]

``db recover`` (SQLite only; stop the daemon first) reads what the store still holds into a new
file, checks it, then sets the damaged file aside as ``<store>.damaged-<UTC time>`` (never deleted)
and puts the recovered one in its place. With ``--output`` the recovered copy is written there and
the store is left alone. See docs/operations.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from ..errors import StoreError


def register(cli: click.Group) -> None:
    """Add the ``db`` command group to ``cli``."""
    cli.add_command(db)


@click.group()
def db() -> None:
    """The store's schema, integrity check and recovery."""


def _sqlite_file(obj: Any) -> Path | None:
    url = make_url(obj.config.store.url.get_secret_value())
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Any) -> None:
    """Create missing tables and columns of an existing store (also done automatically at start)."""
    from .helpers import echo, run_async

    async def upgrade() -> None:
        store = await obj.open_store()
        await store.close()

    run_async(upgrade())
    echo("schema is up to date")


@db.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def db_check(obj: Any, as_json: bool) -> None:
    """Check the store: present, a SQLite file, whole (PRAGMA quick_check); MariaDB: reachable.

    Exit 0 when it is usable, 1 when not (the reason is printed)."""
    from .helpers import echo, echo_json, run_async
    from ..store.integrity import check_whole, preflight, read_marker

    file = _sqlite_file(obj)
    result: dict[str, Any] = {"store": str(file) if file else "mysql", "ok": True}
    try:
        if file is not None:
            preflight(file, create=False)
            check_whole(file)
            result["size_bytes"] = file.stat().st_size
            result["marker"] = read_marker(file)
        run_async(_open_and_close(obj))
    except (StoreError, click.ClickException) as exc:
        result.update(ok=False, error=str(exc.message if isinstance(exc, click.ClickException) else exc))
    if as_json:
        echo_json(result)
    elif result["ok"]:
        echo(f"store {result['store']}: ok")
    else:
        echo(f"store {result['store']}: {result['error']}", err=True)
    if not result["ok"]:
        click.get_current_context().exit(1)


async def _open_and_close(obj: Any) -> None:
    store = await obj.open_store()
    await store.close()


@db.command("recover")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the recovered store here and leave the store as it is.")
@click.option("--no-shell", is_flag=True, help="Salvage with Python's sqlite3 even when the sqlite3 shell is there.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def db_recover(obj: Any, output: Path | None, no_shell: bool, as_json: bool) -> None:
    """Recover a damaged SQLite store into a new file, keeping the damaged one (stop the daemon first)."""
    from .helpers import echo, echo_json
    from ..store.integrity import marker_path, write_marker
    from ..store.recover import recover_into, set_aside

    file = _sqlite_file(obj)
    if file is None:
        raise click.ClickException("db recover works on a SQLite store; MariaDB/MySQL has its own tools "
                                   "(mariadb-check, backups)")
    if not file.exists() and not marker_path(file).exists():
        raise click.ClickException(f"no store at {file}: nothing to recover")
    target = output or file.with_name(file.name + ".recovered")
    try:
        recovery = asyncio.run(asyncio.to_thread(recover_into, file, target, use_shell=not no_shell))
    except (StoreError, OSError) as exc:
        raise click.ClickException(f"recovery failed: {exc}") from None
    result: dict[str, Any] = {"method": recovery.method, "tables": recovery.tables, "problems": recovery.problems,
                              "recovered": str(target)}
    if output is None:
        kept = set_aside(file) if file.exists() else None
        target.rename(file)
        write_marker(file)
        result.update(recovered=str(file), damaged_kept_as=str(kept) if kept else None)
    if as_json:
        echo_json(result)
        return
    echo(f"recovered with {recovery.method} into {result['recovered']}")
    for table, rows in sorted(recovery.tables.items()):
        echo(f"  {table}: {rows} rows")
    for problem in recovery.problems:
        echo(f"  problem: {problem}")
    if output is None and result["damaged_kept_as"]:
        echo(f"the damaged store is kept as {result['damaged_kept_as']}; start the daemon again")
    elif output is None:
        echo("there was no store file: a new, empty store is in place; start the daemon again")
