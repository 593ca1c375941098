"""The two directions' forwarding of a connection, from the kernel's route and neighbour tables.

For each direction the edge asks the kernel where a packet of that direction goes once NAT is
undone (``ip route get`` of its final destination) and the MAC of the next hop (the neighbour
table). Like ``nft_flow_route`` / ``flow_offload_route_init``, a direction enters where the
other direction leaves (routing is taken to be symmetric); the source MAC and MTU are the
representor's, i.e. the switch port's from the router TOML.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config import RouterConfig
from controller.netfilter.ct import ORIGINAL, REPLY, Conn
from controller.netfilter.flowtable import FlowRoute


@dataclass(frozen=True, slots=True)
class Path:
    """Where the kernel sends one direction: device, next hop and its MAC (None: unresolved)."""

    oifname: str
    nexthop: bytes
    mac: bytes | None
    mtu: int | None = None  # the route's MTU metric, when it has one


def final_destination(conn: Conn, direction: int) -> bytes:
    """Where packets of ``direction`` end up after NAT: the other tuple's source."""
    return conn.tuples[1 - direction].src


def flow_routes(
    config: RouterConfig, paths: tuple[Path, Path]
) -> tuple[FlowRoute, FlowRoute] | str:
    """Both directions' :class:`FlowRoute`, or the reason the kernel's answer cannot be
    offloaded (a device that is no switch port, an unresolved neighbour)."""
    ports = []
    for path in paths:
        port = config.port_by_name(path.oifname)
        if port is None:
            return "not_a_port"
        if path.mac is None:
            return "no_neighbour"
        ports.append(port)
    routes = []
    for d in (ORIGINAL, REPLY):
        out, back = ports[d], ports[1 - d]
        mtu = min(out.mtu, paths[d].mtu) if paths[d].mtu else out.mtu
        mac = paths[d].mac
        assert mac is not None
        routes.append(FlowRoute(in_port=back.id, out_port=out.id, eth_src=out.mac, eth_dst=mac,
                                mtu=mtu))
    return routes[0], routes[1]
