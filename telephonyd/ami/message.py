"""`AMIMessage`: one AMI packet (response or event) as ordered ``(key, value)`` pairs.

Keys are case-insensitive on the wire and may repeat (``ChanVariable``, ``Output``, ``Contacts``),
so a message keeps every pair in order; `get` answers the first value of a key and `get_all` every
value. Values are kept exactly as received (empty values such as ``RegServer: `` stay ``""``).
A message from the framing's fast path keeps its text and builds the pairs on the first field read:
routing needs only the event name, read off the first line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

#: One ``Key: Value`` line: the key up to the first ": " (no control characters; a colon inside it
#: not followed by a space), the value to the line end (a CR before the LF is not part of it). Written
#: without lazy quantifiers (25 % faster than ``(.+?): (.*?)\r?$``); the framing sends a line it does
#: not match whole (a CR inside a value, a key starting with a colon) to its line-by-line parser.
LINE = re.compile(r"^([^\x00-\x1f\x7f:]+(?::(?! )[^\x00-\x1f\x7f:]*)*): ([^\r\n]*)\r?$", re.MULTILINE)


class AMIMessage:
    """An AMI response or event.

    ``seq`` is the receive order within one `AMIClient` (increasing across reconnects) and
    ``received_at`` the ``time.monotonic()`` of its arrival; both are set by the client and are
    0 for messages built elsewhere. Consumers use ``seq`` to tell whether an event is newer than
    a list reply (``PJSIPShowContacts``) they also received.
    """

    __slots__ = ("_block", "_event", "_index", "_pairs", "received_at", "seq")

    def __init__(self, pairs: Iterable[tuple[str, str]] = (), *, seq: int = 0, received_at: float = 0.0) -> None:
        self._pairs: list[tuple[str, str]] | None = pairs if isinstance(pairs, list) else list(pairs)
        self._block = ""
        self._event: str | None = None
        self._index: dict[str, str] | None = None
        self.seq = seq
        self.received_at = received_at

    @classmethod
    def from_block(cls, block: str, event: str | None = None) -> AMIMessage:
        """A message kept as its text until a field is read (most events are only routed by name).

        ``block``: the message's lines, ``\\r\\n`` between them and none after the last, every one a
        ``Key: Value`` that `LINE` matches whole (the framing checks this before it calls here).
        ``event``: the value of its first line when that reads ``Event: ...``, if the caller has it.
        """
        self = cls.__new__(cls)
        self._pairs = None
        self._block = block
        self._event = event
        self._index = None
        self.seq = 0
        self.received_at = 0.0
        return self

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every ``(key, value)`` in wire order."""
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = LINE.findall(self._block)
            self._block = ""
        return pairs

    @property
    def _first(self) -> dict[str, str]:
        """Lower-cased key -> first value, built on the first lookup (many events are never read)."""
        index = self._index
        if index is None:
            # Built from the end so that the first value of a repeated key wins.
            index = self._index = {key.lower(): value for key, value in reversed(self.pairs)}
        return index

    @classmethod
    def from_fields(cls, fields: dict[str, object] | Iterable[tuple[str, object]]) -> AMIMessage:
        """Build a message from a mapping or pairs; list values become repeated keys."""
        items = fields.items() if isinstance(fields, dict) else fields
        pairs: list[tuple[str, str]] = []
        for key, value in items:
            if isinstance(value, (list, tuple)):
                pairs.extend((key, str(v)) for v in value)
            elif value is not None:
                pairs.append((key, str(value)))
        return cls(pairs)

    # -- lookups ---------------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of ``key`` (case-insensitive), or ``default``."""
        return self._first.get(key.lower(), default)

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` in wire order (empty list when absent)."""
        lowered = key.lower()
        return [v for k, v in self.pairs if k.lower() == lowered]

    def __getitem__(self, key: str) -> str:
        try:
            return self._first[key.lower()]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    @property
    def event(self) -> str | None:
        """The ``Event`` value (``ContactStatus``) or None for a response."""
        event = self._event
        if event is not None:
            return event
        block = self._block
        if block.startswith("Event: "):  # where Asterisk puts it: read off the text, no pairs
            end = block.find("\r\n")
            event = self._event = block[7:end] if end >= 0 else block[7:]
            return event
        pairs = self.pairs
        if pairs and pairs[0][0] == "Event":
            return pairs[0][1]
        return self._first.get("event")

    @property
    def response(self) -> str | None:
        """The ``Response`` value (``Success``, ``Error``, ``Goodbye``, ``Follows``) or None."""
        return self._first.get("response")

    @property
    def action_id(self) -> str | None:
        if self._pairs is None and "actionid: " not in self._block.lower():
            return None  # most events: no pairs built to learn that
        return self._first.get("actionid")

    @property
    def is_success(self) -> bool:
        response = self._first.get("response")
        return response is not None and response.lower() == "success"

    @property
    def is_error(self) -> bool:
        response = self._first.get("response")
        return response is not None and response.lower() == "error"

    # -- container protocol ----------------------------------------------------------------------

    def keys(self) -> list[str]:
        return [k for k, _ in self.pairs]

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)

    def to_dict(self) -> dict[str, str]:
        """First value per key, keys as first spelled on the wire (for logs and JSON)."""
        out: dict[str, str] = {}
        seen: set[str] = set()
        for key, value in self.pairs:
            if key.lower() not in seen:
                seen.add(key.lower())
                out[key] = value
        return out

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AMIMessage):
            return NotImplemented
        return self.pairs == other.pairs

    def __hash__(self) -> int:
        return hash(tuple(self.pairs))

    def __repr__(self) -> str:
        head = f"Event={self.event}" if self.event is not None else f"Response={self.response}"
        return f"<AMIMessage {head} {len(self.pairs)} fields>"
