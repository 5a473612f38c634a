"""`PresenceService`: feeds the presence state machine from AMI and the contacts provider.

Event subscriptions (AMI ``call`` class unless noted; Asterisk 22.10.1 field names):

| AMI event           | fields used                      | effect                                        |
|---------------------|----------------------------------|-----------------------------------------------|
| DeviceStateChange   | Device (PJSIP/1010), State       | device state of the endpoint                  |
| Newchannel          | Channel (PJSIP/1010-00000003)    | channel tracked for the Hangup cross-check    |
| Hangup              | Channel                          | channel gone; last one may end the call state |
| DeviceStateChange   | Device (Custom:DND1010), State   | mapped Custom: device (``custom_device_states``) |
| QueueMemberStatus/Pause/Added (``agent``) | Queue, StateInterface, Paused, PausedReason | membership |
| QueueMemberRemoved (``agent``) | Queue, StateInterface  | membership gone                               |
| PresenceStateChange | Presentity (CustomPresence:1010), Status, Subtype, Message | presence state |

See `availability` for the mapping and `state` for the precedence of dnd/paused/away.

Contacts (and so ``online``) come from the contacts provider (`ContactsSync`: PJSIP contacts, and
one contact per registered chan_sip/IAX2 peer, as `contacts.model.Contact`). It notifies once per
applied batch; only the endpoints named in the batch are re-read, from its per-endpoint index, so an
event costs O(contacts of its endpoint), never O(all contacts).
``DeviceStateChange`` events that carry an ActionID are items of our own ``DeviceStateList`` and
are handled by the seed, not as live events.

Seed (each AMI (re)connect, and `refresh`): ``DeviceStateList`` (Asterisk 13+; on error
``PJSIPShowEndpoints`` and its ``DeviceState`` text; its ``Custom:`` items give the mapped overlays),
``CoreShowChannels`` for the live channels, ``QueueStatus`` (an ``Invalid/unknown command`` answer,
app_queue not loaded, means no queues), ``PresenceStateList`` (refused: left as known), and the
provider's contacts. Live events that arrive while the listings run win over the listings. The
listings are parsed and applied `sync_slice` endpoints per event-loop turn (see `seed_apply`). A
complete listing retires the endpoints that are gone and emits `AgentsResynced`.

Listeners (`add_listener`) are synchronous callables receiving `AgentStatus`, `AgentRetired` and
`AgentsResynced`; they must not block (the MQTT publisher and the WebSocket stream only enqueue).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from ..config import Config, PresenceConfig
from ..errors import TelephonydError
from ..heap import keep_long_lived
from ..contacts.model import Contact, ContactChange
from . import dashboard
from .live import LiveEvents
from .metrics import AgentsSection
from .seed import SeedListings
from .devices import EndpointFilter
from .state import AgentsResynced, AgentStatus, PresenceEvent, PresenceMachine, iso_utc

log = logging.getLogger(__name__)

Listener = Callable[[PresenceEvent], None]


class PresenceUnavailable(TelephonydError):
    """A resync cannot run now (AMI not connected); retrying later may work."""

    retryable = True


class AMIClientLike(Protocol):
    connected: bool
    last_event_at: float | None

    def subscribe(self, pattern: str, callback: Callable[[Any], None]) -> Any: ...
    def on_connect(self, callback: Callable[[Any], Awaitable[None]]) -> Any: ...
    async def list_action(self, fields: dict[str, str]) -> tuple[Any, list[Any]]: ...


class ContactsProvider(Protocol):
    last_resync: dict[str, Any] | None  # the last complete resync's counts (None before the first)

    def contacts_of(self, endpoint: str) -> list[Contact]: ...
    def endpoints(self) -> Iterable[str]: ...
    def contact_count(self) -> int: ...
    def subscribe_batch(self, callback: Callable[[list[ContactChange]], None]) -> Any: ...
    async def resync(self) -> dict[str, Any]: ...


class PresenceService(LiveEvents):
    """Agent presence. Component shape: `start`, `run`, `stop`, `health`.

    ``config``: the ``presence`` section. ``ami``: the AMI client (``subscribe(event, callback)``,
    ``on_connect(async callback(client))``, ``list_action({...}) -> (response, items)``,
    ``connected``, ``last_event_at`` epoch seconds). ``contacts``: the contacts provider
    (`ContactsSync`: ``contacts_of(endpoint)``, ``endpoints()``, ``contact_count()``,
    ``subscribe_batch(callback([ContactChange]))``, ``async resync() -> dict``).
    ``node_id``: reported by `status`. ``clock``: epoch seconds (tests inject one).
    """

    #: Endpoints re-read per event-loop turn after a large contacts batch.
    sync_slice = 500

    def __init__(
        self,
        config: PresenceConfig,
        *,
        ami: AMIClientLike,
        contacts: ContactsProvider,
        node_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ami = ami
        self.contacts = contacts
        self.node_id = node_id
        self._clock = clock
        # seq starts above anything an earlier run can have published (ms since the epoch).
        self.machine = PresenceMachine(wrap_up_s=config.wrap_up_s, clock=clock, seq_origin=int(clock() * 1000))
        self.filter = EndpointFilter.build(config.technologies, config.endpoint_pattern)
        self._listeners: list[Listener] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._seed_lock = asyncio.Lock()
        self._seed_tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()
        self._started = False
        self.seeded = False
        self.seeds = 0
        self.last_seed: dict[str, Any] | None = None
        self.last_seed_error: str | None = None
        self.events_handled = 0
        self._to_sync: set[str] = set()  # endpoints waiting in _sync_order
        self._sync_order: deque[str] = deque()
        self._sync_scheduled = False

    # -- listeners -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every change; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, events: Iterable[PresenceEvent]) -> None:
        debug = log.isEnabledFor(logging.DEBUG)  # as_dict per event only when it is logged
        for event in events:
            if debug and event.kind == "status":
                log.debug("agent status", extra=event.as_dict())
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("presence listener failed", extra={"listener": repr(listener)})
        self._reschedule()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to AMI events and contact changes; take the contacts known now."""
        self.ami.subscribe("DeviceStateChange", self._on_device_state)
        self.ami.subscribe("Newchannel", self._on_newchannel)
        self.ami.subscribe("Hangup", self._on_hangup)
        for event in ("QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved"):
            self.ami.subscribe(event, self._on_queue_member)
        self.ami.subscribe("PresenceStateChange", self._on_presence_state)
        self.ami.on_connect(self._on_ami_connect)
        self.contacts.subscribe_batch(self._on_contacts_batch)
        self._sync_contacts(None)
        self._started = True
        if self.ami.connected:
            self._spawn_seed()

    async def run(self) -> None:
        await self._stopped.wait()

    async def stop(self, timeout: float) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._seed_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration (SIGHUP): ``presence.wrap_up_s`` and ``seed_timeout_s``
        change live; technologies and the endpoint pattern need a restart."""
        self.config = self.config.model_copy(update={"wrap_up_s": config.presence.wrap_up_s,
                                                     "seed_timeout_s": config.presence.seed_timeout_s})
        if config.presence.wrap_up_s != self.machine.wrap_up_s:
            self._emit(self.machine.set_wrap_up(config.presence.wrap_up_s))

    def health(self) -> dict[str, Any]:
        if self._stopped.is_set():
            state = "stopped"
        elif self._seed_lock.locked():
            state = "seeding"
        elif not self.ami.connected:
            state = "waiting_for_ami"
        else:
            state = "seeded" if self.seeded else "not_seeded"
        agents = self.machine.agents()
        return {
            "ok": self._started and state in ("seeded", "seeding", "waiting_for_ami"),
            "state": state,
            "agents": len(agents),
            "online": sum(1 for a in agents if a.online),
            "seeds": self.seeds,
            "last_seed_error": self.last_seed_error,
        }

    def collectors(self) -> list[AgentsSection]:
        """The service's metrics (``telephonyd_agents*``), read from the agent statuses."""
        return [AgentsSection(self.agents)]

    # -- queries for the API and the listeners ---------------------------------------------------

    def agents(self) -> list[AgentStatus]:
        return self.machine.agents()

    def agent(self, endpoint: str) -> AgentStatus | None:
        return self.machine.get(endpoint)

    def extension(self, endpoint: str) -> dict[str, Any] | None:
        """One agent with its contacts, device state and live channels; None when unknown."""
        status = self.machine.get(endpoint)
        if status is None:
            return None
        return self._extension_document(status)

    def extensions(self) -> list[dict[str, Any]]:
        return [self._extension_document(s) for s in self.machine.agents()]

    def _extension_document(self, status: AgentStatus) -> dict[str, Any]:
        return {
            **status.as_dict(),
            "device_state": self.machine.device_state_of(status.endpoint),
            "channels": self.machine.channels_of(status.endpoint),
            "availability": self.machine.availability_of(status.endpoint),
            "contacts": [c.to_json() for c in self.contacts.contacts_of(status.endpoint)],
        }

    def dashboard_extensions(self) -> dict[str, dict[str, Any]]:
        """``GET /api/ami/extensions`` in the dashboard's shape (see `dashboard`)."""
        return dashboard.extensions(self.machine.agents(), self.contacts.contacts_of)

    def dashboard_status(self) -> dict[str, Any]:
        """``GET /api/ami/status`` in the dashboard's shape (see `dashboard.status`)."""
        return dashboard.status(self.machine.agents(), connected=bool(self.ami.connected),
                                last_resync=self.contacts.last_resync, seeded=self.seeded,
                                last_seed=self.last_seed, now=self._clock())

    def status(self) -> dict[str, Any]:
        """What ``GET /api/ami/status`` answers."""
        agents = self.machine.agents()
        last_event = self.ami.last_event_at
        states: dict[str, int] = {}
        for agent in agents:
            states[agent.state] = states.get(agent.state, 0) + 1
        return {
            "node_id": self.node_id,
            "connected": bool(self.ami.connected),
            "last_event_at": iso_utc(last_event) if isinstance(last_event, (int, float)) else None,
            "contacts": self.contacts.contact_count(),
            "agents": len(agents),
            "online": sum(1 for a in agents if a.online),
            "states": states,
            "seeded": self.seeded,
            "last_seed": self.last_seed,
        }

    async def refresh(self) -> dict[str, Any]:
        """Force a resync: the contacts provider's, then the presence seed. Raises `PresenceUnavailable`."""
        if not self.ami.connected:
            raise PresenceUnavailable("AMI is not connected")
        async with asyncio.timeout(self.config.seed_timeout_s * 2):
            contacts = await self.contacts.resync()
        presence = await self.seed()
        return {"contacts": contacts, "presence": presence}

    # -- seeding ---------------------------------------------------------------------------------

    async def _on_ami_connect(self, _client: Any) -> None:
        """After each AMI login, FullyBooted and res_pjsip reload (the AMI client coalesces them)."""
        await self._seed_in_background()

    def _spawn_seed(self) -> None:
        if self._stopped.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._seed_in_background(), name="presence-seed")
        self._seed_tasks.add(task)
        task.add_done_callback(self._seed_tasks.discard)

    async def _seed_in_background(self) -> None:
        try:
            await self.seed()
        except (TelephonydError, TimeoutError, OSError) as exc:
            log.warning("presence seed failed", extra={"error": str(exc) or type(exc).__name__})

    async def seed(self) -> dict[str, Any]:
        """Seed from AMI listings (see the module doc); returns a summary of what changed."""
        async with self._seed_lock:
            token = self.machine.begin_seed()
            listed = False
            try:
                lister = SeedListings(self.ami, self.config, self.filter)
                device_states, custom, source = await lister.device_states()
                channels = await lister.channels()
                queues = await lister.queues() if self.config.availability_listings else None
                presence = await lister.presence() if self.config.availability_listings else None
                listed = True
            except (TelephonydError, TimeoutError, OSError) as exc:
                self.last_seed_error = str(exc) or type(exc).__name__
                raise
            finally:
                if not listed:
                    self.machine.abort_seed()
            complete = device_states is not None
            pending: list[str] = []
            retirements: list[PresenceEvent] = []
            steps = self.machine.seed_steps(
                token, retirements, pending, device_states=device_states, contacts_of=self._agent_contacts,
                contact_endpoints=list(self.contacts.endpoints()), channels=channels, retire=complete,
                queues=queues, custom=custom, presence=presence, slice=self.sync_slice)
            try:
                for _ in steps:  # 50,000 agents: one slice per event-loop turn
                    keep_long_lived()  # the agents live until retired: out of the full collections
                    await asyncio.sleep(0)
            except BaseException:
                self.machine.abort_seed()
                raise
            changed: list[str] = []
            for start in range(0, len(pending), self.sync_slice):
                await asyncio.sleep(0)
                events = self.machine.refresh(pending[start:start + self.sync_slice])
                changed += [e.endpoint for e in events if e.kind == "status"]
                self._emit(events)
            retired = [e.endpoint for e in retirements if e.kind == "retired"]
            known = tuple(a.endpoint for a in self.machine.agents())
            if complete:
                self.seeded = True
                retirements.append(AgentsResynced(known))
            self._emit(retirements)
            self.seeds += 1
            self.last_seed_error = None if complete else "no device state listing answered"
            self.last_seed = {
                "at": iso_utc(self._clock()),
                "source": source,
                "agents": len(known),
                "changed": changed,
                "retired": retired,
                "channels": sum(len(v) for v in (channels or {}).values()) if channels is not None else None,
            }
            log.info("presence seeded", extra={k: v for k, v in self.last_seed.items() if k != "changed"})
            return self.last_seed

    def _agent_contacts(self, endpoint: str) -> dict[str, str]:
        """{contact id: status} of the endpoint's contacts whose technology counts for agents (a
        contact without a status yet counts as ``Unknown``, usable)."""
        return {c.id: c.status or "Unknown" for c in self.contacts.contacts_of(endpoint)
                if self.filter.accepts(c.tech, endpoint)}

    def _on_contacts_batch(self, changes: list[ContactChange]) -> None:
        """Re-read the endpoints a batch names. A large batch (a resync) is worked off in slices of
        `sync_slice` endpoints, one per event-loop turn; each slice reads the index as it is then, so
        a later batch overtaking an endpoint still waiting changes nothing."""
        named: set[str] = set()
        for change in changes:
            if change.contact.endpoint:
                named.add(change.contact.endpoint)
            if change.previous is not None and change.previous.endpoint:
                named.add(change.previous.endpoint)
        fresh = sorted(named - self._to_sync)
        self._to_sync.update(fresh)
        self._sync_order.extend(fresh)
        if not self._sync_scheduled:
            self._sync_pending()

    def _sync_pending(self) -> None:
        self._sync_scheduled = False
        count = min(len(self._sync_order), self.sync_slice)
        names = [self._sync_order.popleft() for _ in range(count)]
        self._to_sync.difference_update(names)
        self._sync_contacts(names)
        if self._sync_order and not self._stopped.is_set():
            keep_long_lived()  # a resync-sized batch: its agents out of the full collections
            self._sync_scheduled = True
            asyncio.get_running_loop().call_soon(self._sync_pending)

    def _sync_contacts(self, endpoints: Iterable[str] | None) -> None:
        """Re-read these endpoints' contacts (every endpoint's when None) from the provider's index."""
        if endpoints is None:
            endpoints = sorted(set(self.contacts.endpoints()) | {a.endpoint for a in self.machine.agents()})
        events: list[PresenceEvent] = []
        for name in endpoints:
            events += self.machine.set_contacts(name, self._agent_contacts(name))
        self._emit(events)

    # -- wrap-up timer ---------------------------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.machine.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None or self._stopped.is_set():
            return
        delay = max(0.0, deadline - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._emit(self.machine.expire())

