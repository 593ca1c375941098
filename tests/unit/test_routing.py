"""Connected and static routes, longest-prefix match for both families."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import parse_config
from controller.ip.routing import RouteError, RoutingTable

CONFIG = """
[[ports]]
id = 1
name = "eth0"
mac = "02:00:00:00:01:fe"
addresses = ["10.0.1.254/24", "2001:db8:1::fe/64"]
[[ports]]
id = 2
name = "eth1"
mac = "02:00:00:00:02:fe"
addresses = ["10.0.2.254/24", "10.0.20.254/24", "2001:db8:2::fe/64"]
[[ports]]
id = 3
name = "eth2"
mac = "02:00:00:00:03:fe"
addresses = ["192.168.0.1/30"]
[[routes]]
prefix = "10.0.3.0/24"
via = "10.0.2.1"
[[routes]]
prefix = "10.0.3.128/25"
via = "10.0.20.7"
[[routes]]
prefix = "0.0.0.0/0"
via = "192.168.0.2"
[[routes]]
prefix = "2001:db8:3::/48"
via = "2001:db8:2::1"
[[routes]]
prefix = "198.51.100.0/24"
port = "eth0"
"""


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


@pytest.fixture
def table() -> RoutingTable:
    return RoutingTable.from_config(parse_config(CONFIG))


@pytest.mark.parametrize(
    ("dst", "port", "next_hop", "src"),
    [
        ("10.0.1.7", 1, "10.0.1.7", "10.0.1.254"),  # connected: the destination itself
        ("10.0.20.9", 2, "10.0.20.9", "10.0.20.254"),  # second address of a port
        ("10.0.3.1", 2, "10.0.2.1", "10.0.2.254"),  # static via
        ("10.0.3.200", 2, "10.0.20.7", "10.0.20.254"),  # the longer /25 wins
        ("8.8.8.8", 3, "192.168.0.2", "192.168.0.1"),  # default route
        ("198.51.100.9", 1, "198.51.100.9", "10.0.1.254"),  # port route: on-link
        ("2001:db8:1::99", 1, "2001:db8:1::99", "2001:db8:1::fe"),
        ("2001:db8:3:5::1", 2, "2001:db8:2::1", "2001:db8:2::fe"),
    ],
)
def test_lookup(table: RoutingTable, dst: str, port: int, next_hop: str, src: str) -> None:
    hop = table.lookup(a(dst))
    assert hop is not None
    assert (hop.port, hop.next_hop, hop.src) == (port, a(next_hop), a(src))


def test_no_route(table: RoutingTable) -> None:
    assert table.lookup(a("2001:db8:9::1")) is None
    empty = RoutingTable()
    assert empty.lookup(a("10.0.0.1")) is None


def test_local_addresses(table: RoutingTable) -> None:
    assert table.is_local(a("10.0.2.254")) and table.local_port(a("10.0.20.254")) == 2
    assert table.local_port(a("2001:db8:1::fe")) == 1
    assert not table.is_local(a("10.0.2.1"))
    assert table.port_address(2, 4, near=a("10.0.20.1")) == a("10.0.20.254")
    assert table.port_address(2, 4) == a("10.0.2.254")
    assert table.port_address(3, 6) is None


def test_directed_broadcast(table: RoutingTable) -> None:
    assert table.is_directed_broadcast(a("10.0.1.255"))
    assert not table.is_directed_broadcast(a("10.0.1.254"))
    assert not table.is_directed_broadcast(a("10.0.3.255"))  # not a connected network


def test_static_needs_connected_next_hop() -> None:
    table = RoutingTable()
    table.add_connected(1, ipaddress.ip_interface("10.0.1.254/24"))
    with pytest.raises(RouteError, match="not on a connected network"):
        table.add_static("10.9.0.0/16", via="10.0.2.1")
    with pytest.raises(RouteError, match="the router has no IPv6 address"):
        table.add_static("2001:db8::/32", port=1)
    with pytest.raises(RouteError, match="is IPv6"):
        table.add_static("10.9.0.0/16", via="2001:db8::1")
    with pytest.raises(RouteError, match="needs a next hop or a port"):
        table.add_static("10.9.0.0/16")


def test_replace_and_remove() -> None:
    table = RoutingTable()
    table.add_connected(1, ipaddress.ip_interface("10.0.1.254/24"))
    table.add_connected(2, ipaddress.ip_interface("10.0.2.254/24"))
    table.add_static("0.0.0.0/0", via="10.0.1.1")
    table.add_static("0.0.0.0/0", via="10.0.2.1")  # same prefix: replaces
    assert table.lookup(a("1.1.1.1")).next_hop == a("10.0.2.1")  # type: ignore[union-attr]
    assert table.remove("0.0.0.0/0") is not None
    assert table.lookup(a("1.1.1.1")) is None
    assert len(table.routes()) == 2


def test_answers_follow_route_changes() -> None:
    """Lookups are remembered per destination; every route change is seen at once."""
    table = RoutingTable()
    table.add_connected(1, ipaddress.ip_interface("10.0.1.254/24"))
    table.add_connected(2, ipaddress.ip_interface("10.0.2.254/24"))
    assert table.lookup(a("1.1.1.1")) is None
    assert table.is_directed_broadcast(a("10.0.1.255"))
    table.add_static("0.0.0.0/0", via="10.0.1.1")
    assert table.lookup(a("1.1.1.1")).next_hop == a("10.0.1.1")  # type: ignore[union-attr]
    table.add_static("1.1.1.0/24", via="10.0.2.1")
    assert table.lookup(a("1.1.1.1")).next_hop == a("10.0.2.1")  # type: ignore[union-attr]
    table.add_static("10.0.1.255/32", via="10.0.2.1")  # a host route over the broadcast
    assert not table.is_directed_broadcast(a("10.0.1.255"))
    table.remove("10.0.1.255/32")
    table.remove("1.1.1.0/24")
    assert table.lookup(a("1.1.1.1")).next_hop == a("10.0.1.1")  # type: ignore[union-attr]
    assert table.is_directed_broadcast(a("10.0.1.255"))


def test_host_route_beats_everything() -> None:
    table = RoutingTable()
    table.add_connected(1, ipaddress.ip_interface("10.0.1.254/24"))
    table.add_connected(2, ipaddress.ip_interface("10.0.2.254/24"))
    table.add_static("10.0.1.77/32", via="10.0.2.1")
    assert table.lookup(a("10.0.1.77")).port == 2  # type: ignore[union-attr]
    assert table.lookup(a("10.0.1.78")).port == 1  # type: ignore[union-attr]


@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=30),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_lpm_matches_brute_force(prefixes: list[tuple[int, int]], dsts: list[int]) -> None:
    table = RoutingTable()
    table.add_connected(1, ipaddress.ip_interface("10.255.255.254/32"))
    nets = {ipaddress.ip_network((n, plen), strict=False) for n, plen in prefixes}
    for net in nets:
        table.add_static(net, port=1)
    for dst in dsts:
        addr = ipaddress.ip_address(dst)
        best = max((n for n in nets if addr in n), key=lambda n: n.prefixlen, default=None)
        hop = table.lookup(addr.packed)
        if best is None:
            assert hop is None or hop.route.connected
        else:
            assert hop is not None and hop.route.prefix.prefixlen >= best.prefixlen
            assert hop.route.prefix == best or hop.route.connected


def test_port_route_borrows_another_port_address() -> None:
    table = RoutingTable()
    table.add_connected(1, ipaddress.ip_interface("10.0.1.254/24"))
    table.add_connected(2, ipaddress.ip_interface("2001:db8:2::fe/64"))
    route = table.add_static("2001:db8:9::/48", port=1)
    assert route.port == 1 and route.src == a("2001:db8:2::fe")


def test_config_route_errors_name_the_file() -> None:
    text = CONFIG.split("[[routes]]")[0] + "[[routes]]\nprefix = '2001:db8:9::/48'\nport = 'eth2'\n"
    table = RoutingTable.from_config(parse_config(text))
    assert table.lookup(a("2001:db8:9::1")).src == a("2001:db8:1::fe")  # type: ignore[union-attr]
    only_v4 = text.replace('"2001:db8:1::fe/64"', "").replace(', "2001:db8:2::fe/64"', "")
    with pytest.raises(RouteError, match=r"^router\.toml: routes\[0\]: .*no IPv6 address"):
        RoutingTable.from_config(parse_config(only_v4))
