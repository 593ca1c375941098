"""Kernel flowtable behaviours 13-15: hardware offload through the work queue (§4)."""

from __future__ import annotations

import dataclasses

from controller.netfilter.admission import admit
from controller.netfilter.ct import IPPROTO_UDP, ORIGINAL, REPLY, Status
from controller.netfilter.flowtable import HW_BIDIRECTIONAL, HW_PENDING
from controller.netfilter.offload import build_rule, cookie_of
from ndo.api import Command, FlowResult, FlowStats, Refusal
from tests.unit.ft_helpers import (
    H1,
    H1_MAC,
    H2,
    H2_MAC,
    R1_MAC,
    R2_MAC,
    ROUTER_WAN,
    ROUTES,
    Rig,
    make_conn,
    packet_for,
)


def test_b13_one_outstanding_command_per_flow() -> None:
    rig = Rig()
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None and flow.flags & HW_PENDING
    rig.tick(2)
    rig.ft.refresh(flow, rig.now)  # REPLACE again while the first is queued: dropped
    assert len(rig.queue) == 1 and rig.queue.counters["dropped_pending"] == 1
    batch = rig.queue.take_batch(10)
    assert [c.cookie for c in batch] == [cookie_of(flow, ORIGINAL), cookie_of(flow, REPLY)]
    assert rig.queue.destroy(rig.ft, flow) is False  # still in flight
    rig.queue.complete(rig.hw.execute_now(batch))
    assert not flow.flags & HW_PENDING and conn.status & Status.HW_OFFLOAD


def test_b13_reply_rule_only_when_bidirectional() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    flow.flags &= ~HW_BIDIRECTIONAL
    rig.hw.rules.clear()
    rig.hw._by_match.clear()
    rig.tick(2)
    rig.ft.refresh(flow, rig.now)
    assert [c.cookie for c in rig.queue.take_batch(10)] == [cookie_of(flow, ORIGINAL)]


def test_b13_refused_replace_stays_in_software_and_is_retried_on_refresh() -> None:
    rig = Rig()
    refuse = {"on": True}
    rig.hw.fail = lambda cmd: Refusal.UNAVAILABLE if refuse["on"] else None
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    rig.drain()
    assert not conn.status & Status.HW_OFFLOAD and conn.status & Status.OFFLOAD
    assert rig.queue.counters["replace_failed"] == 1
    refuse["on"] = False
    rig.tick(1.5)
    assert rig.fast.forward(packet_for(conn, ORIGINAL), 1, rig.now).verdict == "forward"
    rig.drain()
    assert conn.status & Status.HW_OFFLOAD and len(rig.hw.rules) == 2


def test_b13_hw_offload_set_when_one_direction_accepted() -> None:
    rig = Rig()
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    reply_cookie = cookie_of(flow, REPLY)
    rig.hw.fail = lambda cmd: Refusal.UNSUPPORTED if cmd.cookie == reply_cookie else None
    rig.drain()
    assert conn.status & Status.HW_OFFLOAD and flow.hw_dirs == 1 << ORIGINAL


def test_b13_duplicate_replace_is_harmless() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    rig.tick(2)
    rig.ft.refresh(flow, rig.now)
    rig.drain()
    assert len(rig.hw.rules) == 2 and rig.queue.counters["replace_failed"] == 0


def test_b14_stats_only_after_ten_percent_of_the_budget() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    rig.tick(2.9)
    rig.gc()
    assert len(rig.queue) == 0
    rig.tick(0.2)
    rig.gc()
    assert rig.queue.outstanding()["stats"] == 1


def test_b14_hardware_activity_extends_the_flow() -> None:
    rig = Rig()
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    rig.drain()
    for _ in range(40):  # 40 s of hardware-only traffic, GC every second
        rig.tick(1)
        assert rig.hw.process(bytes(packet_for(conn, ORIGINAL).frame), 1) is not None
        rig.gc()
        rig.drain()
    assert len(rig.ft) == 1 and conn.status & Status.HW_OFFLOAD
    assert flow.timeout > rig.now + 25
    for _ in range(32):  # then silence: it expires, both rules go
        rig.tick(1)
        rig.gc()
        rig.drain()
    assert len(rig.ft) == 0 and not rig.hw.rules


def test_b14_stats_deltas_go_to_ct_counters_only_with_counter() -> None:
    for counter in (False, True):
        rig = Rig(counter=counter)
        conn = make_conn()
        flow = rig.admit(conn)
        assert flow is not None
        rig.drain()
        frame = bytes(packet_for(conn, REPLY).frame)
        for _ in range(3):
            rig.hw.process(frame, 2)
        rig.tick(4)
        rig.gc()
        rig.drain()
        rig.tick(4)
        rig.gc()
        rig.drain()  # a second STATS reports a zero delta
        assert conn.packets == ([0, 3] if counter else [0, 0])
        assert conn.bytes == ([0, 3 * len(frame)] if counter else [0, 0])


