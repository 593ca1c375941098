"""Routes and longest-prefix match for IPv4 and IPv6, like the kernel FIB for our simple cases.

Connected routes come from port addresses; static routes name a next hop (``via``, resolved to
the connected network it lies on) or a port (on-link: the destination is its own next hop).
A lookup answers what the forwarding path needs: egress port, next hop to resolve, and the
source address the router uses on that port (for ICMP errors and masquerade).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from controller.config import IPInterface, IPNetwork, RouterConfig


class RouteError(ValueError):
    """A route that cannot be installed (next hop not on a connected network, no address)."""


@dataclass(frozen=True, slots=True)
class Route:
    prefix: IPNetwork
    port: int  # egress port id
    via: bytes | None  # gateway, or None when the destination is on-link
    src: bytes  # the router's address on the egress port in this family
    connected: bool = False


@dataclass(frozen=True, slots=True)
class NextHop:
    """The result of a lookup for one destination."""

    port: int
    next_hop: bytes  # the gateway, or the destination itself when on-link
    src: bytes
    route: Route


def select_source(
    interfaces: Iterable[IPInterface], near: bytes | None, family: int = 0
) -> bytes | None:
    """The first address of ``family`` (default: that of ``near``), preferring ``near``'s network.

    Like ``inet_select_addr``: the router speaks to a neighbour from the address on its subnet.
    """
    family = family or (4 if near is not None and len(near) == 4 else 6)
    candidates = [i for i in interfaces if i.version == family]
    if near is not None:
        near_ip = ipaddress.ip_address(near)
        for iface in candidates:
            if near_ip in iface.network:
                return iface.ip.packed
    return candidates[0].ip.packed if candidates else None


class _Fib:
    """One family's routes keyed by (prefix length, network number) for LPM by descending length."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.by_len: dict[int, dict[int, Route]] = {}
        self.lengths: list[int] = []  # descending

    def add(self, route: Route) -> None:
        plen = route.prefix.prefixlen
        if plen not in self.by_len:
            self.by_len[plen] = {}
            self.lengths = sorted(self.by_len, reverse=True)
        self.by_len[plen][int(route.prefix.network_address) >> (self.bits - plen)] = route

    def remove(self, prefix: IPNetwork) -> Route | None:
        table = self.by_len.get(prefix.prefixlen, {})
        return table.pop(int(prefix.network_address) >> (self.bits - prefix.prefixlen), None)

    def lookup(self, addr: int) -> Route | None:
        for plen in self.lengths:
            route = self.by_len[plen].get(addr >> (self.bits - plen))
            if route is not None:
                return route
        return None

    def routes(self) -> list[Route]:
        return [r for plen in self.lengths for r in self.by_len[plen].values()]


_MEMO_MAX = 4096  # destinations remembered between route changes (then forgotten at once)


