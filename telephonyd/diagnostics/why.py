"""``telephonyd outbox why ID``: why one outbox row is where it is (pure; clock passed in).

The reasons, in the order the dispatcher meets them: the row is delivered or dead (nothing more
happens unless retried), its target is disabled or has no sender in this configuration (rows wait
forever), it is in flight (claimed by a node until its lease ends), or it backs off until
``next_attempt_at`` after ``attempts`` failures (the last error and upstream status kept).
Times are epoch seconds of the database clock (`telephonyd.outbox.schema`).
"""

from __future__ import annotations

from typing import Any

from ..outbox.model import DEAD, DELIVERED, IN_FLIGHT, PENDING


def enabled_targets(config: Any) -> dict[str, bool]:
    """Outbox target name -> enabled, for every sender ``config`` registers (`telephonyd.app`)."""
    from ..upstream.did_optimizer import DID_OPTIMIZER_TARGET

    targets = {DID_OPTIMIZER_TARGET: bool(config.did_optimizer.enabled)}
    if config.ameyo.enabled:
        targets["tops"] = True
    for webhook in config.calls.webhooks:
        targets[webhook.target] = bool(webhook.enabled)
    return targets


def explain(row: dict[str, Any], now: float, targets: dict[str, bool]) -> list[str]:
    """Lines saying why ``row`` (an `Outbox.list_rows` row) is in its state at ``now``."""
    state, target = row["state"], row["target"]
    lines = [f"row {row['id']}: target {target}, key {row['key']}, state {state}, {row['attempts']} attempts"]
    if state == DELIVERED:
        lines.append(f"delivered at {_utc(row.get('delivered_at'))} by {row.get('claimed_by') or '?'} "
                     f"(upstream status {row.get('last_status') or '-'}); it is never sent again")
        return lines
    if state == DEAD:
        lines.append(f"dead letter: gave up after {row['attempts']} attempts; last error: "
                     f"{row.get('last_error') or '-'} (status {row.get('last_status') or '-'})")
        lines.append(f"fix the cause, then `telephonyd outbox retry {row['id']}` (or drop it)")
        return lines
    if target not in targets:
        lines.append(f"target {target} has no sender in this configuration: the row waits until one is "
                     "configured (is its section enabled?)")
    elif not targets[target]:
        section = "did_optimizer" if target == "did_optimizer" else f"the {target} sender"
        lines.append(f"target {target} is disabled ({section}.enabled: false): the row waits until it is "
                     "enabled and the daemon reloaded")
    if state == IN_FLIGHT:
        lease = row.get("lease_until")
        if lease is not None and lease <= now:
            lines.append(f"claimed by {row.get('claimed_by') or '?'} but its lease ended {now - lease:.1f} s ago: "
                         "that node died or stalled; a running instance returns it to pending at its next poll")
        else:
            lines.append(f"claimed by {row.get('claimed_by') or '?'}, being sent now "
                         f"(lease ends in {0 if lease is None else lease - now:.1f} s)")
    elif state == PENDING:
        due = float(row.get("next_attempt_at") or 0)
        if due > now:
            lines.append(f"backing off until {_utc(due)} (in {due - now:.1f} s)")
        elif targets.get(target):
            lines.append("due now: the next dispatcher round of a running daemon sends it "
                         "(is the daemon running? `telephonyd status`)")
    if row.get("last_error"):
        lines.append(f"last error: {row['last_error']} (status {row.get('last_status') or '-'})")
    return lines


def _utc(when: Any) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS UTC`` (``-`` for None)."""
    import datetime as dt

    if when is None:
        return "-"
    return dt.datetime.fromtimestamp(float(when), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
