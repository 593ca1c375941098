"""Software flowtable at scale (not a test): insert/s, lookup/s, bytes per flow, GC step time.

    .venv/bin/python bench/bench_flowtable.py [N]      # N flows, default 1,000,000

Targets (issue 3): >= 1M lookups/s, <= 1 KB per flow, one GC step over 1M flows <= 100 ms.
Every figure is measured in this run and printed with its ratio to the target.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc

from controller.netfilter.conntrack import Conntrack
from controller.netfilter.ct import IPPROTO_TCP, Conn, CtTuple, Status, TcpState
from controller.netfilter.flowtable import FlowRoute, Flowtable

ROUTES = (
    FlowRoute(1, 2, b"\x00\x00\x00\x00\x02\xfe", b"\x00\x00\x00\x00\x02\x02", 1500),
    FlowRoute(2, 1, b"\x00\x00\x00\x00\x01\xfe", b"\x00\x00\x00\x00\x01\x01", 1500),
)
TARGET_LOOKUPS = 1_000_000.0
TARGET_BYTES = 1024.0
TARGET_GC_STEP = 0.100


def make_conns(n: int) -> list[Conn]:
    conns = []
    for i in range(n):
        src = bytes((10, 1, (i >> 8) & 0xFF, i & 0xFF))
        dst = bytes((10, 2, (i >> 24) & 0xFF, (i >> 16) & 0xFF))
        sport, dport = 1024 + i % 60000, 443
        orig = CtTuple(4, IPPROTO_TCP, src, dst, sport, dport)
        conn = Conn(
            (orig, orig.inverted()),
            status=Status.CONFIRMED | Status.ASSURED | Status.SEEN_REPLY,
            tcp_state=TcpState.ESTABLISHED,
            id=i,
        )
        conns.append(conn)
    return conns


def fill(ft: Flowtable, conns: list[Conn], now: float) -> float:
    start = time.perf_counter()
    new_flow, add = ft.new_flow, ft.add
    for conn in conns:
        add(new_flow(conn, ROUTES), now)
    return time.perf_counter() - start


def main(n: int) -> None:
    print(f"building {n:,} conntrack entries ...", flush=True)
    conns = make_conns(n)
    gc.collect()
    gc.freeze()  # the conns are long-lived: keep the cyclic GC from rescanning them

    ft = Flowtable("bench", Conntrack(), gc_batch=100_000)
    elapsed = fill(ft, conns, 0.0)
    print(f"insert:     {n / elapsed:12,.0f} flows/s")

    keys = [f.keys[i & 1] for i, f in enumerate(ft.flows())]
    lookup = ft.lookup
    start = time.perf_counter()
    for key in keys:
        lookup(key)
    rate = len(keys) / (time.perf_counter() - start)
    print(
        f"lookup:     {rate:12,.0f} lookups/s   ratio to 1M/s target: {rate / TARGET_LOOKUPS:.2f}"
    )

    steps = []
    now = 1.0
    visited = ft.gc_batch
    while visited == ft.gc_batch:  # one full GC pass where nothing expires
        start = time.perf_counter()
        visited = ft.gc_step(now)
        steps.append(time.perf_counter() - start)
    worst = max(steps)
    print(
        f"gc step:    {worst * 1000:12.1f} ms worst of {len(steps)} steps "
        f"({ft.gc_batch:,} flows each, full pass {sum(steps):.2f} s)   "
        f"ratio to 100 ms target: {worst / TARGET_GC_STEP:.2f}"
    )
    del ft, keys

    for conn in conns:  # admission set nothing here, but reset the ct timeout writes
        conn.timeout = 0.0
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ft2 = Flowtable("bench-mem", Conntrack())
    fill(ft2, conns, 0.0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_flow = used / n
    print(
        f"memory:     {per_flow:12,.0f} bytes/flow (flowtable only; the conntrack entry is "
        f"not counted)   ratio to 1 KB target: {per_flow / TARGET_BYTES:.2f}"
    )
    del ft2


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
