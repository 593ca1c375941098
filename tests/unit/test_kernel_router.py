"""Kernel mode's core without netlink: eligibility, rules from conntrack tuples and the kernel's
paths, and what ctnetlink / rtnetlink events do to hardware entries."""

from __future__ import annotations

import ipaddress

import pytest

from controller.config import parse_config
from controller.kernel.ctnetlink import DESTROY, NEW, UPDATE, CtEntry
from controller.kernel.paths import Path
from controller.kernel.policy import OffloadPolicy, PolicyError
from controller.kernel.router import KernelRouter
from controller.netfilter.ct import IPPROTO_TCP, IPPROTO_UDP, CtTuple, Status, TcpState
from ndo.api import Command, FlowResult, FlowStats

CONFIG = """
[[ports]]
id = 1
name = "eth0"
mac = "00:00:00:00:01:fe"
[[ports]]
id = 2
name = "eth1"
mac = "00:00:00:00:02:fe"
mtu = 1400
[flowtable]
tcp_timeout = 10
udp_timeout = 10
"""
H1, H2, R_OUT = "10.0.1.1", "10.0.2.1", "10.0.2.254"
H1_MAC, H2_MAC = bytes.fromhex("000000000101"), bytes.fromhex("000000000201")
ESTABLISHED = Status.CONFIRMED | Status.SEEN_REPLY | Status.ASSURED


def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def tuples(proto: int = IPPROTO_TCP, masquerade: bool = True) -> tuple[CtTuple, CtTuple]:
    orig = CtTuple(4, proto, ip(H1), ip(H2), 40000, 5001)
    reply_dst, reply_dport = (ip(R_OUT), 61000) if masquerade else (ip(H1), 40000)
    return orig, CtTuple(4, proto, ip(H2), reply_dst, 5001, reply_dport)


def entry(kind: str = UPDATE, *, ct_id: int = 7, proto: int = IPPROTO_TCP,
          state: TcpState | None = TcpState.ESTABLISHED, status: Status = ESTABLISHED,
          masquerade: bool = True, **kw: object) -> CtEntry:
    if masquerade:
        status |= Status.SRC_NAT | Status.SRC_NAT_DONE
    return CtEntry(kind, ct_id, tuples(proto, masquerade), status, timeout=kw.pop("timeout", 300),
                   tcp_state=state if proto == IPPROTO_TCP else None, **kw)  # type: ignore[arg-type]


PATHS = (Path("eth1", ip(H2), H2_MAC), Path("eth0", ip(H1), H1_MAC))


def make(policy: OffloadPolicy | None = None) -> tuple[KernelRouter, list[dict]]:
    events: list[dict] = []
    router = KernelRouter(parse_config(CONFIG), policy or OffloadPolicy(), on_event=events.append)
    return router, events


def install(router: KernelRouter, stats: dict[int, FlowStats] | None = None) -> list:
    """Hand the queued commands to a driver that accepts everything; return the commands."""
    batch = router.offload.take_batch(100)
    results = [FlowResult(c.cookie, c.command, stats=(stats or {}).get(c.cookie & 1))
               for c in batch]
    router.offload.complete(results)
    return batch


def offloaded(router: KernelRouter, now: float = 0.0) -> None:
    conn = router.on_ct(entry(), now)
    assert conn is not None
    assert router.admit(conn, PATHS, now) is not None
    install(router)


def test_tcp_becomes_a_candidate_only_when_established_and_assured() -> None:
    router, _ = make()
    assert router.on_ct(entry(NEW, state=TcpState.SYN_SENT, status=Status.CONFIRMED), 0) is None
    assert router.on_ct(entry(state=TcpState.SYN_RECV,
                              status=Status.CONFIRMED | Status.SEEN_REPLY), 0) is None
    assert router.on_ct(entry(status=Status.CONFIRMED | Status.SEEN_REPLY), 0) is None
    assert router.on_ct(entry(), 0) is not None


