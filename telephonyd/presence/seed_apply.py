"""`SeedApply`: applying a presence seed's snapshot to the machine, in slices (pure: no I/O).

Mixed into `PresenceMachine`, which owns ``_endpoints``, ``_endpoint``, ``_generation``,
``_seed_from``, ``_hangups_during_seed``, ``refresh`` and ``retire``.

A seed of 50,000 endpoints is applied by `seed_steps`, a generator that does at most ``slice``
endpoints of one step per ``next()``; the caller yields to the event loop between two. Live facts
arriving in between keep winning: device states and overlays changed since ``token`` carry a newer
generation and are kept; hangups keep being recorded until the last step (``_seed_from`` stays set);
contacts are read from the provider's index when each endpoint is reached, never from an older copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from .availability import Membership, PresenceValue

if TYPE_CHECKING:
    from .events import EndpointState, PresenceEvent

ContactsOf = Callable[[str], Mapping[str, str]]


class SeedApply:
    _endpoints: dict[str, EndpointState]
    _generation: int
    _seed_from: int | None
    _hangups_during_seed: dict[str, int]

    def _endpoint(self, endpoint: str) -> EndpointState: ...  # noqa: D102 - provided by PresenceMachine
    def refresh(self, endpoints: Iterable[str]) -> list[PresenceEvent]: ...  # noqa: D102
    def retire(self, endpoint: str) -> list[PresenceEvent]: ...  # noqa: D102

    def begin_seed(self) -> int:
        """Mark the start of a seed; live facts from now on win over the seed's older snapshot."""
        self._seed_from = self._generation
        self._hangups_during_seed = {}
        return self._generation

    def abort_seed(self) -> None:
        """The seed's listings failed (or its application was cancelled); what is applied stays."""
        self._seed_from = None
        self._hangups_during_seed = {}

    def apply_seed(
        self,
        token: int,
        *,
        device_states: Mapping[str, str] | None = None,
        contacts: Mapping[str, Mapping[str, str]] | None = None,
        channels: Mapping[str, Iterable[str]] | None = None,
        retire: bool = False,
        queues: Mapping[str, Mapping[str, Membership]] | None = None,
        custom: Mapping[str, Mapping[str, bool]] | None = None,
        presence: Mapping[str, PresenceValue] | None = None,
        updates: list[str] | None = None,
    ) -> list[PresenceEvent]:
        """Apply a snapshot taken after `begin_seed` returned ``token``, at once.

        ``device_states``: endpoint -> canonical device state, from DeviceStateList (or
        PJSIPShowEndpoints). An endpoint whose device state changed live since ``token`` keeps it.
        ``contacts``: endpoint -> {contact id: ContactStatus} for every endpoint (absent = none).
        ``channels``: endpoint -> live channel names (CoreShowChannels); channels created live since
        ``token`` are kept and channels hung up since then are dropped.
        ``retire``: the listing was complete, so endpoints now unknown are retired (INVALID device
        states do not make an endpoint known). ``updates``: when given, the endpoints to `refresh`
        are appended to it (the caller refreshes them in slices) instead. Returns status changes,
        then retirements.
        """
        out: list[PresenceEvent] = []
        pending: list[str] = []
        contacts_of = None if contacts is None else (lambda e: contacts.get(e) or {})
        for _ in self.seed_steps(token, out, pending, device_states=device_states, contacts_of=contacts_of,
                                 contact_endpoints=contacts or (), channels=channels, retire=retire,
                                 queues=queues, custom=custom, presence=presence, slice=1 << 62):
            pass
        if updates is not None:
            updates.extend(pending)
            return out
        return self.refresh(pending) + out

    def seed_steps(
        self,
        token: int,
        retirements: list[PresenceEvent],
        updates: list[str],
        *,
        device_states: Mapping[str, str] | None,
        contacts_of: ContactsOf | None,
        contact_endpoints: Iterable[str],
        channels: Mapping[str, Iterable[str]] | None,
        retire: bool,
        queues: Mapping[str, Mapping[str, Membership]] | None,
        custom: Mapping[str, Mapping[str, bool]] | None,
        presence: Mapping[str, PresenceValue] | None,
        slice: int,
    ) -> Iterator[None]:
        """`apply_seed` in steps of at most ``slice`` endpoints (see the module doc).

        ``contacts_of(endpoint)``: {contact id: ContactStatus} now; ``contact_endpoints``: the
        endpoints having contacts. The endpoints to `refresh` go to ``updates`` and the
        retirements to ``retirements`` after the last step. Drive it to its end, or call
        `abort_seed` when stopping early.
        """
        touched: set[str] = set()
        done = 0

        def tick() -> bool:
            nonlocal done
            done += 1
            return done % slice == 0

        if device_states is not None:
            for endpoint, state in device_states.items():
                if tick():
                    yield
                if state == "INVALID" and endpoint not in self._endpoints:
                    continue
                ep = self._endpoint(endpoint)
                if ep.device_state_gen <= token:
                    ep.device_state = state
                touched.add(endpoint)
        if contacts_of is not None:
            for endpoint in dict.fromkeys([*self._endpoints, *contact_endpoints]):
                if tick():
                    yield
                entries = contacts_of(endpoint)
                if entries:
                    self._endpoint(endpoint).contacts = dict(entries)
                    touched.add(endpoint)
                elif (ep := self._endpoints.get(endpoint)) is not None:
                    ep.contacts = {}
        if channels is not None:
            for endpoint in dict.fromkeys([*channels, *self._endpoints]):
                if tick():
                    yield
                names = set(channels.get(endpoint, ()))
                if endpoint not in self._endpoints and not names:
                    continue
                ep = self._endpoint(endpoint)
                hungup = self._hangups_during_seed
                kept = {c: g for c, g in ep.channels.items() if g > token}
                kept.update({c: token for c in names if c not in hungup and c not in kept})
                ep.channels = kept
        for facts, attr in ((queues, "queues"), (custom, "custom"), (presence, "presence")):
            if facts is None:
                continue
            for endpoint in dict.fromkeys([*facts, *self._endpoints]):
                if tick():
                    yield
                if endpoint not in self._endpoints and not facts.get(endpoint):
                    continue
                ep = self._endpoint(endpoint)
                if ep.overlay_gen <= token:
                    value = facts.get(endpoint)
                    if attr == "presence":
                        ep.presence = value  # type: ignore[assignment]
                    else:
                        setattr(ep, attr, dict(value or {}))  # type: ignore[call-overload]
        self._seed_from = None
        self._hangups_during_seed = {}
        gone: list[str] = []
        if retire and device_states is not None:
            for endpoint in list(self._endpoints):  # candidates; checked again below, after the yields
                if tick():
                    yield
                if self._gone(endpoint, token, touched, contacts_of is not None):
                    gone.append(endpoint)
            gone = [endpoint for endpoint in gone if self._gone(endpoint, token, touched, contacts_of is not None)]
        gone_set = set(gone)
        updates.extend(endpoint for endpoint in sorted(self._endpoints) if endpoint not in gone_set)
        for endpoint in sorted(gone):
            retirements += self.retire(endpoint)

    def _gone(self, endpoint: str, token: int, touched: set[str], fresh_contacts: bool) -> bool:
        """Retire it? ``fresh_contacts``: the contacts were read from the provider during the seed
        and kept current by it since, so an endpoint that got contacts after its slice counts as
        listed, as it would have in a snapshot taken at the end."""
        ep = self._endpoints.get(endpoint)
        return ep is not None and not (
            ((endpoint in touched or (fresh_contacts and ep.contacts)) and (ep.device_state != "INVALID" or ep.online))
            or ep.device_state_gen > token
            or any(g > token for g in ep.channels.values())
        )
