"""ContactsSync: fake Asterisk -> AMIClient -> ps_contacts on SQLite (MariaDB in tests/integration)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.ami import AMIActionTimeout, AMINotConnected
from telephonyd.contacts import contact_id
from telephonyd.contacts.schema import ps_contacts
from tests.component.contacts_rig import contacts_rig, until
from tests.fakes.ami import FakeAMIServer, FakeContact
from tests.fakes.ami_wire import value_of

ID_1010 = "1010;@28b54723d2a1a3b7d4c8eaf869a5a86e"


def three(fake: FakeAMIServer) -> None:
    fake.add_contacts_silently([
        FakeContact("1010", "1010", "sip:1010@127.0.0.1:5070", status="Reachable", rtt_usec=833,
                    expiration_time=int(time.time()) + 600),
        FakeContact("1011", "1011", "sip:1011@127.0.0.1:5071", status="Unreachable",
                    expiration_time=int(time.time()) + 600),
        FakeContact("1012", "1012", "sip:1012@127.0.0.1:5072", status="NonQualified", qualify_frequency=0,
                    expiration_time=int(time.time()) + 600),
    ])


async def test_first_resync_writes_every_listed_contact(sqlite_url: str) -> None:
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        rows = await rig.rows()
        assert set(rows) == {ID_1010, contact_id("1011", "sip:1011@127.0.0.1:5071"),
                             contact_id("1012", "sip:1012@127.0.0.1:5072")}
        row = rows[ID_1010]
        assert (row["uri"], row["endpoint"], row["reg_server"], row["status"], row["roundtrip_usec"]) == (
            "sip:1010@127.0.0.1:5070", "1010", "ast1", "Reachable", 833)
        assert row["user_agent"] == "sipp-lab" and row["via_port"] == 5070 and row["qualify_frequency"] == 5
        assert row["expiration_time"] > time.time() and row["status_updated_at"] is not None
        result = rig.sync.last_resync or {}
        assert (result["added"], result["removed"], result["total"]) == (3, 0, 3)
        assert result["sources"] == ["PJSIPShowContacts"]
        assert rig.sync.health()["ok"] and rig.sync.health()["state"] == "synced"
        assert {c.kind for c in rig.changes} == {"added"} and len(rig.changes) == 3
        again = await rig.sync.resync()
        assert (again["added"], again["updated"], again["removed"], again["total"]) == (0, 0, 0, 3)
        assert again["duration_s"] >= 0


async def test_register_unreachable_unregister_converge(sqlite_url: str) -> None:
    async with contacts_rig(sqlite_url) as rig:
        await rig.synced()
        contact = rig.fake.register("1010")
        rows = await rig.wait_rows(lambda r: r.get(contact.id, {}).get("expiration_time") is not None)
        assert rows[contact.id]["status"] == "Reachable" and rows[contact.id]["user_agent"] == "sipp-lab"
        assert [c.id for c in rig.sync.contacts_by_endpoint()["1010"]] == [contact.id]
        rig.fake.set_reachability(contact.id, False)
        await rig.wait_rows(lambda r: r[contact.id]["status"] == "Unreachable")
        rig.fake.set_reachability(contact.id, True, rtt_usec=650)
        rows = await rig.wait_rows(lambda r: r[contact.id]["status"] == "Reachable")
        assert rows[contact.id]["roundtrip_usec"] == 650
        rig.fake.unregister(contact.id)
        await rig.wait_rows(lambda r: contact.id not in r)
        assert rig.sync.contacts_by_endpoint() == {}
        kinds = [(c.kind, c.contact.status) for c in rig.changes if c.contact.id == contact.id]
        assert kinds[0] == ("added", "NonQualified") and kinds[-1][0] == "removed"
        assert ("updated", "Unreachable") in kinds


async def test_a_re_register_updates_the_expiration(sqlite_url: str) -> None:
    """Asterisk 22 sends no ContactStatus on a refresh, only ChallengeSent/SuccessfulAuth whose
    SessionID is the REGISTER's Call-ID: that is enough to read the new expiration at once."""
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        before = (await rig.rows())[ID_1010]
        rig.fake.refresh(ID_1010, expires_s=7200)
        new_expiry = rig.fake.contacts[ID_1010].expiration_time
        assert new_expiry > before["expiration_time"] + 3000
        rows = await rig.wait_rows(lambda r: r[ID_1010]["expiration_time"] == new_expiry)
        assert {k: v for k, v in rows[ID_1010].items() if k != "expiration_time"} == {
            k: v for k, v in before.items() if k != "expiration_time"}
        assert [value_of(a, "Endpoint") for a in rig.fake.actions_named("PJSIPShowEndpoint")] == ["1010"]
        other = FakeContact("1010", "1010", "sip:1010@10.0.0.9:5060", call_id="someone-else@x")
        for event in other.auth_events():  # an INVITE's authentication: not a known contact's Call-ID
            rig.fake.emit(event)
        await rig.settled(events=2)  # SuccessfulAuth only (ChallengeSent is not subscribed)
        assert len(rig.fake.actions_named("PJSIPShowEndpoint")) == 1


