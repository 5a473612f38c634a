"""Event application, resync planning and write coalescing (pure)."""

from __future__ import annotations

from telephonyd.ami.framing import parse_messages
from telephonyd.contacts.model import Contact, ContactChange, contact_id
from telephonyd.contacts.parse import (
    ContactStatusEvent,
    PeerStatusEvent,
    parse_contact_status,
)
from telephonyd.contacts.pending import PendingWrites
from telephonyd.contacts.state import ContactTable, plan_reconcile, stamp
from tests.fakes.ami_wire import AMI_RECORDINGS

ID_1010 = "1010;@28b54723d2a1a3b7d4c8eaf869a5a86e"


def status(aor: str, uri: str, value: str, rtt: int = 0, seq: int = 0) -> ContactStatusEvent:
    return ContactStatusEvent(contact_id(aor, uri), aor, aor, uri, value, rtt, seq)


def test_recorded_register_then_unregister() -> None:
    table = ContactTable("ast1")
    messages, _ = parse_messages((AMI_RECORDINGS / "02_register_ami_events_all.txt").read_bytes())
    changes = []
    for message in messages:
        event = parse_contact_status(message) if message.event == "ContactStatus" else None
        if event is not None:
            changes.append(table.apply_status(event, now=100.0))
    assert [(c.kind, c.contact.status) for c in changes if c] == [
        ("added", "NonQualified"), ("updated", "Reachable"), ("removed", "Reachable")]
    assert changes[0].contact.id == ID_1010 and changes[0].contact.reg_server == "ast1"
    assert len(table) == 0


def test_recorded_stream_of_many_contacts_converges() -> None:
    table = ContactTable("ast1")
    messages, _ = parse_messages((AMI_RECORDINGS / "ami_all_ContactStatus_PeerStatus_events.txt").read_bytes())
    for message in messages:
        event = parse_contact_status(message) if message.event == "ContactStatus" else None
        if event is not None:
            table.apply_status(event, now=1.0)
    assert len(table) == 0  # every recorded contact ended Removed


def test_a_refresh_repeating_the_status_changes_nothing() -> None:
    table = ContactTable("ast1")
    uri = "sip:1010@10.0.0.1:5060"
    assert table.apply_status(status("1010", uri, "Reachable", 400), now=1.0) is not None
    assert table.apply_status(status("1010", uri, "Reachable", 900), now=2.0) is None
    assert table.apply_status(status("1010", uri, "Updated", 900), now=2.0) is None
    change = table.apply_status(status("1010", uri, "Unreachable"), now=3.0)
    assert change is not None and change.kind == "updated" and change.previous.status == "Reachable"  # type: ignore[union-attr]
    assert change.contact.status_updated_at == 3.0
    assert table.apply_status(status("1011", "sip:1011@x", "Removed"), now=4.0) is None


def test_by_endpoint_orders_latest_registration_first() -> None:
    table = ContactTable("ast1")
    listed = {cid: Contact(cid, endpoint="1010", expiration_time=exp)
              for cid, exp in (("1010;@a", 200), ("1010;@z", 100), ("1010;@m", 300))}
    listed["x;@1"] = Contact("x;@1", endpoint=None)
    table.replace_scope(listed, lambda _c: True)
    assert [c.id for c in table.by_endpoint()["1010"]] == ["1010;@m", "1010;@a", "1010;@z"]
    assert list(table.by_endpoint()) == ["1010"]


def test_chan_sip_peer_rows() -> None:
    table = ContactTable("ast1")
    cid = "SIP/2001;@x"
    reg = PeerStatusEvent(cid, "SIP", "2001", "registered", address="10.0.0.5:5062")
    first = table.apply_peer(reg, now=1.0)
    assert first is not None and first.kind == "added" and first.contact.status == "NonQualified"
    assert table.apply_peer(reg, now=2.0) is None  # re-registration from the same address
    moved = table.apply_peer(PeerStatusEvent(cid, "SIP", "2001", "registered", address="10.0.0.6:5062"), now=3.0)
    assert moved is not None and moved.kind == "updated" and moved.contact.via_addr == "10.0.0.6"
    reach = table.apply_peer(PeerStatusEvent(cid, "SIP", "2001", "status", "Reachable", roundtrip_usec=5000), 4.0)
    assert reach is not None and reach.contact.status == "Reachable"
    static = PeerStatusEvent("SIP/trunk;@y", "SIP", "trunk", "status", "Reachable")
    assert table.apply_peer(static, now=5.0) is None  # never registered: not a contact
    gone = table.apply_peer(PeerStatusEvent(cid, "SIP", "2001", "unregistered"), now=6.0)
    assert gone is not None and gone.kind == "removed" and len(table) == 0


def row(cid: str, status: str = "Reachable", exp: int = 100, rs: str = "ast1") -> Contact:
    return Contact(cid, endpoint=cid.split(";@")[0], uri=f"sip:{cid}", status=status, expiration_time=exp,
                   reg_server=rs)


def test_plan_owned_mode() -> None:
    rows = {"a;@1": row("a;@1"), "b;@1": row("b;@1"), "c;@1": row("c;@1"), "SIP/p;@1": row("SIP/p;@1")}
    listed = {"a;@1": row("a;@1"), "b;@1": row("b;@1", exp=200), "d;@1": row("d;@1"),
              "c2;@1": row("c2;@1", status="Unreachable")}
    plan = plan_reconcile(rows, listed, owned=True, scope=lambda c: c.tech == "PJSIP")
    assert [c.id for c in plan.added] == ["d;@1", "c2;@1"]
    assert [c.id for c in plan.changed] == ["b;@1"]
    assert plan.removed == ["c;@1"]  # the SIP peer row is outside the scope
    assert plan.unchanged == 1 and not plan.status_changed and not plan.missing


