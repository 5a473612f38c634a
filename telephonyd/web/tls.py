"""TLS for the HTTP listener (``http.tls``): the server `ssl.SSLContext` and its live reload.

The context is ``ssl.create_default_context(Purpose.CLIENT_AUTH)`` (the standard library's server
defaults: its cipher choice, no compression, no renegotiation) with TLS 1.2 as the lowest version.
With ``client_ca_file`` the handshake asks for a client certificate (``CERT_OPTIONAL``) and
verifies any that is sent against those CAs; `HTTPServer` refuses admin requests without one.

`reload_certificate` loads the certificate files into the same context again: handshakes after it
present the new certificate, connections already open keep theirs. The files are first loaded into a
scratch context, so a bad pair (unreadable, mismatched key) raises and leaves the live one as it was.
"""

from __future__ import annotations

import ssl

from ..config import HTTPTLSConfig


def _load_into(context: ssl.SSLContext, config: HTTPTLSConfig) -> None:
    context.load_cert_chain(certfile=str(config.cert_file), keyfile=str(config.key_file))


def server_context(config: HTTPTLSConfig) -> ssl.SSLContext:
    """The listener's context. Raises OSError (missing/unreadable file) or ssl.SSLError (bad PEM,
    key not matching the certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_into(context, config)
    if config.client_ca_file is not None:
        context.load_verify_locations(cafile=str(config.client_ca_file))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def reload_certificate(context: ssl.SSLContext, config: HTTPTLSConfig) -> None:
    """Put the certificate and key of ``config`` into ``context`` for new handshakes. Raises as
    `server_context` does, before touching ``context``."""
    _load_into(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), config)
    _load_into(context, config)
