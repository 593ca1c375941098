"""Kernel flowtable behaviours 1, 2, 9-12, 16, 17 (kernel-flowtable.md §7) on a fake clock."""

from __future__ import annotations

import pytest

from controller.netfilter.conntrack import Conntrack
from controller.netfilter.ct import IPPROTO_TCP, IPPROTO_UDP, ORIGINAL, REPLY, Status, TcpState
from controller.netfilter.flowtable import (
    CLOSING,
    HW,
    HW_DEAD,
    HW_DYING,
    TEARDOWN,
    Flowtable,
    FlowtableError,
    make_key,
)
from inet.encap import Encap
from tests.unit.ft_helpers import H1, H2, ROUTER_WAN, Rig, make_conn


def test_b01_key_has_two_directions() -> None:
    rig = Rig(offload=False)
    conn = make_conn(snat=ROUTER_WAN, snat_port=61000)
    flow = rig.admit(conn)
    assert flow is not None
    orig_key = make_key(4, IPPROTO_TCP, H1, H2, 40000, 80, 1)
    reply_key = make_key(4, IPPROTO_TCP, H2, ROUTER_WAN, 80, 61000, 2)
    assert flow.keys == (orig_key, reply_key)
    assert rig.ft.lookup(orig_key) == (flow, ORIGINAL)
    assert rig.ft.lookup(reply_key) == (flow, REPLY)
    # every key field counts: another ingress port, or a VLAN tag, is another key
    assert rig.ft.lookup(make_key(4, IPPROTO_TCP, H1, H2, 40000, 80, 2)) is None
    tagged = (Encap(5, 0x8100),)
    assert rig.ft.lookup(make_key(4, IPPROTO_TCP, H1, H2, 40000, 80, 1, tagged)) is None


def test_b01_unused_fields_are_zero_filled() -> None:
    assert make_key(4, 47, H1, H2, 1234, 5678, 1) == (H1, H2, 0, 0, 1, 4, 47, ())
    assert make_key(4, IPPROTO_UDP, H1, H2, 1, 2, 3)[7] == ()
    assert make_key(4, IPPROTO_UDP, H1, H2, 1, 2, 3, (Encap(10, 0x8100),))[7] == ((10, 0x8100),)


def test_b02_teardown_or_dying_lookup_misses() -> None:
    rig = Rig(offload=False)
    a, b = make_conn(conn_id=1), make_conn(conn_id=2, sport=40001)
    fa, fb = rig.admit(a), rig.admit(b)
    assert fa is not None and fb is not None
    rig.ft.teardown(fa, rig.now, "test")
    assert rig.ft.lookup(fa.keys[ORIGINAL]) is None
    b.status |= Status.DYING
    assert rig.ft.lookup(fb.keys[REPLY]) is None


def test_b09_refresh_once_per_second() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    first = flow.timeout
    assert first == rig.now + 30
    rig.tick(0.9)
    rig.ft.refresh(flow, rig.now)
    assert flow.timeout == first and len(rig.queue) == 0  # within 1 s: no write, no REPLACE
    rig.tick(0.2)
    rig.ft.refresh(flow, rig.now)
    assert flow.timeout == rig.now + 30
    assert len(rig.queue) == 1  # the write re-queues REPLACE on an offload flowtable


def test_b09_closing_flow_is_not_re_offloaded_on_refresh() -> None:
    rig = Rig()
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.drain()
    flow.flags |= CLOSING
    rig.tick(5)
    rig.ft.refresh(flow, rig.now)
    assert flow.timeout == rig.now + 30 and len(rig.queue) == 0


def test_b10_gc_expires_software_flow_in_one_pass() -> None:
    rig = Rig(offload=False)
    flow = rig.admit(make_conn())
    assert flow is not None
    rig.tick(29)
    rig.gc()
    assert len(rig.ft) == 1
    rig.tick(1)
    rig.gc()
    assert len(rig.ft) == 0 and flow.flags & TEARDOWN
    assert rig.event_types() == ["OFFLOAD", "TEARDOWN"]


def test_b10_gc_frees_hardware_flow_after_destroy_completed() -> None:
    rig = Rig()
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    rig.drain()
    assert len(rig.hw.rules) == 2
    rig.tick(31)
    rig.gc()  # pass 1: teardown + DESTROY queued
    assert flow.flags & TEARDOWN and flow.flags & HW_DYING and len(rig.ft) == 1
    rig.gc()  # DESTROY not done yet: still held
    assert len(rig.ft) == 1
    rig.drain()
    assert flow.flags & HW_DEAD and not rig.hw.rules
    assert not conn.status & Status.HW_OFFLOAD
    rig.gc()  # pass 2 after completion: freed
    assert len(rig.ft) == 0
    assert rig.event_types() == ["OFFLOAD", "HW_OFFLOAD", "TEARDOWN", "DESTROY"]


def test_b10_gc_tears_down_flow_whose_ct_died() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    rig.admit(conn)
    conn.status |= Status.DYING
    rig.gc()
    assert len(rig.ft) == 0 and rig.ft.counters["teardown_ct_dying"] == 1


def test_b10_incremental_gc_step_covers_every_flow_once_per_pass() -> None:
    rig = Rig(offload=False, gc_batch=3)
    for i in range(10):
        rig.admit(make_conn(conn_id=i, sport=1000 + i))
    rig.tick(31)
    visited = [rig.ft.gc_step(rig.now) for _ in range(4)]
    assert visited == [3, 3, 3, 1] and len(rig.ft) == 0
    assert rig.ft.gc_step(rig.now + 0.5) == 0  # next pass starts a second after the last


