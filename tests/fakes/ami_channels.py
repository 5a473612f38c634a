"""`RecordedChannelsAMI`: the fake Asterisk answering ``CoreShowChannels`` with a recorded reply.

Replies recorded on the lab's Asterisk 22.10.1 (tests/fixtures/asterisk-22.10.1/ami/calls/): idle
(54) or two bridged calls up (56). The recorded ActionID is swapped for the request's.
"""

from __future__ import annotations

from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.ami import FakeAMIServer
from tests.fakes.ami_wire import value_of

LISTINGS = ASTERISK_FIXTURES / "ami" / "calls"
IDLE = "54_CoreShowChannels_idle.recv.raw"
TWO_CALLS = "56_CoreShowChannels_2_calls.recv.raw"


class RecordedChannelsAMI(FakeAMIServer):
    """``listing``: the recording answered to CoreShowChannels (change it between logins)."""

    listing = IDLE

    async def _answer(self, s, pairs):  # type: ignore[no-untyped-def]
        if value_of(pairs, "Action").lower() != "coreshowchannels" or not s.logged_in:
            return await super()._answer(s, pairs)
        raw = (LISTINGS / self.listing).read_bytes()
        recorded_id = raw.split(b"ActionID: ", 1)[1].split(b"\r\n", 1)[0]
        s.send(raw.replace(b"ActionID: " + recorded_id + b"\r\n",
                           b"ActionID: " + value_of(pairs, "ActionID").encode() + b"\r\n"))
        return True
