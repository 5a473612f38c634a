"""The ``calls`` configuration section: call tracking, call events, webhooks, call records.

Kept beside the feature (the `telephonyd.config.Config` model holds it as ``calls``).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..reloadmarks import Reload, marks

VARIABLE_FIELDS = ("campaign", "agent", "lead", "did")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class WebhookConfig(_Section):
    """One webhook subscription.

    ``name`` names the outbox target ``webhook:<name>`` (rows, retries, dead letters, CLI);
    ``url`` receives ``POST`` of each call event (JSON, schema in docs/call-events.md); ``events``
    the kinds sent (all when empty); ``contexts`` / ``campaigns`` / ``endpoints`` keep only calls
    whose first leg's context, campaign or agent endpoint / leg endpoints are listed (empty: any).
    ``secret`` signs the body (``X-Telephonyd-Signature: t=<epoch s>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">``); without it the request is unsigned.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,48}$")
    url: str = Field(pattern=r"^https?://")
    enabled: bool = True
    secret: SecretStr | None = None
    events: list[Literal["call.ringing", "call.answered", "call.held", "call.transferred", "call.ended"]] = []
    contexts: list[str] = []
    campaigns: list[str] = []
    endpoints: list[str] = []
    timeout_s: float = Field(10.0, gt=0)

    @property
    def target(self) -> str:
        return f"webhook:{self.name}"


class CallsConfig(_Section):
    """Calls as events (needs ``ami.enabled``).

    ``max_age_s``: a call with no Hangup is closed after this long; ``max_calls``: live calls kept
    at most (the oldest is closed past it). ``trunks``: endpoint names of trunks (for ``direction``
    and the agent endpoint); ``inbound_contexts`` / ``outbound_contexts``: dialplan contexts that
    make a call inbound / outbound. ``variables``: channel variables read from ``VarSet`` for
    ``campaign``, ``agent``, ``lead``, ``did`` (first non-empty wins; empty: VarSet is not read).
    ``mqtt``: publish ``calls/<linkedid>`` and ``events/call`` when ``mqtt.enabled``.
    ``records``: keep a call record per finished call for ``retention_s`` (0: forever).
    ``outcomes``: report each finished call to the DID Optimizer from AMI (for dialplans without
    the ``call_log`` AGI line; keyed like ``call_log`` so a call seen by both is reported once).
    ``queue_size``: call events waiting for the store before the oldest are dropped.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="enabled max_age_s max_calls trunks inbound_contexts outbound_contexts agent_technologies "
        "variables mqtt records retention_s outcomes queue_size ws_queue_size webhooks",
    )
    enabled: bool = False
    max_age_s: float = Field(4 * 3600.0, gt=0)
    max_calls: int = Field(50_000, ge=1)
    trunks: list[str] = []
    inbound_contexts: list[str] = []
    outbound_contexts: list[str] = []
    agent_technologies: list[str] = Field(["PJSIP", "SIP", "IAX2"], min_length=1)
    variables: dict[str, list[str]] = {}
    mqtt: bool = True
    records: bool = True
    retention_s: float = Field(30 * 86400.0, ge=0)
    outcomes: bool = False
    queue_size: int = Field(100_000, ge=100)
    ws_queue_size: int = Field(1024, ge=2)
    webhooks: list[WebhookConfig] = []

    @field_validator("variables")
    @classmethod
    def _known_fields(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - set(VARIABLE_FIELDS))
        if unknown:
            raise ValueError(f"unknown call variable field(s) {unknown} (one of {', '.join(VARIABLE_FIELDS)})")
        for names in v.values():
            for name in names:
                if not re.fullmatch(r"[A-Za-z0-9_()]{1,80}", name):
                    raise ValueError(f"not a channel variable name: {name!r}")
        return v

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, v: list[WebhookConfig]) -> list[WebhookConfig]:
        names = [w.name for w in v]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return v