def test_admission_rules_of_the_mirror_apply() -> None:
    router, _ = make()
    assert router.on_ct(entry(helper="ftp"), 0) is None
    assert router.on_ct(entry(ct_id=8, status=ESTABLISHED | Status.SEQ_ADJUST), 0) is None
    assert router.on_ct(entry(ct_id=9, tcp_close_init=True), 0) is None
    udp = entry(NEW, ct_id=10, proto=IPPROTO_UDP, status=Status.CONFIRMED)
    assert router.on_ct(udp, 0) is not None  # UDP: confirmed is enough


def test_offload_builds_both_directions_with_nat_macs_and_port_mtu() -> None:
    router, events = make()
    conn = router.on_ct(entry(), 0)
    assert conn is not None and router.admit(conn, PATHS, 0) is not None
    batch = install(router)
    assert [c.command for c in batch] == [Command.REPLACE, Command.REPLACE]
    orig, reply = (c.rule for c in batch)
    assert (orig.match.ingress_port, orig.match.src, orig.match.dst) == (1, ip(H1), ip(H2))
    assert (orig.actions.egress_port, orig.actions.eth_dst) == (2, H2_MAC)
    assert orig.actions.eth_src == bytes.fromhex("0000000002fe") and orig.actions.mtu == 1400
    assert (orig.actions.nat_src, orig.actions.nat_sport) == (ip(R_OUT), 61000)
    assert (reply.match.ingress_port, reply.match.dst, reply.match.dport) == (2, ip(R_OUT), 61000)
    assert (reply.actions.egress_port, reply.actions.eth_dst, reply.actions.mtu) == (1, H1_MAC,
                                                                                       1500)
    assert (reply.actions.nat_dst, reply.actions.nat_dport) == (ip(H1), 40000)
    assert conn.status & Status.HW_OFFLOAD
    assert [e["type"] for e in events][-2:] == ["OFFLOAD", "HW_OFFLOAD"]


def test_offload_asks_the_kernel_for_a_long_timeout_and_liberal_tcp() -> None:
    router, _ = make()
    offloaded(router)
    updates = router.conntrack.take_updates()
    assert [(u.timeout, u.liberal) for u in updates] == [(86400, True)]  # one ctnetlink message


def test_unresolved_neighbour_or_foreign_device_is_not_offloaded() -> None:
    router, _ = make()
    conn = router.on_ct(entry(), 0)
    assert conn is not None
    assert router.admit(conn, (PATHS[0], Path("eth0", ip(H1), None)), 0) is None
    assert router.admit(conn, (Path("lo", ip(H2), H2_MAC), PATHS[1]), 0) is None
    assert router.admit(conn, None, 0) is None
    assert router.stats["refused_no_neighbour"] == 1
    assert router.stats["refused_not_a_port"] == 1 and router.stats["refused_no_route"] == 1
    assert not conn.status & Status.OFFLOAD and len(router.offload) == 0
    # the kernel resolving that neighbour hands the connection back for another try
    assert router.neighbour_changed("eth0", ip(H1), None, 1) == []
    assert router.neighbour_changed("eth0", ip(H1), H1_MAC, 1) == [conn]
    assert router.neighbour_changed("eth0", ip(H1), H1_MAC, 2) == []


def test_a_connection_waiting_for_a_neighbour_is_forgotten_when_it_dies() -> None:
    router, _ = make()
    conn = router.on_ct(entry(), 0)
    assert conn is not None
    router.admit(conn, (PATHS[0], Path("eth0", ip(H1), None)), 0)
    router.on_ct(entry(DESTROY, timeout=None, status=ESTABLISHED | Status.DYING), 1)
    router.tick(2)
    assert router.neighbour_changed("eth0", ip(H1), H1_MAC, 3) == []
    assert not router._waiting