class RoutingTable:
    """Connected and static routes of both families, plus the router's own addresses.

    Lookups are memoised per destination (every punt of a connection asks the same few), and
    the memo is emptied by every route change, so an answer is always the FIB's current one.
    """

    def __init__(self) -> None:
        self._fibs = {4: _Fib(32), 6: _Fib(128)}
        self._hops: dict[bytes, NextHop | None] = {}  # memo of lookup()
        self._broadcasts: dict[bytes, bool] = {}  # memo of is_directed_broadcast()
        self._local: dict[bytes, int] = {}  # router address -> port id
        self._port_addrs: dict[int, list[IPInterface]] = {}

    @classmethod
    def from_config(cls, config: RouterConfig) -> RoutingTable:
        """Connected routes of every device first (a PPPoE device's peer as a /32, as pppd's
        point-to-point address), then the static routes in file order."""
        table = cls()
        for port in config.devices:
            for iface in port.addresses:
                table.add_connected(port.id, iface)
            if port.peer is not None:
                table.add_peer(port.id, port.peer)
        for index, route in enumerate(config.routes):
            port_id = None
            if route.port is not None:
                port_id = config.port_by_name(route.port).id  # type: ignore[union-attr]
            try:
                table.add_static(route.prefix, via=route.via, port=port_id)
            except RouteError as exc:
                name = config.path or "router.toml"
                raise RouteError(f"{name}: routes[{index}]: {exc}") from None
        return table

    def add_connected(self, port: int, iface: IPInterface) -> Route:
        """The router owns ``iface.ip`` on ``port``; its network is reachable directly."""
        self._local[iface.ip.packed] = port
        self._port_addrs.setdefault(port, []).append(iface)
        route = Route(iface.network, port, None, iface.ip.packed, connected=True)
        self._add(route)
        return route

    def add_peer(self, port: int, peer: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Route:
        """The peer of a point-to-point device (``ip addr add LOCAL peer PEER``): a connected
        host route, so routes may go ``via`` it."""
        net = ipaddress.ip_network(f"{peer}/{peer.max_prefixlen}")
        route = Route(net, port, None, self._source(port, net.version, net), connected=True)
        self._add(route)
        return route

    def add_static(
        self,
        prefix: IPNetwork | str,
        *,
        via: ipaddress.IPv4Address | ipaddress.IPv6Address | str | None = None,
        port: int | None = None,
    ) -> Route:
        """Add a route through gateway ``via`` (on a connected network) and/or out of ``port``."""
        net = ipaddress.ip_network(prefix)
        if via is None:
            if port is None:
                raise RouteError(f"{net}: needs a next hop or a port")
            route = Route(net, port, None, self._source(port, net.version, net))
        else:
            gw = ipaddress.ip_address(via)
            if gw.version != net.version:
                raise RouteError(f"{net}: next hop {gw} is IPv{gw.version}")
            link = self._fibs[gw.version].lookup(int(gw))
            if link is None or not link.connected or (port is not None and link.port != port):
                raise RouteError(f"{net}: next hop {gw} is not on a connected network")
            route = Route(net, link.port, gw.packed, link.src)
        self._add(route)
        return route

    def remove(self, prefix: IPNetwork | str) -> Route | None:
        net = ipaddress.ip_network(prefix)
        self._forget()
        return self._fibs[net.version].remove(net)

    def _add(self, route: Route) -> None:
        self._forget()
        self._fibs[route.prefix.version].add(route)

    def _forget(self) -> None:
        self._hops.clear()
        self._broadcasts.clear()

    def lookup(self, dst: bytes) -> NextHop | None:
        """Longest-prefix match for a 4- or 16-byte destination; None means "no route"."""
        try:
            return self._hops[dst]
        except KeyError:
            pass
        fib = self._fibs[4 if len(dst) == 4 else 6]
        route = fib.lookup(int.from_bytes(dst, "big"))
        hop = None if route is None else NextHop(route.port, route.via or dst, route.src, route)
        if len(self._hops) >= _MEMO_MAX:
            self._hops.clear()
        self._hops[dst] = hop
        return hop

    def local_port(self, addr: bytes) -> int | None:
        """The port owning ``addr`` if it is one of the router's addresses."""
        return self._local.get(addr)

    def is_local(self, addr: bytes) -> bool:
        return addr in self._local

    def port_address(self, port: int, family: int, near: bytes | None = None) -> bytes | None:
        """The router's address on ``port`` (preferring the one whose network holds ``near``)."""
        return select_source(self._port_addrs.get(port, []), near, family)

    def is_directed_broadcast(self, addr: bytes) -> bool:
        """The broadcast address of a connected IPv4 network (``ip_route_input``: RTN_BROADCAST)."""
        answer = self._broadcasts.get(addr)
        if answer is not None:
            return answer
        hop = self.lookup(addr) if len(addr) == 4 else None
        answer = (
            hop is not None
            and hop.route.connected
            and hop.route.prefix.prefixlen < 31
            and addr == hop.route.prefix.broadcast_address.packed
        )
        if len(self._broadcasts) >= _MEMO_MAX:
            self._broadcasts.clear()
        self._broadcasts[addr] = answer
        return answer

    def routes(self) -> list[Route]:
        """All routes, IPv4 then IPv6, longest prefixes first."""
        return self._fibs[4].routes() + self._fibs[6].routes()

    def _source(self, port: int, family: int, net: IPNetwork) -> bytes:
        """The port's own address, else any router address of the family (``inet_select_addr``)."""
        src = self.port_address(port, family)
        if src is None:
            every = [i for ifaces in self._port_addrs.values() for i in ifaces]
            src = select_source(every, None, family)
        if src is None:
            raise RouteError(f"{net}: the router has no IPv{family} address")
        return src
