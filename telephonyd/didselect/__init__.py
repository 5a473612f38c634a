"""The ``did_select`` FastAGI route: the caller id DID of each outbound call from the DID Optimizer.

`DIDSelectService` is the component (route handler, breaker, recorder, metrics); ``reply`` holds the
pure rules (query fields, reply verdicts, DID normalization, channel settings); ``breaker`` the
circuit breaker; ``client`` the HTTP request; ``recorder``/``schema`` the ``did_selection`` table;
``commands`` the ``telephonyd did show`` command.
"""

from .breaker import CircuitBreaker
from .handler import DIDSelectHandler
from .model import Selection
from .reply import SelectionQuery, Verdict, channel_settings, judge, normalize_did
from .service import DIDSelectService

__all__ = [
    "CircuitBreaker",
    "DIDSelectHandler",
    "DIDSelectService",
    "Selection",
    "SelectionQuery",
    "Verdict",
    "channel_settings",
    "judge",
    "normalize_did",
]
