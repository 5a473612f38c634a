"""telephonyd: one asyncio daemon beside Asterisk/VICIdial.

FastAGI call-outcome reporting, AMI contact and presence sync, Ameyo dialer callbacks, all over a
durable outbox. See README.md for the operator's view; `telephonyd.app.App` wires the edges.
"""

__version__ = "0.1.0"
