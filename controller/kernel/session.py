"""``p4ft controller`` in kernel mode: the asyncio edge between the switch and the namespace.

A :class:`KernelSession` is a :class:`controller.edges.daemon.SwitchSession` (same P4Runtime driver,
offload worker, 1 s tick, state file, control socket) whose slow path is the Linux router in
``[kernel] netns``: punted frames go to the port's representor, frames the kernel transmits go
back out as packet-out, and ctnetlink / rtnetlink events drive a :class:`KernelRouter`.
Every socket and TAP is opened on the event loop's thread inside the namespace
(:mod:`.netns`) and read with ``add_reader``: no thread, no fork beside gRPC's threads.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from typing import Any

from pyroute2.netlink import NETLINK_NETFILTER, NETLINK_ROUTE
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)

from controller.config import RouterConfig
from controller.edges import control
from controller.edges.daemon import PACKET_BATCH, SwitchSession
from controller.ip.packet import Malformed, parse
from controller.kernel import ctnetlink, netns, nla, rtnetlink
from controller.kernel.ctnetlink import CT_DELETE, CT_NEW
from controller.kernel.netlink import NetlinkError, NetlinkSocket
from controller.kernel.paths import Path, final_destination
from controller.kernel.policy import OffloadPolicy
from controller.kernel.router import KernelRouter
from controller.kernel.tap import Tap
from controller.netfilter.conntrack import Timeouts, packet_tuple
from controller.netfilter.ct import IPPROTO_TCP, IPPROTO_UDP, ORIGINAL, REPLY, Conn, CtTuple
from controller.router import reason_name
from ndo.api import PacketIn, PuntReason

log = logging.getLogger("p4ft.kernel")

# ctnetlink multicast groups NFNLGRP_CONNTRACK_{NEW,UPDATE,DESTROY}
CT_GROUPS = (1, 2, 3)
# rtnetlink groups RTNLGRP_{LINK,NEIGH,IPV4_ROUTE,IPV6_ROUTE}
RT_GROUPS = (1, 3, 7, 11)
SYSCTL = "/proc/sys/net/netfilter/nf_conntrack_"
SYSCTL_INTERVAL = 1.0  # how soon a changed conntrack timeout sysctl is seen
_WATCHED = (PuntReason.MISS, PuntReason.TCP_FIN_RST)
RESOLVE_ATTEMPTS = 3  # path lookups of one connection when neighbours were learnt meanwhile


class KernelRuleset:
    """What ``p4ft ruleset`` shows in kernel mode: where the real one is."""

    def __init__(self, netns_name: str) -> None:
        self.netns = netns_name

    def format(self) -> str:
        return (f"# kernel mode: the ruleset is the kernel's own; see it with\n"
                f"#   ip netns exec {self.netns} nft list ruleset\n")


class KernelSession(SwitchSession):
    """One switch whose slow path is a Linux router namespace."""

    def make_router(self, config: RouterConfig) -> KernelRouter:  # type: ignore[override]
        kernel = config.kernel
        assert kernel is not None  # the daemon picks this class only in kernel mode
        self.netns = kernel.netns
        self.taps: dict[int, Tap] = {}  # opened by start(), in the namespace
        self.ct: NetlinkSocket | None = None
        self.rt: NetlinkSocket | None = None
        self.sysctls: SysctlTimeouts | None = None
        self.kernel = KernelRouter(config, OffloadPolicy(kernel.offload, kernel.match),
                                   on_event=self._publish, wants=self.wanted)
        self.kernel.ruleset = KernelRuleset(kernel.netns)  # type: ignore[attr-defined]
        return self.kernel

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        with netns.entered(self.netns):
            for port in self.config.ports:
                self.taps[port.id] = Tap(port.name, port.mac, port.mtu)
            self.ct = ct = NetlinkSocket(NETLINK_NETFILTER, CT_GROUPS)
            self.rt = rt = NetlinkSocket(NETLINK_ROUTE, RT_GROUPS)
            self.sysctls = sysctls = SysctlTimeouts()
        self.kernel.conntrack.timeouts = sysctls.read()
        self._ifnames = {tap.index: tap.name for tap in self.taps.values()}
        self._ports = {tap.name: port for port, tap in self.taps.items()}
        self._resolving: set[int] = set()
        self._neighbours_learnt = 0  # neighbour events with a MAC so far (see _offload)
        self._revalidating = False
        self._ct_pid = ct.sock.getsockname()[0]
        self._ct_work = asyncio.Event()
        self.kernel.conntrack.on_update = self._ct_work.set
        ct.start(self._ct_event)
        rt.start(self._rt_event)
        await self._configure()
        await super().start()
        loop = asyncio.get_running_loop()
        for port, tap in self.taps.items():
            loop.add_reader(tap.fd, self._transmit, port, tap)
        for work in (self._ct_update_loop, self._sysctl_loop):
            self._tasks.append(asyncio.create_task(work(), name=f"{self.name}:{work.__name__}"))
        for _, flags, msg in await self.ct.request(ctnetlink.dump_request):
            self._ct_event(CT_NEW, flags, msg, own=False)  # answers carry our port id
        log.info("%s: kernel mode in netns %s, representors %s, %d connections tracked",
                 self.name, self.netns, ", ".join(t.name for t in self.taps.values()),
                 len(self.kernel.conntrack))

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for tap in self.taps.values():
            loop.remove_reader(tap.fd)
        await super().stop()
        for sock in (self.ct, self.rt):
            if sock is not None:
                sock.close()
        for tap in self.taps.values():
            tap.close()
        if self.sysctls is not None:
            self.sysctls.close()

    async def _configure(self) -> None:
        """The representors' addresses, static routes and neighbours from the router TOML
        (already present ones are kept: the namespace may have been configured by hand)."""
        by_name = {tap.name: tap.index for tap in self.taps.values()}
        requests = []
        for port in self.config.ports:
            for iface in port.addresses:
                requests.append(lambda seq, i=by_name[port.name], a=iface:
                                rtnetlink.address_add_request(seq, i, a))
        for route in self.config.routes:
            oif = by_name[route.port] if route.port is not None else None
            requests.append(lambda seq, r=route, o=oif:
                            rtnetlink.route_add_request(seq, r.prefix, r.via, o))
        for neigh in self.config.neighbors:
            requests.append(lambda seq, n=neigh: rtnetlink.neigh_add_request(
                seq, by_name[n.port], n.address.packed, n.mac))
        for build in requests:
            try:
                await self.rt.request(build)
            except NetlinkError as exc:
                if exc.errno != errno.EEXIST:
                    raise

    # -- frames ----------------------------------------------------------------------------

    async def _packet_loop(self) -> None:
        """Punts a batch per loop turn, each to its port's representor."""
        waited, took = self.stages["packet_in"].add, self.stages["receive"].add
        async for batch in self.channel.packet_batches(PACKET_BATCH):
            for packet, arrived in batch:
                start = time.perf_counter()
                waited(start - arrived)
                self._to_kernel(packet)
                took(time.perf_counter() - start)
            self._kick()
            await asyncio.sleep(0)  # the tick, offloads and netlink get their turn

    def _to_kernel(self, packet: PacketIn) -> None:
        tap = self.taps.get(packet.ingress_port)
        if tap is None:
            self.counters["punt_unknown_port"] += 1
            return
        self.kernel.punts[reason_name(packet.reason)] += 1
        tup = _tuple_of(packet.frame) if packet.reason in _WATCHED else None
        fin_rst = tup is not None and packet.reason == PuntReason.TCP_FIN_RST
        if fin_rst and self.kernel.on_fin_rst(tup, self.clock()):
            self._kick()
            self._send_ct_updates()  # the fix-up before the packet: applied once sent
        tap.write(packet.frame)
        if tup is not None and packet.reason == PuntReason.MISS:
            conn = self.kernel.on_packet(tup, self.clock())
            if conn is not None:
                self._resolve_soon(conn)

    def _transmit(self, port: int, tap: Tap) -> None:
        """The kernel sent frames on representor ``port``: out they go, as packet-out."""
        for _ in range(PACKET_BATCH):  # bounded: other readers get their turn
            frame = tap.read()
            if frame is None:
                return
            self._send(((port, frame),))

    # -- netlink events --------------------------------------------------------------------

    def _ct_event(self, msg_type: int, flags: int, msg: bytes, own: bool | None = None) -> None:
        """A ctnetlink event; ``own`` (by default: its header carries our port id) when it
        reports a change this session asked for."""
        if msg_type not in (CT_NEW, CT_DELETE):
            return
        try:
            entry = ctnetlink.decode(msg, msg_type, flags)
        except ctnetlink.BadMessage:
            self.counters["ct_bad_message"] += 1
            return
        if own is None:
            own = nla.HEADER.unpack_from(msg)[4] == self._ct_pid
        conn = self.kernel.on_ct(entry, self.clock(), own=own)
        if conn is not None:
            self._resolve_soon(conn)
        self._kick()

    def _rt_event(self, msg_type: int, flags: int, msg: bytes) -> None:
        now = self.clock()
        if msg_type in (RTM_NEWLINK, RTM_DELLINK):
            link = rtnetlink.decode_link(msg)
            if link is not None and link.name in self._ports and (
                    msg_type == RTM_DELLINK or not link.up):
                self.kernel.link_down(link.name, now)
        elif msg_type in (RTM_NEWNEIGH, RTM_DELNEIGH):
            neigh = rtnetlink.decode_neigh(msg, msg_type)
            if neigh is not None and neigh.ifindex in self._ifnames:
                self._neighbours_learnt += neigh.mac is not None
                ifname = self._ifnames[neigh.ifindex]
                for conn in self.kernel.neighbour_changed(ifname, neigh.address, neigh.mac, now):
                    self._resolve_soon(conn)
        elif msg_type in (RTM_NEWROUTE, RTM_DELROUTE) and not self._revalidating:
            self._revalidating = True
            asyncio.get_running_loop().create_task(self._revalidate())
        self._kick()

    # -- asking the kernel -------------------------------------------------------------------

    def _resolve_soon(self, conn: Conn) -> None:
        if conn.id not in self._resolving:
            self._resolving.add(conn.id)
            asyncio.get_running_loop().create_task(self._offload(conn))

    async def _offload(self, conn: Conn) -> None:
        """Resolve and admit ``conn``. A connection refused for a next hop without a MAC waits
        for the neighbour event; one that came while its paths were being asked for (both
        directions' lookups are in flight at once) is not missed: the paths are asked again."""
        try:
            for _ in range(RESOLVE_ATTEMPTS):
                learnt = self._neighbours_learnt
                paths = await self._paths(conn)
                flow = self.kernel.admit(conn, paths, self.clock())
                if flow is not None or learnt == self._neighbours_learnt:
                    break
        except (NetlinkError, TimeoutError, ConnectionError) as exc:
            self.counters["resolve_errors"] += 1
            log.warning("%s: cannot resolve paths of connection %d: %s", self.name, conn.id, exc)
        finally:
            self._resolving.discard(conn.id)
        self._kick()

    async def _paths(self, conn: Conn) -> tuple[Path, Path] | None:
        """``ip route get`` of each direction's final destination and ``ip neigh get`` of
        its next hop, asked of the kernel in the namespace."""
        original, reply = await asyncio.gather(self._path(conn, ORIGINAL),
                                               self._path(conn, REPLY))
        if original is None or reply is None:
            return None
        return original, reply

    async def _path(self, conn: Conn, direction: int) -> Path | None:
        dst = final_destination(conn, direction)
        try:
            answer = await self.rt.request(lambda s: rtnetlink.route_get_request(s, dst))
        except NetlinkError:  # unreachable, prohibited...
            return None
        route = rtnetlink.decode_route(answer[0][2]) if answer else None
        if route is None:
            return None
        nexthop = route.gateway or dst
        name = self._ifnames.get(route.oif, f"if{route.oif}")
        mac = await self._neighbour(route.oif, nexthop) if name in self._ports else None
        return Path(name, nexthop, mac, route.mtu)

    async def _neighbour(self, ifindex: int, address: bytes) -> bytes | None:
        """The next hop's MAC; unknown, the kernel is asked to resolve it (the neighbour
        event that follows retries the offload)."""
        try:
            answer = await self.rt.request(
                lambda s: rtnetlink.neigh_get_request(s, ifindex, address))
            neigh = rtnetlink.decode_neigh(answer[0][2], answer[0][0]) if answer else None
        except NetlinkError:
            neigh = None
        if neigh is not None and neigh.mac is not None:
            return neigh.mac
        try:
            await self.rt.request(lambda s: rtnetlink.neigh_use_request(s, ifindex, address))
        except NetlinkError as exc:
            self.counters[f"neigh_use_{errno.errorcode.get(exc.errno, 'error')}"] += 1
        return None

    async def _revalidate(self) -> None:
        """A route changed: every offloaded flow's paths are asked for again."""
        self._revalidating = False
        for flow, _ in self.kernel.offloaded():
            try:
                paths = await self._paths(flow.conn)
            except (TimeoutError, ConnectionError):
                continue
            self.kernel.revalidate(flow, paths, self.clock())
        self._kick()

    async def _ct_update_loop(self) -> None:
        while True:
            await self._ct_work.wait()
            self._ct_work.clear()
            self._send_ct_updates()

    def _send_ct_updates(self) -> None:
        """Timeouts and TCP flags the flowtable asked of the kernel's entries, sent now (the
        kernel applies each before ``send`` returns); the answers are counted as they come."""
        for update in self.kernel.conntrack.take_updates():
            orig = update.conn.tuples[ORIGINAL]
            try:
                answer = self.ct.submit(lambda s, u=update, t=orig: ctnetlink.update_request(
                    s, t, timeout=u.timeout, liberal=u.liberal, clear_maxack=u.clear_maxack))
            except OSError as exc:  # the socket's buffer is full: the update is lost, counted
                self.counters[f"ct_update_send_{errno.errorcode.get(exc.errno, 'error')}"] += 1
                continue
            answer.add_done_callback(self._ct_update_answered)

    def _ct_update_answered(self, answer: asyncio.Future[Any]) -> None:
        if answer.cancelled():
            return
        exc = answer.exception()
        if exc is None:
            self.counters["ct_updates"] += 1
        elif isinstance(exc, NetlinkError):  # ENOENT: the kernel destroyed it meanwhile
            self.counters[f"ct_update_{errno.errorcode.get(exc.errno, 'error')}"] += 1
        else:  # no answer in time, or the socket closed
            self.counters["ct_update_timeout"] += 1

    async def _sysctl_loop(self) -> None:
        while True:
            await asyncio.sleep(SYSCTL_INTERVAL)
            self.kernel.conntrack.timeouts = self.sysctls.read()

    # -- control ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        stats = snap["stats"]
        stats["representors"] = {t.name: dict(t.counters) for t in self.taps.values()}
        stats["netlink"] = {name: dict(sock.counters)
                            for name, sock in (("ct", self.ct), ("rt", self.rt)) if sock}
        return snap

    def apply_ruleset(self, text: str, filename: str) -> str:
        raise control.ControlError(f"kernel mode: apply rules in the namespace itself: "
                                   f"ip netns exec {self.netns} nft -f {filename}")


def _tuple_of(frame: bytes) -> CtTuple | None:
    """The conntrack tuple a punted TCP/UDP frame carries, or None."""
    try:
        pkt = parse(frame)
    except Malformed:
        return None
    if not pkt.family or pkt.proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return None
    return packet_tuple(pkt)


class SysctlTimeouts:
    """The namespace's conntrack timeout sysctls as the mirror's :class:`Timeouts`.

    Opened inside the namespace (a ``/proc/sys/net`` file belongs to the namespace it was
    opened in) and re-read on demand, so a timeout changed with ``sysctl -w`` applies to the
    next teardown as it would in the kernel.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        for field in Timeouts.__dataclass_fields__:
            proto, _, state = field.partition("_")
            name = f"{proto}_timeout_{state}" if state else f"{proto}_timeout"
            try:
                self._fds[field] = os.open(f"{SYSCTL}{name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # not in this kernel: the default stands

    def read(self) -> Timeouts:
        values: dict[str, float] = {}
        for field, fd in self._fds.items():
            try:
                values[field] = float(os.pread(fd, 32, 0))
            except (OSError, ValueError):
                continue
        return Timeouts(**values)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