def test_b10_gc_extends_ct_timeout_of_offloaded_conn() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    rig.admit(conn)
    conn.timeout = rig.now + 100  # < 5 min left
    rig.tick(1)
    rig.gc()
    assert conn.timeout == rig.now + 86400


def test_b11_teardown_fixes_ct_after_expiry() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    conn.tcp[0].max_window = conn.tcp[1].max_window = 65535
    conn.tcp[1].maxack_set = True
    rig.admit(conn)
    assert conn.status & Status.OFFLOAD
    conn.tcp_state = TcpState.CLOSE_WAIT  # e.g. a FIN conntrack saw before the offload
    rig.tick(30)
    rig.gc()
    assert not conn.status & Status.OFFLOAD
    assert conn.tcp_state == TcpState.CLOSE_WAIT
    assert conn.timeout == rig.now + 60 - 30  # state timeout minus the idled budget
    assert all(t.max_window == 0 and not t.maxack_set for t in conn.tcp)


def test_b11_fixup_never_raises_the_ct_timeout_unless_closing() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    rig.admit(conn)
    rig.tick(30)
    rig.gc()
    assert conn.timeout == rig.now - 30 + 86400  # established 432000 s would be longer


def test_b11_teardown_of_closing_flow_forces_tcp_close() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    rig.ft.set_closing(flow)
    rig.ft.teardown(flow, rig.now, "test")
    assert conn.tcp_state == TcpState.CLOSE and conn.timeout == rig.now + 10
    assert conn.tcp[ORIGINAL].close_init


def test_closing_flow_that_expires_gets_the_full_tcp_close_timeout() -> None:
    """flow_offload_fixup_ct (≥6.14): CLOSING → CLOSE with timeouts[CLOSE], expired = false."""
    rig = Rig(offload=False)
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None
    rig.ft.set_closing(flow)  # a FIN went through the fast path, then silence
    rig.tick(31)
    rig.gc()  # idle: expired
    assert rig.ft.counters["teardown_expired"] == 1 and len(rig.ft) == 0
    assert conn.tcp_state == TcpState.CLOSE and conn.timeout == rig.now + 10


def test_b11_udp_fixup_only_lowers_timeout() -> None:
    rig = Rig(offload=False)
    conn = make_conn(IPPROTO_UDP, dport=53)
    flow = rig.admit(conn)
    assert flow is not None
    rig.ft.teardown(flow, rig.now, "ct_dying")  # not expiry: nothing subtracted
    assert conn.timeout == rig.now + 120
    conn2 = make_conn(IPPROTO_UDP, sport=5, conn_id=2)
    flow2 = rig.admit(conn2)
    assert flow2 is not None
    conn2.timeout = rig.now + 50  # already below the replied timeout: left alone
    rig.ft.teardown(flow2, rig.now, "test")
    assert conn2.timeout == rig.now + 50


def test_b12_device_down_tears_down_flows_by_ingress_port() -> None:
    rig = Rig(offload=False)
    conn = make_conn()
    rig.admit(conn)
    assert rig.ft.cleanup_port(3, rig.now) == 0 and len(rig.ft) == 1
    assert rig.ft.cleanup_port(2, rig.now) == 1  # the REPLY direction comes in on port 2
    assert len(rig.ft) == 0
    assert not conn.dying and not conn.status & Status.OFFLOAD  # conntrack survives


def test_b12_flowtable_delete_removes_flows_and_hardware_rules() -> None:
    rig = Rig()
    conns = [make_conn(conn_id=i, sport=2000 + i) for i in range(3)]
    for c in conns:
        rig.admit(c)
    rig.drain()
    assert len(rig.hw.rules) == 6
    rig.ft.free(rig.now)
    rig.drain()
    rig.gc()
    assert len(rig.ft) == 0 and not rig.hw.rules
    assert all(not c.dying and not c.status & (Status.OFFLOAD | Status.HW_OFFLOAD) for c in conns)
    assert rig.admit(make_conn(conn_id=9, sport=9)) is None


def test_b16_flowtable_flags_devices_and_delete() -> None:
    rig = Rig(offload=False)
    with pytest.raises(FlowtableError):
        rig.ft.set_offload(True)
    rig.ft.set_offload(False)
    rig.ft.counter = True  # COUNTER may change
    rig.ft.add_devices((3,))
    assert rig.ft.devices == {1, 2, 3}
    rig.admit(make_conn())
    rig.ft.remove_devices((1,), rig.now)
    assert rig.ft.devices == {2, 3} and len(rig.ft) == 0
    rig.ft.refs = 1
    with pytest.raises(FlowtableError):
        rig.ft.free(rig.now)
    rig.ft.refs = 0
    rig.ft.free(rig.now)
    assert rig.ft.freed


def test_b16_offload_flowtable_needs_a_queue_and_valid_options() -> None:

    with pytest.raises(FlowtableError):
        Flowtable("f", Conntrack(), offload=True)
    with pytest.raises(FlowtableError):
        Flowtable("f", Conntrack(), fin_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(FlowtableError):
        Flowtable("f", Conntrack(), tcp_timeout=0)


def test_b17_status_shows_offload_then_hw_offload_and_work_counters() -> None:
    rig = Rig()
    conn = make_conn()
    flow = rig.admit(conn)
    assert flow is not None and flow.flags & HW
    assert conn.status & Status.OFFLOAD and not conn.status & Status.HW_OFFLOAD
    assert rig.queue.outstanding()["replace"] == 1
    rig.drain()
    assert conn.status & Status.HW_OFFLOAD
    assert rig.queue.outstanding() == {}
    assert rig.queue.counters["replace_queued"] == 1 and rig.queue.counters["replace_done"] == 1
