"""The VICIdial source's store side on SQLite: compare-and-set checkpoint, statuses seen, pruning."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.outbox.schema import metadata as outbox_metadata
from telephonyd.vicidial import ledger
from telephonyd.vicidial.ledger import Checkpoint, CheckpointMoved, Observed
from telephonyd.vicidial.schema import metadata, seen


@pytest.fixture
def conn():
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    outbox_metadata.create_all(engine)
    with engine.begin() as c:
        yield c


def observed(key: str, status: str, date: str, final: bool = True) -> Observed:
    make = (lambda uniqueid, outcome: {"uniqueid": uniqueid, "disposition": status, "outcome": outcome})
    return Observed(key, status, date, not final, (f"vicidial:{key}:{status}", make) if final else None, (key, ""))


def test_commit_reports_each_new_final_status_once_and_prunes_old_calls(conn) -> None:
    added: list[tuple[str, dict[str, Any]]] = []

    def add(_c: sa.Connection, _target: str, key: str, payload: dict[str, Any]) -> bool:
        if any(k == key for k, _ in added):
            return False
        added.append((key, payload))
        return True

    cp = ledger.ensure_checkpoint(conn, "vicidial_log", "2026-12-02 05:00:00", "", "n1")
    ledger.ensure_checkpoint(conn, "vicidial_log", "2026-12-02 06:00:00", "", "n2")  # a second start: no-op
    after = Checkpoint("vicidial_log", "2026-12-02 07:00:00", "", "2026-12-02 05:00:00", cp.version, 3)
    batch = [observed("1.1", "INCALL", "2026-12-02 04:00:00", final=False),  # older than the window
             observed("1.2", "NA", "2026-12-02 06:59:59"), observed("1.3", "SALE", "2026-12-02 06:59:59")]
    done = ledger.commit(conn, before=cp, after=after, observed=batch, add=add, target="did_optimizer",
                         prune_before="2026-12-02 05:00:00")
    assert done.reported == 2 and [k for k, _ in added] == ["vicidial:1.2:NA", "vicidial:1.3:SALE"]
    # The stale checkpoint is refused: another instance committed first.
    with pytest.raises(CheckpointMoved):
        ledger.commit(conn, before=cp, after=after, observed=batch, add=add, target="did_optimizer")
    cp2 = ledger.load_checkpoint(conn, "vicidial_log")
    assert cp2 is not None and cp2.version == 1 and cp2.head_date == "2026-12-02 07:00:00" and cp2.reported == 2
    # Same statuses again: nothing; a correction: one more report.
    done = ledger.commit(conn, before=cp2, after=after, observed=[observed("1.2", "NA", "2026-12-02 06:59:59"),
                                                                  observed("1.3", "DNC", "2026-12-02 06:59:59")],
                         add=add, target="did_optimizer", prune_before="2026-12-02 05:00:00")
    assert done.reported == 1 and added[-1][0] == "vicidial:1.3:DNC"
    keys = {r.call_key for r in conn.execute(sa.select(seen.c.call_key))}
    assert keys == {"1.2", "1.3"}  # 1.1 fell out of the window and was forgotten
    assert ledger.seen_per_second(conn, "vicidial_log", "2026-12-02 06:00:00", "2026-12-02 07:00:00") == {
        "2026-12-02 06:59:59": 2}
