"""What ``telephonyd status`` and ``telephonyd outbox stats`` say about claims of several nodes."""

from __future__ import annotations

from telephonyd.cli import format_status
from telephonyd.cli.outbox import claim_lines

STATS = {
    "by_state": {"pending": 3, "in_flight": 25, "delivered": 100, "dead": 0},
    "oldest_pending_age_s": 0.4,
    "claims": [
        {"node_id": "ast1", "rows": 2, "ids": [41, 42], "stuck": 0,
         "lease_expires_in_s": 51.25, "last_lease_expires_in_s": 58.0},
        {"node_id": "ast2", "rows": 23, "ids": list(range(1, 21)), "stuck": 23,
         "lease_expires_in_s": -12.5, "last_lease_expires_in_s": -3.0},
    ],
    "stuck_leases": 23,
}


def test_each_node_its_rows_and_its_stuck_leases() -> None:
    lines = claim_lines(STATS)
    assert lines[0] == "claims of ast1: 2 rows in flight (ids 41, 42), leases end in 51.2..58.0 s"
    assert lines[1].startswith("claims of ast2: 23 rows in flight (ids 1, 2, 3,")
    assert "19, 20 and 3 more)" in lines[1]
    assert lines[1].endswith("; STUCK: 23 past their lease by up to 12.5 s")
    assert lines[2].startswith("stuck leases: 23 in-flight rows past their lease")
    assert claim_lines({"claims": [], "stuck_leases": 0}) == []


def test_status_shows_the_claims_of_every_node() -> None:
    text = format_status({"node_id": "ast1", "version": "0.1.0", "uptime_s": 5, "ok": True,
                          "components": {}, "outbox": STATS})
    lines = text.splitlines()
    assert "  claims of ast1: 2 rows in flight (ids 41, 42), leases end in 51.2..58.0 s" in lines
    assert any(line.startswith("  stuck leases: 23") for line in lines)