def test_policy_protocols_and_nft_selectors() -> None:
    router, _ = make(OffloadPolicy(("udp",)))
    assert router.on_ct(entry(), 0) is None
    router, _ = make(OffloadPolicy(("tcp",), ("tcp dport 80", "iifname eth0 ip daddr 10.0.2.0/24")))
    conn = router.on_ct(entry(), 0)
    assert conn is not None
    assert router.admit(conn, (PATHS[1], PATHS[0]), 0) is None  # enters on eth1: no selector
    assert router.stats["refused_policy"] == 1
    assert router.admit(conn, PATHS, 0) is not None
    with pytest.raises(PolicyError):
        OffloadPolicy(("sctp",))
    with pytest.raises(PolicyError):
        OffloadPolicy(("tcp",), ("ip daddr nonsense",))


@pytest.mark.parametrize("change", ["destroy", "fin", "rst"])
def test_kernel_closing_or_destroying_the_entry_removes_both_hardware_entries(change: str) -> None:
    router, events = make()
    offloaded(router)
    if change == "destroy":
        router.on_ct(entry(DESTROY, timeout=None), 1)
    elif change == "fin":
        router.on_ct(entry(state=TcpState.FIN_WAIT, tcp_close_init=True), 1)
    else:
        router.on_ct(entry(state=TcpState.CLOSE), 1)
    batch = install(router)
    assert [c.command for c in batch] == [Command.DESTROY, Command.DESTROY]
    router.tick(2)
    assert len(router.flowtable) == 0 and router.offload.installed() == 0
    assert "DESTROY" in [e["type"] for e in events]


def test_hardware_stats_keep_the_flow_and_add_to_the_kernels_counters() -> None:
    router, _ = make()
    offloaded(router)
    conn = router.conntrack.get(7)
    assert conn is not None
    router.on_ct(entry(packets=(3, 2), bytes=(180, 120)), 0.5, own=True)
    router.tick(9.5)  # 90 % of the 10 s budget used: STATS
    batch = install(router, {0: FlowStats(100, 150000, 9.0), 1: FlowStats(50, 2600, 9.0)})
    assert {c.command for c in batch} == {Command.STATS}
    assert conn.packets == [103, 52] and conn.bytes == [150180, 2720]
    router.tick(15)  # without the STATS it would have expired at 10
    assert len(router.flowtable) == 1
    router.on_ct(entry(packets=(4, 2), bytes=(240, 120)), 16, own=True)  # the kernel saw one more
    assert conn.packets == [104, 52]


def test_idle_flow_expires_and_hands_the_kernel_its_timeout_back() -> None:
    router, _ = make()
    conn = router.on_ct(entry(proto=IPPROTO_UDP), 0)
    assert conn is not None and router.admit(conn, PATHS, 0) is not None
    install(router)
    assert [u.timeout for u in router.conntrack.take_updates()] == [86400]
    router.tick(11)
    assert [c.command for c in install(router)] == [Command.DESTROY, Command.DESTROY]
    router.tick(12)
    assert len(router.flowtable) == 0
    # flow_offload_fixup_ct: the stream timeout less the time the flow already idled
    assert [u.timeout for u in router.conntrack.take_updates()] == [120 - 10]


def test_every_tcp_teardown_clears_the_kernels_stale_maxack_but_not_of_a_dead_entry() -> None:
    router, _ = make()
    offloaded(router)
    router.conntrack.take_updates()
    router.tick(11)  # idle expiry
    assert [u.clear_maxack for u in router.conntrack.take_updates()] == [True]
    router, _ = make()
    offloaded(router)
    router.conntrack.take_updates()
    router.on_ct(entry(DESTROY, timeout=None, status=ESTABLISHED | Status.DYING), 1)
    assert router.conntrack.take_updates() == []


def test_own_events_never_offload_a_packet_of_the_connection_does() -> None:
    router, _ = make()
    offloaded(router)
    router.tick(11)
    install(router)
    router.tick(12)
    assert router.on_ct(entry(), 12, own=True) is None
    orig, reply = tuples()
    assert router.on_packet(CtTuple(4, IPPROTO_TCP, ip(H1), ip(H2), 1, 2), 12) is None
    conn = router.on_packet(reply, 12)
    assert conn is not None and router.admit(conn, PATHS, 12) is not None
    assert router.on_packet(orig, 12) is None  # already offloaded