async def test_a_burst_for_one_contact_is_one_write_of_the_latest_state(sqlite_url: str) -> None:
    async with contacts_rig(sqlite_url, setup=three, coalesce_s=0.3) as rig:
        await rig.synced()
        batches, written = rig.sync.counters["batches"], rig.sync.counters["rows_written"]
        for i in range(100):
            rig.fake.set_reachability(ID_1010, i % 2 == 0, rtt_usec=100 + i)
        rows = await rig.wait_rows(lambda r: r[ID_1010]["status"] == "Unreachable" and r[ID_1010]["roundtrip_usec"] == 0)
        await rig.settled(events=100)
        assert rig.sync.counters["batches"] == batches + 1
        assert rig.sync.counters["rows_written"] == written + 1
        assert rows[ID_1010]["status_updated_at"] > 0


async def test_reconnect_resyncs_what_changed_while_disconnected(sqlite_url: str) -> None:
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        rig.fake.drop_connections()
        await until(lambda: not rig.client.connected)
        rig.fake.remove_contacts_silently([ID_1010])
        rig.fake.add_contacts_silently([FakeContact("1020", "1020", "sip:1020@127.0.0.1:5090", status="Reachable")])
        await rig.synced(resyncs=2)
        rows = await rig.wait_rows(lambda r: ID_1010 not in r and contact_id("1020", "sip:1020@127.0.0.1:5090") in r)
        assert len(rows) == 3
        assert (rig.sync.last_resync or {})["removed"] == 1


async def test_events_around_a_listing(sqlite_url: str) -> None:
    """Events sent before the list reply are older than it; events after it are applied on top."""
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        c1010 = rig.fake.contacts[ID_1010]
        c1011 = next(c for c in rig.fake.contacts.values() if c.endpoint == "1011")

        def during_listing() -> None:
            rig.fake.emit(c1010.status_event("Unreachable", 0))  # stale: the listing says Reachable
            rig.fake.before_reply.clear()

        rig.fake.before_reply["pjsipshowcontacts"] = during_listing
        await rig.sync.resync()
        rig.fake.set_reachability(c1011.id, True)  # after the listing: applied
        rows = await rig.wait_rows(lambda r: r[c1011.id]["status"] == "Reachable")
        assert rows[ID_1010]["status"] == "Reachable"
        assert rig.sync.counters["superseded"] >= 1


async def test_asterisk_22_without_chan_sip_and_iax2_still_resyncs(sqlite_url: str) -> None:
    """SIPpeers and IAXpeerlist answer Asterisk 22's recorded "Invalid/unknown command: <Action>. Use
    Action: ListCommands ..." (chan_sip gone, chan_iax2 not loaded): skipped, the resync goes on."""
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        assert [value_of(a, "Action") for a in rig.fake.actions][-3:] == ["PJSIPShowContacts", "SIPpeers", "IAXpeerlist"]
        assert (rig.sync.last_resync or {})["sources"] == ["PJSIPShowContacts"]
        assert len(await rig.rows()) == 3 and rig.sync.health()["state"] == "synced"


async def test_expired_contacts_are_checked_with_asterisk(sqlite_url: str) -> None:
    past = int(time.time()) - 5
    refreshed = FakeContact("1010", "1010", "sip:1010@127.0.0.1:5070", status="Reachable", expiration_time=past)
    gone = FakeContact("1011", "1011", "sip:1011@127.0.0.1:5071", status="Reachable", expiration_time=past)

    def setup(fake: FakeAMIServer) -> None:
        fake.add_contacts_silently([refreshed, gone])

    async with contacts_rig(sqlite_url, setup=setup, expiry_check_s=0.05) as rig:
        await rig.synced()
        # Asterisk refreshed one (no event says so) and lost the other without us seeing it.
        refreshed.expiration_time = int(time.time()) + 3600
        rig.fake.remove_contacts_silently([gone.id])
        rows = await rig.wait_rows(lambda r: gone.id not in r and r[refreshed.id]["expiration_time"] > time.time())
        assert set(rows) == {refreshed.id}
        assert rig.sync.health()["endpoint_checks"] >= 2


