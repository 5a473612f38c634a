"""Group commit of the Ameyo callbacks: many small units of store work share one transaction.

Each unit is a plain function ``work(tx) -> result`` on a `Transaction` (a synchronous SQLAlchemy
connection: the whole transaction is one `Store.write`, on SQLite one hand-over to the store's writer
thread); `GroupCommitter.submit` queues it and returns a future resolved once its transaction has
COMMITTED. The batching is the store's (`store.groupcommit.GroupCommit`, `RetryAlone`, two
transactions handed over at once): whatever is queued (up to ``max_batch``) runs in order in one
transaction, so a later unit sees an earlier one's rows (two identical callbacks in one batch still
meet at the gate). Rows nobody reads back in the same transaction (request log rows, state changes
reported by deliveries) are queued with `Transaction.later` and run as one executemany per
statement before the commit. If the transaction fails, each unit is retried alone, so one bad unit
fails only itself. Units must therefore touch nothing but ``tx``: they may run twice, and only one
run commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from ..outbox.queries import CONFLICT_BASE_S, CONFLICT_CAP_S
from ..store import Prepared, Store
from ..store.groupcommit import GroupCommit, RetryAlone, retrieve


class Transaction:
    """One open transaction of the writer: ``conn``, plus statements deferred to its end."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.memo: dict[str, Any] = {}  # what `GroupCommitter.before` prepared for the units
        self._later: dict[Prepared, list[dict[str, Any]]] = {}

    def later(self, stmt: Prepared, params: dict[str, Any]) -> None:
        """Run ``stmt`` with ``params`` at the end of the transaction, in one executemany with the
        other parameter sets of the same ``stmt`` (all must have the same keys). For writes that no
        later unit of the batch reads back (or that `pending` lets it amend)."""
        self._later.setdefault(stmt, []).append(params)

    def pending(self, stmt: Prepared) -> list[dict[str, Any]]:
        """Parameter sets queued for ``stmt`` and not yet run (callers may still change them)."""
        return self._later.get(stmt, [])

    def flush(self) -> None:
        later, self._later = self._later, {}
        for stmt, params in later.items():
            stmt.executemany(self.conn, params)


Work = Callable[[Transaction], Any]
Before = Callable[[Transaction, list[Any]], None]

#: Transactions of the writer handed to the store at once: its writer goes from one COMMIT straight
#: to the next batch instead of waiting for this task's turn on the event loop.
PIPELINE_DEPTH = 2
_SINGLE_ATTEMPTS = 3  # a unit retried alone after a lock conflict (MariaDB deadlock, SQLite busy)


class GroupCommitter:
    """See the module docstring.

    ``before(tx, tags)`` runs first in every transaction with the ``tag`` of each unit in it (units
    submitted without one are left out): bulk work for the whole batch, such as claiming all gates
    in one statement. ``after_commit`` runs after every committed transaction. A transaction that
    takes longer than ``timeout_s`` is abandoned (rolled back) and fails all its units with
    `StoreError`. Conflicts of units retried alone are counted under op ``ameyo``.
    """

    def __init__(self, store: Store, *, max_batch: int, timeout_s: float = 30.0, before: Before | None = None,
                 after_commit: Callable[[], None] | None = None) -> None:
        self.store = store
        self.before = before
        self.group: GroupCommit[tuple[Work, Any], Any] = GroupCommit(
            self._commit, name="ameyo-writer", max_batch=max_batch, timeout_s=timeout_s, depth=PIPELINE_DEPTH,
            failure=RetryAlone(CONFLICT_BASE_S, CONFLICT_CAP_S, attempts=_SINGLE_ATTEMPTS,
                               conflicts=store.conflicts, op="ameyo"),
            after_commit=after_commit)

    def submit(self, work: Work, tag: Any = None) -> asyncio.Future[Any]:
        """Queue ``work``; after `close` it runs alone (results of late sends)."""
        future = self.group.submit((work, tag))
        future.add_done_callback(retrieve)  # a caller that gave up waiting leaves no "never retrieved"
        return future

    @property
    def max_batch(self) -> int:
        return self.group.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self.group.max_batch = value

    @property
    def backlog(self) -> int:
        return self.group.backlog

    @property
    def batches(self) -> int:
        """Batches committed."""
        return self.group.batches

    @property
    def failures(self) -> int:
        """Units that failed (their transaction timed out, or their last attempt alone failed)."""
        return self.group.failed_items

    def close(self) -> None:
        """Stop batching: `run` returns once what is queued is done; later units run alone."""
        self.group.close()

    async def run(self) -> None:
        """Commit batches until `close`."""
        await self.group.run()

    async def _commit(self, units: Sequence[tuple[Work, Any]]) -> list[Any]:
        def run(conn: sa.Connection) -> list[Any]:
            tx = Transaction(conn)
            if self.before is not None:
                self.before(tx, [tag for _, tag in units if tag is not None])
            results = [work(tx) for work, _ in units]
            tx.flush()
            return results

        return await self.store.write(run, urgent=True)  # callbacks wait to be answered