def test_b14_unknown_cookie_gives_no_stats_and_flow_ages_out() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    rig.tick(5)
    rig.gc()
    batch = rig.queue.take_batch(10)
    assert {c.command for c in batch} == {Command.STATS}
    deadline = flow.timeout
    rig.queue.complete([FlowResult(c.cookie, c.command, Refusal.UNKNOWN_COOKIE) for c in batch])
    assert flow.timeout == deadline


def test_b14_timeout_is_max_of_current_and_lastused_plus_budget() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    rig.tick(10)
    rig.gc()
    batch = rig.queue.take_batch(10)
    deadline = flow.timeout
    old = FlowStats(1, 100, lastused=rig.now - 25)  # older than the software refresh
    rig.queue.complete([FlowResult(c.cookie, c.command, stats=old) for c in batch])
    assert flow.timeout == deadline


def test_b15_rule_build_matches_and_rewrites() -> None:
    rig = Rig(offload=False)
    flow = rig.admit(make_conn(snat=ROUTER_WAN, snat_port=61000))
    assert flow is not None
    orig = build_rule(flow, ORIGINAL)
    reply = build_rule(flow, REPLY)
    assert orig is not None and reply is not None
    m = orig.match
    assert (m.ingress_port, m.family, m.src, m.dst, m.proto, m.sport, m.dport) == (
        1,
        4,
        H1,
        H2,
        6,
        40000,
        80,
    )
    a = orig.actions
    assert (a.egress_port, a.eth_src, a.eth_dst, a.mtu) == (2, R2_MAC, H2_MAC, 1500)
    assert (a.nat_src, a.nat_sport, a.nat_dst, a.nat_dport) == (ROUTER_WAN, 61000, None, None)
    assert reply.match.ingress_port == 2 and reply.match.dst == ROUTER_WAN
    r = reply.actions
    assert (r.egress_port, r.eth_src, r.eth_dst) == (1, R1_MAC, H1_MAC)
    assert (r.nat_src, r.nat_sport, r.nat_dst, r.nat_dport) == (None, None, H1, 40000)


def test_b15_rule_build_fails_without_neighbour_or_for_gre() -> None:
    rig = Rig()
    conn = make_conn(IPPROTO_UDP)
    unresolved = (ROUTES[0], dataclasses.replace(ROUTES[1], eth_dst=b""))
    flow = admit(rig.ft, conn, packet_for(conn, 0), 0, 1, lambda c, d, p, f: unresolved, rig.now)
    assert flow is not None and build_rule(flow, REPLY) is None
    assert len(rig.queue) == 0 and rig.queue.counters["build_failed"] == 1
    assert not conn.status & Status.HW_OFFLOAD
    gre = rig.admit(make_conn(47, sport=0, dport=0, conn_id=5))
    assert gre is not None and build_rule(gre, ORIGINAL) is None


def test_b14_gc_step_passes_over_only_flows_with_nothing_to_do() -> None:
    """The incremental GC skips gc_flow for hardware flows with no STATS due and CLOSING
    flows whose rules are gone: what it queues and frees is what gc_flow on every flow does."""

    def replay(step: bool) -> list[tuple[dict[str, int], list[int]]]:
        rig = Rig()
        flows = [rig.admit(make_conn(sport=40000 + i, conn_id=i + 1)) for i in range(4)]
        rig.drain()  # all four in hardware
        seen = []
        for second in range(45):
            rig.tick(1)
            if second == 2:
                rig.ft.set_closing(flows[0])  # a FIN: DESTROY on the next pass
            if second in (1, 5, 9):  # flow 1 stays busy in hardware
                assert flows[1] is not None
                frame = bytes(packet_for(flows[1].conn, ORIGINAL).frame)
                assert rig.hw.process(frame, 1) is not None
            if step:
                rig.ft.gc_step(rig.now, budget=100)
            else:
                rig.ft.gc_run(rig.now)
            seen.append((dict(rig.queue.outstanding()), sorted(f.conn.id for f in rig.ft.flows())))
            rig.drain()
        return seen

    full = replay(step=False)
    assert any(queued.get("stats") for queued, _ in full)
    assert any(queued.get("destroy") for queued, _ in full)
    assert full[-1][1] == []  # everything aged out in the end
    assert replay(step=True) == full
