"""The flowtable against the real conntrack: the kernel's moment of offload, hand-back, events."""

from __future__ import annotations

from controller.ip.packet import TCP_ACK, TCP_SYN
from controller.netfilter.admission import admit
from controller.netfilter.conntrack import Conntrack, CtEvent
from controller.netfilter.ct import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    ORIGINAL,
    REPLY,
    CtTuple,
    Status,
    TcpState,
)
from controller.netfilter.flowtable import FlowEvent, Flowtable
from controller.netfilter.offload import OffloadQueue
from ndo.memory import MemoryDriver
from tests.unit.ft_helpers import H1, H2, resolve


class _Pkt:
    family, options = 4, False

    def __init__(self, tcp_flags: int = TCP_ACK) -> None:
        self.tcp_flags = tcp_flags


def _handshake(ct: Conntrack, now: float):
    orig = CtTuple(4, IPPROTO_TCP, H1, H2, 40000, 80)
    syn = ct.track(orig, tcp_flags=TCP_SYN, now=now, window=1000)
    assert syn.conn is not None and ct.confirm(syn.conn, now)
    ct.track(orig.inverted(), tcp_flags=TCP_SYN | TCP_ACK, now=now, window=1000)
    ct.track(orig, tcp_flags=TCP_ACK, now=now, window=1000)
    return syn.conn


def test_offload_happens_at_the_handshake_completing_ack() -> None:
    ct_events: list[CtEvent] = []
    ct = Conntrack(on_event=ct_events.append)
    ft = Flowtable("f", ct)
    orig = CtTuple(4, IPPROTO_TCP, H1, H2, 40000, 80)
    now = 10.0
    syn = ct.track(orig, tcp_flags=TCP_SYN, now=now)
    assert syn.conn is not None
    conn = syn.conn
    assert admit(ft, conn, _Pkt(TCP_SYN), ORIGINAL, 1, resolve, now) is None  # unconfirmed
    ct.confirm(conn, now)
    ct.track(orig.inverted(), tcp_flags=TCP_SYN | TCP_ACK, now=now)
    assert admit(ft, conn, _Pkt(TCP_SYN | TCP_ACK), REPLY, 2, resolve, now) is None
    ct.track(orig, tcp_flags=TCP_ACK, now=now)
    assert conn.tcp_state == TcpState.ESTABLISHED and conn.status & Status.ASSURED
    before = len(ct_events)
    flow = admit(ft, conn, _Pkt(), ORIGINAL, 1, resolve, now)
    assert flow is not None and conn.status & Status.OFFLOAD
    assert len(ct_events) == before  # test_and_set_bit(IPS_OFFLOAD_BIT): no ct event
    assert conn.timeout == now + 86400


def test_conntrack_keeps_offloaded_conn_and_gets_it_back_fixed_up() -> None:
    ct = Conntrack()
    events: list[FlowEvent] = []
    ft = Flowtable("f", ct, on_event=events.append)
    conn = _handshake(ct, 0.0)
    assert admit(ft, conn, _Pkt(), ORIGINAL, 1, resolve, 0.0) is not None
    conn.timeout = 200.0  # less than 5 minutes left while offloaded...
    ft.gc_run(10.0)  # ...so the flowtable GC pushes it a day out again
    assert conn.timeout == 10.0 + 86400
    assert ct.gc(250.0) == 0
    ft.gc_run(250.0)  # idle since 0: expired
    assert not conn.status & Status.OFFLOAD and len(ft) == 0
    assert conn.timeout == 10.0 + 86400  # fix-up only lowers: established's 5 days is longer
    assert ct.gc(300.0) == 0 and len(ct) == 1  # back on the classic path, alive
    assert all(t.max_window == 0 for t in conn.tcp)
    assert [e.type for e in events] == ["OFFLOAD", "TEARDOWN"]
    assert events[-1].reason == "expired"


def test_conntrack_delete_tears_the_flow_down() -> None:
    ct = Conntrack()
    ft = Flowtable("f", ct)
    orig = CtTuple(4, IPPROTO_UDP, H1, H2, 5000, 53)
    first = ct.track(orig, now=0.0)
    assert first.conn is not None
    ct.confirm(first.conn, 0.0)
    flow = admit(ft, first.conn, _Pkt(), ORIGINAL, 1, resolve, 0.0)  # UDP: no reply needed
    assert flow is not None
    ct.delete(first.conn, 1.0)
    assert ft.lookup(flow.keys[ORIGINAL]) is None
    ft.gc_run(2.0)
    assert len(ft) == 0 and ft.counters["teardown_ct_dying"] == 1


def test_offload_status_flips_send_no_conntrack_update_and_refusal_sends_nothing() -> None:
    """IPS_OFFLOAD (test_and_set_bit / clear_bit) and IPS_HW_OFFLOAD (set_bit in
    flow_offload_work_add, clear_bit in flow_offload_work_del) are not conntrack events; the
    flowtable reports OFFLOAD / HW_OFFLOAD / TEARDOWN / DESTROY as its own."""
    ct_events: list[CtEvent] = []
    ct = Conntrack(on_event=ct_events.append)
    queue = OffloadQueue()
    flow_events: list[FlowEvent] = []
    ft = Flowtable("f", ct, devices=(1, 2), offload=True, hw=queue, on_event=flow_events.append)
    hw = MemoryDriver(clock=lambda: 0.0)
    conn = _handshake(ct, 0.0)
    before = len(ct_events)
    assert admit(ft, conn, _Pkt(), ORIGINAL, 1, lambda *a: None, 0.0) is None  # no route
    assert len(ct_events) == before and not flow_events  # a refusal: no event at all
    flow = admit(ft, conn, _Pkt(), ORIGINAL, 1, resolve, 0.0)
    assert flow is not None
    queue.complete(hw.execute_now(queue.take_batch(10)))
    assert conn.status & Status.HW_OFFLOAD
    ft.teardown(flow, 1.0, "test")
    ft.gc_run(1.0)
    queue.complete(hw.execute_now(queue.take_batch(10)))
    assert not conn.status & (Status.OFFLOAD | Status.HW_OFFLOAD)
    assert len(ct_events) == before
    assert [e.type for e in flow_events] == ["OFFLOAD", "HW_OFFLOAD", "TEARDOWN", "DESTROY"]
