"""AMIMessage lookups, event subscriptions and the routing of replies and list items."""

from __future__ import annotations

import asyncio
import gc

import pytest

from telephonyd.ami.dispatch import LIST_FREEZE_EVERY, PendingActions, Subscriptions
from telephonyd.ami.errors import AMIConnectionLost
from telephonyd.ami.framing import parse_messages, split_banner
from telephonyd.ami.message import AMIMessage
from tests.fakes.ami_wire import AMI_RECORDINGS, received_stream


def msg(*pairs: tuple[str, str]) -> AMIMessage:
    return AMIMessage(pairs)


def test_message_lookups_are_case_insensitive_and_keep_order() -> None:
    m = msg(("Event", "VarSet"), ("ActionID", "td-1"), ("Variable", "a"), ("variable", "b"), ("Value", ""))
    assert m.event == "VarSet" and m.response is None and m.action_id == "td-1"
    assert m.get("VARIABLE") == "a" and m.get_all("Variable") == ["a", "b"]
    assert m.get("value") == "" and m.get("missing", "dflt") == "dflt"
    assert "actionid" in m and "nope" not in m
    assert m.to_dict() == {"Event": "VarSet", "ActionID": "td-1", "Variable": "a", "Value": ""}
    with pytest.raises(KeyError):
        m["nope"]
    reply = AMIMessage.from_fields({"Response": "Error", "Message": "x", "Skip": None, "Output": ["1", "2"]})
    assert reply.is_error and not reply.is_success and reply.get_all("output") == ["1", "2"] and "Skip" not in reply


def test_subscriptions_match_names_case_insensitively_with_wildcards() -> None:
    subs = Subscriptions()
    seen: dict[str, list[str]] = {"exact": [], "dial": [], "all": []}
    subs.add("ContactStatus", lambda m: seen["exact"].append(m.event or ""))
    remove_dial = subs.add("dial*", lambda m: seen["dial"].append(m.event or ""))
    subs.add("*", lambda m: seen["all"].append(m.event or ""))
    for name in ("contactstatus", "DialBegin", "DialEnd", "ContactStatusDetail", "Hangup"):
        subs.dispatch(msg(("Event", name)))
    assert seen["exact"] == ["contactstatus"]
    assert seen["dial"] == ["DialBegin", "DialEnd"]
    assert len(seen["all"]) == 5
    remove_dial()
    subs.dispatch(msg(("Event", "DialState")))
    assert seen["dial"] == ["DialBegin", "DialEnd"] and seen["all"][-1] == "DialState"
    subs.dispatch(msg(("Response", "Success")))  # not an event: nobody called
    assert len(seen["all"]) == 6


def test_the_by_name_table_follows_subscribe_and_unsubscribe() -> None:
    """The read loop calls what ``by_name[event]`` holds: it must never keep a removed callback or
    miss one added after the name was first looked up."""
    subs = Subscriptions()
    first, second = (lambda _m: None), (lambda _m: None)
    assert subs.by_name["ContactStatus"] == ()
    remove = subs.add("contact*", first)
    assert subs.by_name["ContactStatus"] == (first,) and subs.by_name["CONTACTSTATUS"] == (first,)
    subs.add("ContactStatus", second)
    assert subs.by_name["ContactStatus"] == (first, second) and subs.by_name["Hangup"] == ()
    remove()
    assert subs.by_name["ContactStatus"] == (second,)


def test_a_message_kept_as_text_reads_like_one_built_from_pairs() -> None:
    block = "Event: ContactStatus\r\nActionID: td-3\r\nURI: sip:1010@10.0.0.5:5060\r\nRegServer: \r\nuri: second"
    pairs = [("Event", "ContactStatus"), ("ActionID", "td-3"), ("URI", "sip:1010@10.0.0.5:5060"), ("RegServer", ""),
             ("uri", "second")]
    for lazy in (AMIMessage.from_block(block, "ContactStatus"), AMIMessage.from_block(block)):
        assert lazy.event == "ContactStatus" and lazy.action_id == "td-3" and lazy.response is None
        assert lazy.get("URI") == "sip:1010@10.0.0.5:5060"
        assert lazy.get_all("uri") == ["sip:1010@10.0.0.5:5060", "second"]
        assert lazy == AMIMessage(pairs) and lazy.pairs == pairs and lazy.to_dict() == AMIMessage(pairs).to_dict()
    no_id = AMIMessage.from_block("Event: Hangup\r\nUniqueid: 1.2")
    assert no_id.action_id is None and no_id.get("uniqueid") == "1.2"
    assert AMIMessage.from_block("Response: Success\r\nactionid: td-9").action_id == "td-9"


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    subs = Subscriptions()
    got: list[str] = []

    def broken(_m: AMIMessage) -> None:
        raise RuntimeError("boom")

    subs.add("Hangup", broken)
    subs.add("Hangup", lambda m: got.append(m.get("Uniqueid") or ""))
    subs.dispatch(msg(("Event", "Hangup"), ("Uniqueid", "1.2")))
    assert got == ["1.2"]
    assert "callback failed" in caplog.text