def test_neighbour_change_route_change_and_link_down_remove_hardware_entries() -> None:
    for change in ("neigh", "neigh_gone", "route", "link"):
        router, _ = make()
        offloaded(router)
        flow = router.flowtable.flows()[0]
        if change == "neigh":
            router.neighbour_changed("eth1", ip(H2), bytes.fromhex("000000000299"), 1)
        elif change == "neigh_gone":
            router.neighbour_changed("eth0", ip(H1), None, 1)
        elif change == "route":
            router.revalidate(flow, (Path("eth1", ip("10.0.2.9"), H2_MAC), PATHS[1]), 1)
        else:
            router.link_down("eth1", 1)
        assert [c.command for c in install(router)] == [Command.DESTROY] * 2, change
    router, _ = make()
    offloaded(router)
    router.neighbour_changed("eth1", ip(H2), H2_MAC, 1)  # unchanged: stays
    router.revalidate(router.flowtable.flows()[0], PATHS, 1)
    assert len(router.offload) == 0


def test_snapshot_lists_the_kernels_connections_with_hardware_share() -> None:
    router, _ = make()
    offloaded(router)
    router.on_ct(entry(NEW, ct_id=8, proto=IPPROTO_UDP, status=Status.CONFIRMED,
                       masquerade=False), 0, own=True)
    snap = router.snapshot(1)
    conns = {c["id"]: c for c in snap["conns"]}
    assert conns[7]["offload"] == "HW_OFFLOAD" and conns[7]["hw_directions"] == 2
    assert conns[8]["offload"] is None
    assert snap["stats"]["hw_entries"] == 2


def test_punted_fin_or_rst_tears_down_and_fixes_tcp_up_before_the_kernel_sees_it() -> None:
    router, _ = make()
    offloaded(router)
    router.conntrack.take_updates()
    orig, reply = tuples()
    assert router.on_fin_rst(reply, 1)  # h2's RST, masqueraded tuple
    assert [c.command for c in install(router)] == [Command.DESTROY] * 2
    assert [u.clear_maxack for u in router.conntrack.take_updates()] == [True]
    assert not router.on_fin_rst(orig, 1)  # nothing offloaded any more
    assert router.on_ct(entry(state=TcpState.CLOSE), 2) is None


def test_kernel_config_refuses_what_kernel_mode_cannot_do() -> None:
    from controller.config import ConfigError

    kernel = '[kernel]\nnetns = "r1"\n'
    assert parse_config(CONFIG + kernel).kernel.netns == "r1"
    refused = {
        "ruleset": CONFIG + kernel + '[ruleset]\ntext = ""\n',
        "flowtable.offload_min_packets": CONFIG.replace(
            "udp_timeout = 10", "udp_timeout = 10\noffload_min_packets = 3") + kernel,
        "kernel": CONFIG + kernel + 'match = ["tcp dport x"]\n',
    }
    for key, text in refused.items():
        with pytest.raises(ConfigError, match=key):
            parse_config(text)


def test_only_the_event_types_someone_wants_are_built() -> None:
    """As the mirror's Router: with a monitor wanting only HW_OFFLOAD, conntrack's NEW/UPDATE and
    the flowtable's OFFLOAD are never described, and the connection still reaches hardware."""
    events: list[dict] = []
    asked: list[str] = []

    def wants(kind: str) -> bool:
        asked.append(kind)
        return kind == "HW_OFFLOAD"

    router = KernelRouter(parse_config(CONFIG), OffloadPolicy(), on_event=events.append,
                          wants=wants)
    offloaded(router)
    assert [e["type"] for e in events] == ["HW_OFFLOAD"]
    assert {"OFFLOAD", "HW_OFFLOAD"} <= set(asked)
    assert router.snapshot(0.0)["conns"][0]["offload"] == "HW_OFFLOAD"
