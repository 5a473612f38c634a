"""`CallTracker`: a pure state machine from AMI channel events to calls and call events.

Events read (Asterisk 22.10.1 AMI, ``call`` class; fields of the channel snapshot: ``Channel``,
``ChannelState``, ``ChannelStateDesc``, ``CallerIDNum``, ``CallerIDName``, ``Context``, ``Exten``,
``Uniqueid``, ``Linkedid``):

| event                      | effect                                                            |
|----------------------------|-------------------------------------------------------------------|
| Newchannel                 | a leg; the first leg of a linkedid opens the call                 |
| Newstate                   | leg state; ``Ringing`` (5) emits call.ringing, ``Up`` (6) answers |
| NewCallerid, Newexten      | caller id name (VICIdial's caller code), contexts visited         |
| DialBegin / DialState      | the ``Dest*`` leg is a callee; DialState ``RINGING`` -> ringing    |
| DialEnd                    | the callee's dial status; ``ANSWER`` emits call.answered          |
| BridgeEnter / BridgeLeave  | two legs of one call in one bridge -> answered                    |
| Hold / Unhold              | call.held (``held`` true / false)                                 |
| BlindTransfer, AttendedTransfer | call.transferred on the transferer's linkedid               |
| HangupRequest              | who asked to hang up (the peer of that leg)                       |
| Hangup                     | leg ended (``Cause``, ``Cause-txt``, ``TechCause`` 20.17+/22.7+);  |
|                            | the last leg's Hangup emits call.ended                            |
| VarSet                     | only the configured variable names (campaign, agent, lead, did)   |

Events are idempotent and order-tolerant: a leg is created by whichever of its events comes first,
a repeated event changes nothing, events of a call that already ended are ignored (the last
``recent_size`` ended linkedids are remembered). Memory is bounded three ways: `resync` closes calls
with no live channel after a ``CoreShowChannels`` listing, `expire` closes calls older than
``max_age_s``, and more than ``max_calls`` live calls close the oldest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .describe import CallRules, describe
from .model import (
    ANSWERED,
    END_EVICTED,
    END_EXPIRED,
    END_HANGUP,
    END_RESYNC,
    ENDED,
    HELD,
    RINGING,
    TRANSFERRED,
    Call,
    CallEvent,
    Leg,
)

#: Channel states (``ChannelState``, main/channel.c ast_state2str).
STATE_NAMES = {"0": "Down", "1": "Rsrvd", "2": "OffHook", "3": "Dialing", "4": "Ring", "5": "Ringing",
               "6": "Up", "7": "Busy"}

Get = Callable[[str], Any]


class CallTracker:
    """Calls by linkedid. ``feed(event, now)`` returns the `CallEvent` list the event caused.

    ``rules``: `CallRules`. ``max_age_s``: a call still open after this long is closed by `expire`.
    ``max_calls``: live calls kept at most. ``recent_size``: ended linkedids remembered so late
    or repeated events of a finished call do not reopen it.
    """

    def __init__(self, rules: CallRules | None = None, *, max_age_s: float = 4 * 3600.0,
                 max_calls: int = 50_000, recent_size: int = 10_000) -> None:
        self.rules = rules or CallRules()
        self.max_age_s = max_age_s
        self.max_calls = max(1, max_calls)
        self.recent_size = max(1, recent_size)
        self.calls: OrderedDict[str, Call] = OrderedDict()  # by start order (oldest first)
        self._legs: dict[str, str] = {}  # uniqueid -> linkedid of live calls
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._watched = self.rules.watched_variables
        self.ended_total = 0
        self.closed: dict[str, int] = {END_RESYNC: 0, END_EXPIRED: 0, END_EVICTED: 0}
        self._handlers: dict[str, Callable[[Get, float, int, list[CallEvent]], None]] = {
            "newchannel": self._newchannel, "newstate": self._newstate, "newcallerid": self._touch,
            "newexten": self._touch, "dialbegin": self._dialbegin, "dialstate": self._dialstate,
            "dialend": self._dialend, "bridgeenter": self._bridgeenter, "bridgeleave": self._bridgeleave,
            "hold": self._hold, "unhold": self._unhold, "blindtransfer": self._transfer,
            "attendedtransfer": self._transfer, "hanguprequest": self._hanguprequest,
            "hangup": self._hangup, "varset": self._varset,
        }

    #: Event names the tracker reads (subscribe to these).
    EVENTS: tuple[str, ...] = ("Newchannel", "Newstate", "NewCallerid", "Newexten", "DialBegin", "DialState",
                               "DialEnd", "BridgeEnter", "BridgeLeave", "Hold", "Unhold", "BlindTransfer",
                               "AttendedTransfer", "HangupRequest", "Hangup", "VarSet")

    # -- input -----------------------------------------------------------------------------------

    def feed(self, message: Any, now: float, seq: int = 0) -> list[CallEvent]:
        """Apply one AMI event (anything with ``get(key)`` and ``event``); never raises on bad input."""
        name = message.event
        handler = self._handlers.get(name.lower()) if name else None
        if handler is None:
            return []
        out: list[CallEvent] = []
        # Asterisk spells every key the same way (22.10.1 recordings): a plain dict of the pairs is
        # far cheaper than case-insensitive lookups. Anything spelled otherwise takes the slow path.
        pairs = getattr(message, "pairs", None)
        fields = dict(pairs) if pairs and pairs[0][0] == "Event" else None
        handler(fields.get if fields is not None else message.get, now, seq, out)
        return out

    def resync(self, items: Iterable[Any], now: float, before_seq: int | None = None) -> list[CallEvent]:
        """Apply a ``CoreShowChannels`` listing: close what it shows is gone, adopt what is unknown.

        ``items``: the ``CoreShowChannel`` events (``get`` for ``Uniqueid``, ``Linkedid``, ``Channel``,
        ``ChannelState``, ``CallerIDNum``, ``Context``, ``Exten``, ``BridgeId``; Asterisk 22.10.1).
        Calls with no listed channel end (``end_reason`` resync); legs not listed are marked ended.
        Listed channels of unknown calls (began while the session was down, or before a restart) are
        tracked from here on, silently: their ``call.ended`` comes with their Hangup. ``before_seq``:
        only calls first seen before this AMI receive order are closed (calls that began during the
        listing are kept).
        """
        by_call: dict[str, set[str]] = {}
        out: list[CallEvent] = []
        adopted: set[str] = set()
        for item in items:
            uniqueid = item.get("Uniqueid")
            if not uniqueid:
                continue
            linkedid = item.get("Linkedid") or uniqueid
            by_call.setdefault(linkedid, set()).add(uniqueid)
            if linkedid in adopted or linkedid not in self.calls and linkedid not in self._recent:
                adopted.add(linkedid)
                self._adopt(item, now, out)
        for call in list(self.calls.values()):
            if before_seq is not None and call.first_seq >= before_seq:
                continue
            listed = by_call.get(call.linkedid, set())
            if not listed:
                self._close(call, END_RESYNC, now, out)
                continue
            for leg in list(call.legs.values()):
                if leg.uniqueid not in listed and leg.ended_at is None:
                    leg.ended_at = now
                    self._legs.pop(leg.uniqueid, None)
        return out

    def _adopt(self, item: Any, now: float, out: list[CallEvent]) -> None:
        found = self._leg(item.get, now, 0, out)
        if found is None:
            return
        call, leg = found
        if leg.uniqueid != call.linkedid:
            leg.role = "callee"  # listed before its caller (Application AppDial)
        leg.bridge = item.get("BridgeId") or None
        if leg.state == "Up":
            leg.answered_at = leg.answered_at or now
            if leg.bridge or leg.role == "caller":
                call.answered_at = call.answered_at or now
        call.counts.setdefault("adopted", 1)

    def expire(self, now: float) -> list[CallEvent]:
        """Close every call started more than ``max_age_s`` before ``now``."""
        out: list[CallEvent] = []
        limit = now - self.max_age_s
        while self.calls:
            call = next(iter(self.calls.values()))
            if call.started_at > limit:
                break
            self._close(call, END_EXPIRED, now, out)
        return out

    def get(self, key: str) -> Call | None:
        """A live call by linkedid or by the uniqueid of one of its legs."""
        call = self.calls.get(key)
        if call is None and key in self._legs:
            call = self.calls.get(self._legs[key])
        return call

    def snapshot(self, call: Call) -> dict[str, Any]:
        return describe(call, self.rules)

    # -- calls and legs --------------------------------------------------------------------------

    def _call(self, linkedid: str | None, now: float, seq: int, out: list[CallEvent]) -> Call | None:
        if not linkedid or linkedid in self._recent:
            return None
        call = self.calls.get(linkedid)
        if call is None:
            while len(self.calls) >= self.max_calls:
                self._close(next(iter(self.calls.values())), END_EVICTED, now, out)
            call = self.calls[linkedid] = Call(linkedid, now, seq)
        return call

    def _leg(self, get: Get, now: float, seq: int, out: list[CallEvent], prefix: str = "") -> tuple[Call, Leg] | None:
        uniqueid = get(prefix + "Uniqueid")
        if not uniqueid:
            return None
        call = self._call(get(prefix + "Linkedid") or self._legs.get(uniqueid), now, seq, out)
        if call is None:
            return None
        leg = call.legs.get(uniqueid)
        if leg is None:
            if uniqueid in self._legs and self._legs[uniqueid] != call.linkedid:
                return None  # a leg cannot move between linkedids: ignore the odd one
            leg = call.legs[uniqueid] = Leg(uniqueid, created_at=now)
            if uniqueid == call.linkedid or len(call.legs) == 1:
                leg.role = "caller"
            self._legs[uniqueid] = call.linkedid
        if leg.ended_at is not None:
            return None
        channel = get(prefix + "Channel")
        if channel and channel != leg.channel:
            leg.channel = channel
            if leg.role == "other" and channel.startswith("Local/") and channel.endswith(";2"):
                # The second half of a Local channel is its first half's side (22.10.1: an originated
                # Local/x@ctx;1 is the call's first leg and ;2 runs the dialplan that dials out).
                first = channel[:-1] + "1"
                if any(other.channel == first and other.role == "caller" for other in call.legs.values()):
                    leg.role = "caller"
        state = get(prefix + "ChannelState")
        if state is not None:
            leg.state = STATE_NAMES.get(state, state)
            # chan_sip (Asterisk <= 20) creates a phone's incoming channel Down and sets it Ring before the
            # dialplan runs (asterisk-20.20.1 recordings); an originated one goes Down -> Ringing/Up (its
            # Local ;2 half, a caller too, is created Ring).
            first = uniqueid == call.linkedid and call.origin_state == "Down" and leg.state == "Ring"
            if leg.role == "caller" and (not call.origin_state or first):
                call.origin_state = leg.state
        num, name = get(prefix + "CallerIDNum"), get(prefix + "CallerIDName")
        # A Local channel's caller id turns into the far end's once that answers (connected line):
        # keep the first one it had. Other channels keep the latest (dialplans set CALLERID(name)).
        local = leg.channel.startswith("Local/")
        if num is not None and not (local and leg.caller_num):
            leg.caller_num = "" if num == "<unknown>" else num
        if name is not None and not (local and leg.caller_name):
            leg.caller_name = "" if name == "<unknown>" else name
        context, exten = get(prefix + "Context"), get(prefix + "Exten")
        if context:
            leg.context = context
            if leg.role == "caller" and context not in call.contexts and len(call.contexts) < 16:
                call.contexts.append(context)
        if exten:
            leg.exten = exten
            if leg.role == "caller" and not call.dialed_number and exten not in ("s", "h"):
                call.dialed_number = exten
        return call, leg

    def _emit(self, kind: str, call: Call, now: float, out: list[CallEvent], **extra: Any) -> None:
        out.append(CallEvent(kind, call, describe(call, self.rules), now, extra))

    def _ringing(self, call: Call, leg: Leg, now: float, out: list[CallEvent]) -> None:
        if leg.ringing_at is None:
            leg.ringing_at = now
        if call.ringing_at is None and call.answered_at is None:
            call.ringing_at = now
            self._emit(RINGING, call, now, out)

    def _answered(self, call: Call, now: float, out: list[CallEvent]) -> None:
        if call.answered_at is None:
            call.answered_at = now
            self._emit(ANSWERED, call, now, out)

    def _close(self, call: Call, reason: str, now: float, out: list[CallEvent]) -> None:
        call.ended_at = now
        call.end_reason = reason
        for leg in call.legs.values():
            self._legs.pop(leg.uniqueid, None)
            if leg.ended_at is None:
                leg.ended_at = now
        self.calls.pop(call.linkedid, None)
        self._recent[call.linkedid] = None
        while len(self._recent) > self.recent_size:
            self._recent.popitem(last=False)
        self.ended_total += 1
        if reason != END_HANGUP:
            self.closed[reason] += 1
        self._emit(ENDED, call, now, out)

    # -- handlers --------------------------------------------------------------------------------

    def _touch(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        self._leg(get, now, seq, out)

    def _newchannel(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._leg(get, now, seq, out)
        if found is not None and found[1].state == "Ringing":
            self._ringing(found[0], found[1], now, out)

    def _newstate(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._leg(get, now, seq, out)
        if found is None:
            return
        call, leg = found
        if leg.state == "Ringing" and leg.role != "caller":
            self._ringing(call, leg, now, out)
        elif leg.state == "Up" and leg.answered_at is None:
            leg.answered_at = now
            if leg.role == "caller" and not call.callees():
                self._answered(call, now, out)  # answered by the dialplan (IVR, AGI, queue)

    def _dial_pair(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> tuple[Call, Leg] | None:
        self._leg(get, now, seq, out)
        found = self._leg(get, now, seq, out, prefix="Dest")
        if found is not None and found[1].role != "caller":
            found[1].role = "callee"
        return found

    def _dialbegin(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        self._dial_pair(get, now, seq, out)

    def _dialstate(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._dial_pair(get, now, seq, out)
        if found is not None and (get("DialStatus") or "").upper() == "RINGING":
            self._ringing(found[0], found[1], now, out)

    def _dialend(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._dial_pair(get, now, seq, out)
        if found is None:
            return
        call, leg = found
        status = (get("DialStatus") or "").upper()
        if status:
            leg.dial_status = status
        if status == "ANSWER":
            self._answered(call, now, out)

    def _bridgeenter(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._leg(get, now, seq, out)
        if found is None:
            return
        call, leg = found
        leg.bridge = get("BridgeUniqueid")
        if leg.bridge and sum(1 for other in call.legs.values()
                              if other.bridge == leg.bridge and other.ended_at is None) >= 2:
            self._answered(call, now, out)

    def _bridgeleave(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._leg(get, now, seq, out)
        if found is not None:
            found[1].bridge = None

    def _hold(self, get: Get, now: float, seq: int, out: list[CallEvent], held: bool = True) -> None:
        found = self._leg(get, now, seq, out)
        if found is None or found[1].held == held:
            return
        call, leg = found
        leg.held = held
        call.held = any(other.held for other in call.legs.values() if other.ended_at is None)
        self._emit(HELD, call, now, out, held=held, leg=leg.uniqueid)

    def _unhold(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        self._hold(get, now, seq, out, held=False)

    def _transfer(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        """BlindTransfer (``Transferer*``, ``Transferee*``, ``Extension``, ``Context``) and
        AttendedTransfer (``OrigTransferer*``, ``SecondTransferer*``, ``TransferTarget*``, ``DestType``)."""
        linkedid = get("TransfererLinkedid") or get("OrigTransfererLinkedid")
        call = self.calls.get(linkedid) if linkedid else None
        if call is None:
            return
        call.transfers += 1
        kind = "blind" if get("Event") == "BlindTransfer" or get("TransfererLinkedid") else "attended"
        target = get("TransfereeLinkedid") or get("TransferTargetLinkedid") or get("SecondTransfererLinkedid")
        transfer = {"type": kind, "result": get("Result"), "extension": get("Extension"),
                    "context": get("Context"), "dest_type": get("DestType"), "target_linkedid": target}
        self._emit(TRANSFERRED, call, now, out, transfer={k: v for k, v in transfer.items() if v is not None})

    def _hanguprequest(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._leg(get, now, seq, out)
        if found is not None and found[0].hangup_requested_by is None:
            found[0].hangup_requested_by = found[1].role

    def _hangup(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        found = self._leg(get, now, seq, out)
        if found is None:
            return
        call, leg = found
        cause = get("Cause")
        try:
            leg.hangup_cause = int(cause) if cause is not None else None
        except ValueError:
            leg.hangup_cause = None
        leg.hangup_cause_txt = get("Cause-txt")
        leg.tech_cause = get("TechCause") or None
        leg.ended_at = now
        leg.bridge = None
        self._legs.pop(leg.uniqueid, None)
        if all(other.ended_at is not None for other in call.legs.values()):
            self._close(call, END_HANGUP, now, out)

    def _varset(self, get: Get, now: float, seq: int, out: list[CallEvent]) -> None:
        name = get("Variable")
        if not name or not self._watched or name.lower() not in self._watched:
            return
        found = self._leg(get, now, seq, out)
        if found is not None and len(found[0].variables) < 32:
            found[0].variables[name.lower()] = get("Value") or ""