async def test_plain_reply_and_event_with_the_same_action_id() -> None:
    pending = PendingActions()
    action = pending.add("td-7", is_list=False)
    assert pending.route(msg(("Response", "Success"), ("ActionID", "td-7"), ("Message", "Originate queued")))
    assert (await action.reply).get("Message") == "Originate queued"
    # OriginateResponse arrives later with the same ActionID: it is an event for subscribers.
    assert not pending.route(msg(("Event", "OriginateResponse"), ("ActionID", "td-7")))
    assert not pending.route(msg(("Response", "Success"), ("ActionID", "unknown")))
    assert len(pending) == 0


async def test_recorded_list_replies_are_collected_to_complete() -> None:
    _, data = split_banner(received_stream(AMI_RECORDINGS / "03_PJSIPShowContacts_registered.txt"))
    messages, _ = parse_messages(data)
    pending = PendingActions()
    ids = {"login-1": False, "act-1": True, "act-2": True, "act-3": True, "act-4": False, "act-5": True,
           "logoff-1": False}
    actions = {aid: pending.add(aid, is_list=is_list) for aid, is_list in ids.items()}
    assert all(pending.route(m) for m in messages)
    assert len(pending) == 0
    contacts = await actions["act-1"].done  # type: ignore[misc]
    assert [m.event for m in contacts] == ["ContactList"]
    assert contacts[0].get("ObjectName") == "1010;@28b54723d2a1a3b7d4c8eaf869a5a86e"
    assert [m.event for m in await actions["act-2"].done] == ["AorList", "AorList"]  # type: ignore[misc]
    details = await actions["act-3"].done  # type: ignore[misc]
    assert [m.event for m in details][-1] == "ContactStatusDetail" and len(details) == 5
    assert [m.get("Device") for m in await actions["act-5"].done] == ["PJSIP/1010", "PJSIP/1011"]  # type: ignore[misc]


async def test_error_reply_ends_a_list_action_empty() -> None:
    _, data = split_banner(received_stream(AMI_RECORDINGS / "01_ami_banner_login.txt"))
    messages, _ = parse_messages(data)
    no_contacts = next(m for m in messages if m.action_id == "act-3")
    pending = PendingActions()
    action = pending.add("act-3", is_list=True)
    assert pending.route(no_contacts)
    reply = await action.reply
    assert reply.is_error and reply.get("Message") == "No Contacts found"
    assert await action.done == []  # type: ignore[misc]


async def test_fail_all_wakes_every_waiter() -> None:
    pending = PendingActions()
    plain = pending.add("a", is_list=False)
    listed = pending.add("b", is_list=True)
    pending.route(msg(("Response", "Success"), ("ActionID", "b"), ("EventList", "start")))
    pending.route(msg(("Event", "ContactList"), ("ActionID", "b")))
    pending.fail_all(AMIConnectionLost("gone"))
    with pytest.raises(AMIConnectionLost):
        await plain.reply
    with pytest.raises(AMIConnectionLost):
        await asyncio.shield(listed.done)  # type: ignore[arg-type]
    assert len(pending) == 0


async def test_a_long_list_reply_is_kept_out_of_the_full_collections_while_it_arrives() -> None:
    _, data = split_banner(received_stream(AMI_RECORDINGS / "03_PJSIPShowContacts_registered.txt"))
    messages, _ = parse_messages(data)
    reply = next(m for m in messages if m.action_id == "act-1" and m.event is None)
    item = next(m for m in messages if m.event == "ContactList")
    pending = PendingActions()
    action = pending.add("act-1", is_list=True)
    try:
        assert pending.route(reply)
        items = [AMIMessage(list(item.pairs)) for _ in range(LIST_FREEZE_EVERY)]
        assert all(pending.route(m) for m in items)
        assert not any(o is items[0] for o in gc.get_objects())  # frozen: full passes skip it
        assert action.done is not None and not action.done.done()  # still collecting
    finally:
        gc.unfreeze()