async def test_expired_contacts_are_dropped_while_ami_is_down(sqlite_url: str) -> None:
    stale = FakeContact("1010", "1010", "sip:1010@127.0.0.1:5070", expiration_time=int(time.time()) + 1)
    async with contacts_rig(sqlite_url, setup=lambda f: f.add_contacts_silently([stale]), expiry_check_s=0.05) as rig:
        await rig.synced()
        assert stale.id in await rig.rows()
        await rig.fake.shutdown()
        await until(lambda: not rig.client.connected)
        with pytest.raises(AMINotConnected):
            await rig.sync.resync()
        await rig.wait_rows(lambda r: stale.id not in r, timeout=5)
        assert not rig.sync.health()["ok"] and rig.sync.health()["state"] == "waiting_for_ami"


async def test_registration_storm_makes_one_full_resync(sqlite_url: str) -> None:
    async with contacts_rig(sqlite_url, verify_max_endpoints=5, coalesce_s=0.2) as rig:
        await rig.synced()
        for n in range(30):
            rig.fake.register(f"2{n:03d}")
        await rig.synced(resyncs=2)
        rows = await rig.wait_rows(lambda r: len(r) == 30 and all(x["expiration_time"] for x in r.values()))
        assert len(rows) == 30
        assert rig.sync.health()["endpoint_checks"] == 0


