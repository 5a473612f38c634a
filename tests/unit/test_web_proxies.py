"""Client address behind trusted proxies (`telephonyd.web.proxies.client_address`)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from telephonyd.web.proxies import UNKNOWN, client_address, forwarded_for_hops, parse_ip

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_untrusted_peer_keeps_its_address_whatever_the_header_says():
    assert client_address("203.0.113.9", ["198.51.100.7"], PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", ["for=198.51.100.7"], PROXIES, "forwarded") == "203.0.113.9"


def test_no_trusted_proxies_configured_ignores_the_header():
    assert client_address("10.0.0.1", ["198.51.100.7"], []) == "10.0.0.1"


def test_trusted_peer_without_header_is_the_client():
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"


def test_rightmost_untrusted_hop_wins_over_what_the_client_prepended():
    # the client sent "X-Forwarded-For: 192.0.2.1" (spoofed); nginx appended the real address
    assert client_address("10.0.0.1", ["192.0.2.1, 198.51.100.7"], PROXIES) == "198.51.100.7"


def test_chain_of_trusted_proxies_is_walked_past():
    assert client_address("10.0.0.1", ["198.51.100.7, 10.2.3.4", "10.9.9.9"], PROXIES) == "198.51.100.7"


def test_all_hops_trusted_gives_the_leftmost():
    assert client_address("10.0.0.1", ["10.1.1.1, 10.2.2.2"], PROXIES) == "10.1.1.1"


def test_unparseable_rightmost_untrusted_hop_is_unknown():
    assert client_address("10.0.0.1", ["198.51.100.7, not-an-ip"], PROXIES) == UNKNOWN
    assert client_address("10.0.0.1", ["for=unknown"], PROXIES, "forwarded") == UNKNOWN
    assert client_address("10.0.0.1", ["for=_hidden"], PROXIES, "forwarded") == UNKNOWN


def test_ports_brackets_and_mapped_addresses_are_normalised():
    assert client_address("::ffff:10.0.0.1", ["198.51.100.7:5123"], PROXIES) == "198.51.100.7"
    assert client_address("fd00::1", ["[2001:db8::1]:443"], PROXIES) == "2001:db8::1"
    assert client_address("10.0.0.1", ["::ffff:198.51.100.7"], PROXIES) == "198.51.100.7"


def test_forwarded_rfc7239_forms():
    header = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'
    assert forwarded_for_hops([header]) == ["192.0.2.60", "[2001:db8:cafe::17]:4711"]
    assert client_address("10.0.0.1", [header], PROXIES, "forwarded") == "2001:db8:cafe::17"
    assert client_address("10.0.0.1", ['For="198.51.100.7"', "for=10.3.3.3;proto=https"], PROXIES,
                          "forwarded") == "198.51.100.7"
    assert forwarded_for_hops(["proto=https"]) == [UNKNOWN]


def test_the_other_header_is_never_read():
    # configured for X-Forwarded-For: a Forwarded value passed to it is just a bad hop
    assert client_address("10.0.0.1", ["for=198.51.100.7"], PROXIES) == UNKNOWN


def test_parse_ip():
    assert parse_ip("1.2.3.4:80") == ipaddress.ip_address("1.2.3.4")
    assert parse_ip('"[::1]:80"') == ipaddress.ip_address("::1")
    assert parse_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_ip("") is None and parse_ip("unknown") is None


ipv4 = st.ip_addresses(v=4)
untrusted_v4 = ipv4.filter(lambda a: not any(a in n for n in PROXIES if n.version == 4))
trusted_v4 = st.integers(0, 2**24 - 1).map(lambda i: ipaddress.IPv4Address(0x0A000000 + i))


@given(peer=untrusted_v4, hops=st.lists(st.one_of(ipv4, st.text(max_size=20)), max_size=8))
def test_property_an_untrusted_peer_is_never_replaced(peer, hops):
    assert client_address(str(peer), [", ".join(map(str, hops))], PROXIES) == str(peer)


@given(peer=trusted_v4, spoofed=st.lists(st.text(max_size=30), max_size=5), real=untrusted_v4,
       chain=st.lists(trusted_v4, max_size=4))
def test_property_whatever_the_client_prepends_the_address_its_proxy_saw_wins(peer, spoofed, real, chain):
    values = [*spoofed, str(real), *map(str, chain)]
    assert client_address(str(peer), values, PROXIES) == str(real)


@given(peer=trusted_v4, values=st.lists(st.text(max_size=60), max_size=4))
def test_property_result_is_an_address_or_unknown(peer, values):
    result = client_address(str(peer), values, PROXIES)
    assert result == UNKNOWN or parse_ip(result) is not None
    if result != UNKNOWN and values and any(v.strip(", ") for v in values):
        # a trusted-proxy peer yields a hop from the header, never a made-up address
        assert result == str(peer) or result in {str(parse_ip(h)) for v in values for h in v.split(",")}


ipv6_untrusted = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None and a not in PROXIES[1])


@given(peer=trusted_v4, spoofed=st.lists(st.text(max_size=30).filter(lambda t: '"' not in t), max_size=3),
       real=st.one_of(untrusted_v4, ipv6_untrusted), port=st.none() | st.integers(1, 65535),
       chain=st.lists(trusted_v4, max_size=3))
def test_property_forwarded_rightmost_untrusted_for_wins(peer, spoofed, real, port, chain):
    """RFC 7239: the element the nearest untrusted hop's proxy wrote, in any of its forms."""
    host = f"[{real}]" if real.version == 6 else str(real)
    if port is not None:
        host = f"{host}:{port}"
    quoted = f'"{host}"' if (real.version == 6 or port is not None) else host
    values = [*(f"for={s}" for s in spoofed), f"for={quoted};proto=https;by=10.0.0.1", *(f"for={c}" for c in chain)]
    assert client_address(str(peer), values, PROXIES, "forwarded") == str(real)