def test_plan_asterisk_mode_never_inserts_or_deletes() -> None:
    rows = {"a;@1": row("a;@1", status=None), "b;@1": row("b;@1"), "gone;@1": row("gone;@1")}  # type: ignore[arg-type]
    listed = {"a;@1": row("a;@1"), "b;@1": row("b;@1", exp=999), "new;@1": row("new;@1")}
    plan = plan_reconcile(rows, listed, owned=False)
    assert [c.id for c in plan.status_changed] == ["a;@1"]
    assert plan.missing == ["new;@1"]
    assert not plan.added and not plan.changed and not plan.removed


def test_stamp_keeps_the_time_of_an_unchanged_status() -> None:
    previous = {"a;@1": row("a;@1").replace(status_updated_at=5.0), "b;@1": row("b;@1").replace(status_updated_at=5.0)}
    listed = {"a;@1": row("a;@1"), "b;@1": row("b;@1", status="Unreachable"), "c;@1": row("c;@1")}
    stamped = stamp(listed, previous, now=9.0)
    assert [stamped[k].status_updated_at for k in ("a;@1", "b;@1", "c;@1")] == [5.0, 9.0, 9.0]


def test_pending_writes_coalesce_to_the_latest_state() -> None:
    pending = PendingWrites(owned=True)
    a = row("a;@1", status="NonQualified")
    pending.mark(ContactChange("added", a), since=1.0)
    pending.mark(ContactChange("updated", a.replace(status="Reachable"), a), since=2.0)
    pending.mark(ContactChange("updated", a.replace(status="Unreachable"), a), since=3.0)
    b = row("b;@1")
    pending.mark(ContactChange("updated", b.replace(status="Unreachable"), b), since=4.0)
    c = row("c;@1")
    pending.mark(ContactChange("removed", c, c), since=5.0)
    batch = pending.take()
    assert [(x.id, x.status) for x in batch.rows] == [("a;@1", "Unreachable")]  # one row write
    assert [(x.id, x.status) for x in batch.statuses] == [("b;@1", "Unreachable")]
    assert batch.deletes == ["c;@1"]
    assert batch.since == {"a;@1": 1.0, "b;@1": 4.0, "c;@1": 5.0}
    assert len(pending) == 0
    # A change made while the batch was failing wins over the batch put back.
    pending.mark(ContactChange("added", c.replace(status="NonQualified")), since=6.0)
    pending.restore(batch)
    again = pending.take()
    assert {x.id: x.status for x in again.rows} == {"a;@1": "Unreachable", "c;@1": "NonQualified"}
    assert not again.deletes and again.since["c;@1"] == 5.0


def test_pending_writes_asterisk_mode_are_status_only() -> None:
    pending = PendingWrites(owned=False)
    a = row("a;@1", status="NonQualified")
    pending.mark(ContactChange("added", a), since=1.0)
    pending.mark(ContactChange("removed", a, a), since=2.0)
    b = row("b;@1")
    pending.mark(ContactChange("added", b), since=3.0)
    batch = pending.take()
    assert not batch.rows and not batch.deletes and [x.id for x in batch.statuses] == ["b;@1"]


def test_endpoint_index_follows_every_change() -> None:
    """contacts_of reads the per-endpoint index; it must match a full regrouping after each step."""
    table = ContactTable("ast1")

    def regrouped() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for cid, contact in table.by_id.items():
            if contact.endpoint:
                out.setdefault(contact.endpoint, set()).add(cid)
        return out

    def indexed() -> dict[str, set[str]]:
        return {e: {c.id for c in table.contacts_of(e)} for e in table.endpoints()}

    table.apply_status(status("1010", "sip:1010@a", "Reachable"), now=1.0)
    table.apply_status(status("1010", "sip:1010@b", "Reachable"), now=1.0)
    table.apply_status(status("1011", "sip:1011@a", "Reachable"), now=1.0)
    assert indexed() == regrouped() and len(indexed()["1010"]) == 2
    table.apply_status(status("1010", "sip:1010@a", "Removed"), now=2.0)
    assert indexed() == regrouped() and len(indexed()["1010"]) == 1
    moved = Contact("1011;@x", endpoint="1012")
    table.replace_scope({moved.id: moved}, lambda c: c.endpoint == "1011", endpoint="1011")
    assert indexed() == regrouped() == {"1010": {next(iter(regrouped()["1010"]))}, "1012": {"1011;@x"}}
    table.replace_scope({}, lambda _c: True)
    assert indexed() == regrouped() == {} and table.contacts_of("1010") == []


def test_call_id_index_follows_every_change() -> None:
    table = ContactTable("ast1")
    first = Contact("1010;@a", endpoint="1010", uri="sip:1010@10.0.0.1", call_id="c-1@x")
    other = Contact("1011;@b", endpoint="1011", uri="sip:1011@10.0.0.2", call_id="c-2@x")
    table.put_many([(first.id, first), (other.id, other)])
    assert table.endpoint_of_call("c-1@x") == "1010" and table.endpoint_of_call("c-2@x") == "1011"
    table.put_many([(first.id, first.replace(call_id="c-3@x"))])  # a new registration dialog
    assert table.endpoint_of_call("c-1@x") is None and table.endpoint_of_call("c-3@x") == "1010"
    table.remove(other.id)
    assert table.endpoint_of_call("c-2@x") is None
    table.replace_scope({}, lambda _c: True)  # a resync listing nothing
    assert table.endpoint_of_call("c-3@x") is None and table.endpoint_of_call("") is None
