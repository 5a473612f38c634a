"""The client `ssl.SSLContext` for AMI over TLS (``ami.tls``; Asterisk ``manager.conf``
``tlsenable=yes``, ``tlsbindaddr`` port 5039 by default, checked on Asterisk 22.10.1).

The standard library's client defaults (``create_default_context(Purpose.SERVER_AUTH)``: chain and
host name verified, TLS 1.2 or later). ``ca_file`` replaces the system store; ``verify: false``
turns verification off (a lab's self-signed certificate) and is logged as a warning at start;
``check_hostname: false`` keeps the chain check only. The login inside (plain Secret or MD5
challenge) is unchanged: TLS only wraps the byte stream.
"""

from __future__ import annotations

import logging
import ssl

from ..config import AMIConfig
from ..errors import ConfigError

log = logging.getLogger(__name__)


def client_context(config: AMIConfig) -> ssl.SSLContext | None:
    """The context for ``config.tls``, or None when TLS is off. Raises `ConfigError` (path
    ``ami.tls``) when a CA, certificate or key file cannot be loaded."""
    tls = config.tls
    if not tls.enabled:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(tls.ca_file) if tls.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except OSError as exc:  # ssl.SSLError included
        raise ConfigError(f"ami.tls: cannot load the CA, certificate or key ({type(exc).__name__}: {exc})",
                          "ami.tls") from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning("AMI over TLS without certificate verification (ami.tls.verify: false)")
    elif not tls.check_hostname:
        context.check_hostname = False
    return context


def server_hostname(config: AMIConfig) -> str:
    """The name sent as SNI and checked against Asterisk's certificate."""
    return config.tls.server_hostname or config.host
