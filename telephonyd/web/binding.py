"""Listening sockets for the HTTP listener, bound here so the listener holds them (they are served
with ``loop.create_server(sock=...)`` and `connections.protocol_factory`; `web.TCPSite` would keep
the ones it binds private).

Binding follows `asyncio.loop.create_server`: every address ``host`` resolves to (passive), with
``SO_REUSEADDR`` and ``IPV6_V6ONLY`` on IPv6, so ``0.0.0.0``, ``::``, ``localhost`` and a literal
address mean what they meant with `web.TCPSite`.
"""

from __future__ import annotations

import socket


def bind_tcp(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) non-blocking TCP sockets for ``host``:``port``; raises OSError
    (address in use, not resolvable) after closing any socket it already made."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    made: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: "
                                         f"{(exc.strerror or '').lower()}") from None
            sock.setblocking(False)
    except BaseException:
        for sock in made:
            sock.close()
        raise
    return made
