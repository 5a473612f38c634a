"""Claim tokens: a dead predecessor on this machine is told from a live twin, whatever the node_id."""

from __future__ import annotations

import os
import subprocess
import sys

from telephonyd.outbox import claimant
from telephonyd.outbox.model import OutboxRow
from telephonyd.upstream.transport import idempotency_header


def token_of(machine: str, boot: str, pid: int, started: int) -> str:
    return claimant.new_token(claimant.Claimant(machine, boot, pid, started))


def test_live_processes_are_never_gone() -> None:
    me = claimant.current()
    assert me.started > 0
    assert not claimant.gone(claimant.new_token(), me)  # this very process
    twin = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = claimant.process_start(twin.pid)
        assert start is not None
        assert not claimant.gone(token_of(me.machine, me.boot_id, twin.pid, start), me)  # a live twin here
        assert claimant.gone(token_of(me.machine, me.boot_id, twin.pid, start + 1), me)  # its pid, reused
    finally:
        twin.kill()
        twin.wait()
    assert claimant.gone(token_of(me.machine, me.boot_id, twin.pid, start), me)  # now dead


def test_other_machines_and_unknown_tokens_are_left_to_the_lease() -> None:
    me = claimant.current()
    assert not claimant.gone(token_of("another-host", me.boot_id, 1, 1), me)
    assert not claimant.gone(None, me) and not claimant.gone("ast1", me)
    assert claimant.gone(token_of(me.machine, "an-earlier-boot", os.getpid(), me.started), me)


def test_idempotency_key_is_target_and_key_and_safe_as_a_header() -> None:
    row = OutboxRow(1, "did_optimizer", "1795.1\r\nX-Evil: 1", {}, 0, 0.0)
    assert row.idempotency_key == "did_optimizer:1795.1\r\nX-Evil: 1"
    header = idempotency_header(row.idempotency_key)["Idempotency-Key"]
    assert header == "did_optimizer:1795.1%0D%0AX-Evil:%201"
    assert all(32 < ord(c) < 127 for c in header)
