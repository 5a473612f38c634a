"""The VICIdial source: agent dispositions from VICIdial's ``vicidial_log`` / ``vicidial_closer_log``.

- `VICIdialSource`: the component (polls VICIdial's database read-only, queues one DID Optimizer
  report per distinct final status of a call through the outbox).
- `metadata`: telephonyd's own tables for it (checkpoint, statuses seen), for `Store`.
"""

from .schema import metadata
from .source import VICIdialSource

__all__ = ["VICIdialSource", "metadata"]
