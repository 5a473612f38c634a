"""The client address behind trusted reverse proxies (``http.trusted_proxies``).

`client_address` is pure: given the TCP peer, the proxy header's values and the trusted networks it
returns the address the daemon treats as the client's (the Ameyo allowlist, logs, refusals). Only
when the peer itself is trusted is the header read at all; then the hops are walked from the right
(the hop the nearest proxy appended) past every trusted one, and the first untrusted hop is the
client: hops further left were written by the client or by proxies nobody vouches for, so a client
cannot place an address of its choosing there. Which header is read is configured
(``http.proxy_header``), never guessed: a proxy that sets one passes the other through as the
client sent it.

Header forms: ``X-Forwarded-For: client, proxy1, proxy2`` (the de facto form nginx and HAProxy
write, ``$proxy_add_x_forwarded_for``); ``Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"``
(RFC 7239 section 4/6: quoted strings, bracketed IPv6, optional port, ``unknown`` and obfuscated
``_name`` identifiers). A hop that is not an IP address (``unknown``, ``_hidden``, garbage) ends the
walk with `UNKNOWN`, which no network contains: an allowlist then refuses rather than guessing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ProxyHeader = Literal["x-forwarded-for", "forwarded"]

#: The client address when the rightmost untrusted hop is not an IP address.
UNKNOWN = "unknown"
#: Hops considered at most (a longer header is cut from the left, the client's side).
MAX_HOPS = 32


def parse_ip(text: str) -> IPAddress | None:
    """An address from a hop or peer: ``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:443``,
    ``2001:db8::1``; IPv4-mapped IPv6 becomes IPv4. None when it is not an address."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress | None, trusted: Sequence[Network]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in trusted)


def _split_commas(value: str) -> list[str]:
    """Split on commas outside double quotes (RFC 7230 lists; RFC 7239 quoted-strings)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def forwarded_for_hops(values: Iterable[str]) -> list[str]:
    """The ``for=`` value of each RFC 7239 element, in order (an element without one counts as
    ``unknown``: the hop that wrote it did not say)."""
    hops: list[str] = []
    for value in values:
        for element in _split_commas(value):
            found = UNKNOWN
            for pair in element.split(";"):
                name, sep, raw = pair.partition("=")
                if sep and name.strip().lower() == "for":
                    found = raw.strip().strip('"').replace("\\", "")
                    break
            hops.append(found)
    return hops


def x_forwarded_for_hops(values: Iterable[str]) -> list[str]:
    """The hops of every ``X-Forwarded-For`` line, in order (lines joined as one list)."""
    return [hop for value in values for hop in _split_commas(value)]


def is_loopback(address: str | None) -> bool:
    """True when ``address`` (a client IP as ``request.remote`` gives it) is this host's own:
    127.0.0.0/8, ``::1`` or an IPv4-mapped 127.x; False for None, ``UNKNOWN`` and anything else."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def client_address(peer: str | None, header_values: Sequence[str], trusted: Sequence[Network],
                   header: ProxyHeader = "x-forwarded-for") -> str | None:
    """The client address for a request from TCP ``peer`` carrying ``header_values`` (every line of
    the configured proxy ``header``, in order). Returns ``peer`` unchanged unless the peer is in
    ``trusted`` and the header is present; then the rightmost hop not in ``trusted`` (normalised:
    no port, no brackets, IPv4 for IPv4-mapped), the leftmost hop when all are trusted, or `UNKNOWN`
    when that hop is not an IP address."""
    if not trusted or not header_values or not is_trusted(parse_ip(peer or ""), trusted):
        return peer
    hops = forwarded_for_hops(header_values) if header == "forwarded" else x_forwarded_for_hops(header_values)
    hops = hops[-MAX_HOPS:]
    if not hops:
        return peer
    address: IPAddress | None = None
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            return UNKNOWN
        if not is_trusted(address, trusted):
            return str(address)
    return str(address)
