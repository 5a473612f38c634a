"""chan_sip peers of the fake AMI server (Asterisk <= 20; recorded from Asterisk 20.20.1 with chan_sip
enabled: tests/fixtures/asterisk-20.20.1/ami/events/sip_register_unreachable_unregister.raw and the
SIPpeers replies in ami/actions/). Only a version whose recordings have a SIPpeers list answers for
them; the events are built on that version's recorded PeerStatus of the same status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.fakes.ami_wire import Pairs, Recordings, device_state_change, sip_peer_status


@dataclass
class FakeSipPeer:
    """A chan_sip dynamic peer (Asterisk <= 20): ``address`` ``host:port`` while registered, ``status``
    as SIPpeers lists it (``OK (1 ms)``, ``UNREACHABLE``, ``UNKNOWN``; asterisk-20.20.1 recordings)."""

    name: str
    address: str = ""
    status: str = "UNKNOWN"

    @property
    def device_state(self) -> str:
        return "NOT_INUSE" if self.address and self.status.startswith("OK") else "UNAVAILABLE"


class SipPeers:
    """Mixed into `tests.fakes.ami.FakeAMIServer` (which provides ``emit`` and ``rec``)."""

    sip_peers: dict[str, FakeSipPeer]
    rec: Recordings
    emit: Callable[[Pairs], None]

    def add_sip_peer(self, name: str) -> FakeSipPeer:
        """A configured dynamic peer, not registered (SIPpeers: ``IPaddress: -none-``)."""
        peer = self.sip_peers[name] = FakeSipPeer(name)
        return peer

    def sip_register(self, name: str, address: str = "127.0.0.1:5230", *, reachable: bool = True,
                     rtt_ms: int = 1) -> FakeSipPeer:
        """REGISTER of a chan_sip peer and its first qualify, in the recorded order: PeerStatus
        Registered (``Address``), DeviceStateChange NOT_INUSE, PeerStatus Reachable (no ``Time``); with
        ``reachable=False`` the qualify fails instead (`sip_unreachable`)."""
        peer = self.sip_peers.get(name) or self.add_sip_peer(name)
        peer.address = address
        self.emit(sip_peer_status(name, "Registered", self.rec, Address=address))
        if reachable:
            self.emit(device_state_change(f"SIP/{name}", "NOT_INUSE", self.rec))
            self.emit(sip_peer_status(name, "Reachable", self.rec))
            peer.status = f"OK ({rtt_ms} ms)"
        else:
            self.sip_unreachable(name)
        return peer

    def sip_unreachable(self, name: str) -> None:
        """A failed qualify: PeerStatus Unreachable (``Time: -1``), DeviceStateChange UNAVAILABLE."""
        self.sip_peers[name].status = "UNREACHABLE"
        self.emit(sip_peer_status(name, "Unreachable", self.rec))
        self.emit(device_state_change(f"SIP/{name}", "UNAVAILABLE", self.rec))

    def sip_unregister(self, name: str) -> None:
        """REGISTER with Expires: 0 (chan_sip says ``Cause: Expired`` for it too); SIPpeers keeps the
        peer with ``IPaddress: -none-`` and its last status."""
        self.sip_peers[name].address = ""
        self.emit(sip_peer_status(name, "Unregistered", self.rec))

    def sip_peers_silently(self, peers: dict[str, str]) -> None:
        """Registered, reachable peers (name -> address) put in place without events."""
        for name, address in peers.items():
            self.sip_peers[name] = FakeSipPeer(name, address, "OK (1 ms)")

    def sip_peer_items(self) -> list[tuple[str, dict[str, object]]]:
        items: list[tuple[str, dict[str, object]]] = []
        for peer in self.sip_peers.values():
            host, _, port = peer.address.rpartition(":")
            items.append(("PeerEntry", {"ObjectName": peer.name, "IPaddress": host or "-none-",
                                        "IPport": port if host else "0", "Status": peer.status}))
        return items