async def test_store_failures_are_retried_without_losing_changes(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        real_write = rig.sync.writer.write_batch
        failures = {"left": 2}

        def flaky(conn: Any, **kwargs: Any) -> int:  # inside the batch's transaction, whichever path runs it
            if failures["left"]:
                failures["left"] -= 1
                raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
            return real_write(conn, **kwargs)

        monkeypatch.setattr(rig.sync.writer, "write_batch", flaky)
        monkeypatch.setattr(rig.sync, "retry_base_s", 0.05)
        rig.fake.set_reachability(ID_1010, False)
        await until(lambda: rig.sync.counters["write_failures"] >= 1)
        assert rig.sync.health()["state"] == "store_failing" and not rig.sync.health()["ok"]
        rig.fake.unregister(contact_id("1011", "sip:1011@127.0.0.1:5071"))
        rows = await rig.wait_rows(lambda r: r[ID_1010]["status"] == "Unreachable" and len(r) == 2, timeout=10)
        assert len(rows) == 2
        assert rig.sync.health()["ok"]


async def test_queue_overflow_falls_back_to_a_resync(sqlite_url: str) -> None:
    async with contacts_rig(sqlite_url, setup=three, max_queue=1000, coalesce_s=1.0) as rig:
        await rig.synced()
        c = rig.fake.contacts[ID_1010]
        rig.fake.emit_raw(b"".join(
            b"".join(f"{k}: {v}\r\n".encode() for k, v in c.status_event("Unreachable" if i % 2 else "Reachable"))
            + b"\r\n" for i in range(1500)))
        await until(lambda: rig.sync.counters["overflows"] == 1)
        await rig.synced(resyncs=2)
        rows = await rig.rows()
        assert rows[ID_1010]["status"] == "Reachable"  # Asterisk's listing, not the dropped events


async def test_asterisk_mode_only_sets_status_columns(sqlite_url: str) -> None:
    """Asterisk writes the rows itself (realtime); we never insert or delete."""
    async with contacts_rig(sqlite_url, mode="asterisk", expiry_check_s=0.05) as rig:
        await rig.synced()
        contact = rig.fake.register("1010")  # Asterisk did not write this row (realtime not mapped)
        await rig.settled(events=2)
        assert await rig.rows() == {}
        async with rig.store.begin() as conn:  # Asterisk inserts the row late: the sweep fills our columns
            await conn.execute(ps_contacts.insert().values(id=contact.id, uri=contact.uri, endpoint="1010",
                                                           reg_server="pbx-a", expiration_time=1))
        rows = await rig.wait_rows(lambda r: r[contact.id]["status"] == "Reachable")
        assert rows[contact.id]["reg_server"] == "pbx-a" and rows[contact.id]["expiration_time"] == 1
        rig.fake.unregister(contact.id)
        await rig.settled(events=3)
        assert contact.id in await rig.rows()  # deleting is Asterisk's business


async def test_a_failed_listing_fails_the_resync_and_is_retried(sqlite_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    async with contacts_rig(sqlite_url, setup=three, ami={"action_timeout_s": 0.3}) as rig:
        monkeypatch.setattr(rig.sync, "resync_retry_base_s", 0.05)
        await rig.synced()
        held = rig.fake.hold["pjsipshowcontacts"] = asyncio.Event()
        with pytest.raises(AMIActionTimeout, match="PJSIPShowContacts"):
            await rig.sync.resync()
        assert len(await rig.rows()) == 3  # a failed listing deletes nothing
        rig.fake.remove_contacts_silently([ID_1010])
        rig.fake.set_reachability(contact_id("1011", "sip:1011@127.0.0.1:5071"), True)  # wakes the worker
        await until(lambda: "PJSIPShowContacts" in (rig.sync.health()["last_error"] or ""))
        assert rig.sync.health()["state"] == "resync_failing" and not rig.sync.health()["ok"]
        held.set()
        del rig.fake.hold["pjsipshowcontacts"]
        rig.fake.refresh(contact_id("1011", "sip:1011@127.0.0.1:5071"))
        await rig.wait_rows(lambda r: ID_1010 not in r, timeout=5)


async def test_status_never_says_waiting_for_ami_while_ami_is_connected(sqlite_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    held = asyncio.Event()

    def setup(fake: FakeAMIServer) -> None:
        three(fake)
        fake.hold["pjsipshowcontacts"] = held

    async with contacts_rig(sqlite_url, setup=setup, ami={"action_timeout_s": 0.3}) as rig:
        monkeypatch.setattr(rig.sync, "resync_retry_base_s", 0.05)
        await until(lambda: rig.client.connected)
        assert rig.sync.health()["state"] in ("resyncing", "resync_failing")
        await until(lambda: rig.sync.health()["state"] == "resync_failing")  # the first listing timed out
        held.set()
        del rig.fake.hold["pjsipshowcontacts"]
        await until(lambda: rig.sync.health()["state"] == "synced")
        rig.fake.drop_connections()
        rig.fake.reject_logins = True
        await until(lambda: not rig.client.connected)
        assert rig.sync.health()["state"] == "waiting_for_ami"


async def test_a_large_resync_is_applied_in_slices_and_a_delta_during_it_is_kept(sqlite_url: str) -> None:
    """A resync puts the listing into the table at most ``resync_slice`` contacts per event-loop
    turn, and notifies in batches of at most that; a ContactStatus arriving between two slices
    is applied after the resync, so it wins over the listing in memory and in ps_contacts."""
    async with contacts_rig(sqlite_url, setup=three) as rig:
        await rig.synced()
        rig.sync.resync_slice = 50
        added = [FakeContact(f"{2000 + n}", f"{2000 + n}", f"sip:{2000 + n}@127.0.0.1:5060", status="Reachable",
                             expiration_time=int(time.time()) + 600) for n in range(300)]
        rig.fake.add_contacts_silently(added)
        late = next(c for c in rig.fake.contacts.values() if c.endpoint == "2299")
        batches: list[int] = []
        rig.sync.subscribe_batch(lambda changes: batches.append(len(changes)))
        sizes: list[int] = []
        loop = asyncio.get_running_loop()

        def each_turn() -> None:  # one call per event-loop turn while the resync runs
            sizes.append(len(rig.sync.table))
            if len(sizes) > 1 and sizes[-2] <= 103 < sizes[-1]:
                rig.fake.set_reachability(late.id, False)  # mid-apply: the table is half filled
            if not done:
                loop.call_soon(each_turn)

        done = False
        loop.call_soon(each_turn)
        result = await rig.sync.resync()
        done = True
        assert result["added"] == 300 and result["total"] == 303
        growth = [b - a for a, b in zip(sizes, sizes[1:])]
        assert max(growth) <= 50 and sum(growth) == 300
        assert batches and max(batches) <= 50 and sum(batches) >= 300
        rows = await rig.wait_rows(lambda r: r.get(late.id, {}).get("status") == "Unreachable")
        assert len(rows) == 303
        assert rig.sync.table.get(late.id).status == "Unreachable"
