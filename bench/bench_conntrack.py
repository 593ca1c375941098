"""Conntrack and NAT cost (not a test): packets/s through track(), new connections/s with
masquerade, and one gc() pass over a full table.

    .venv/bin/python bench/bench_conntrack.py [N]      # N connections, default 65,536

The classic path runs track() once per packet it handles, so its rate bounds the slow path;
gc() pops due deadlines from a heap, so a pass where nothing expires costs next to nothing.
Every figure is measured in this run; ratios compare the hot path with the first-packet path.
"""

from __future__ import annotations

import random
import sys
import time

from controller.netfilter.conntrack import Conntrack
from controller.netfilter.ct import IPPROTO_TCP, CtTuple
from controller.netfilter.nat import Manip, Nat, NatRange

WAN = bytes((192, 0, 2, 1))
SERVER = bytes((8, 8, 8, 8))
ACK, SYN = 0x10, 0x02


def tuples(n: int) -> list[CtTuple]:
    return [
        CtTuple(
            4, IPPROTO_TCP, bytes((10, 1, (i >> 8) & 0xFF, i & 0xFF)), SERVER, 40000, 443 + i % 8
        )
        for i in range(n)
    ]


def established_rate(
    ct: Conntrack, flows: list[CtTuple], replies: list[CtTuple], clock=time.perf_counter
) -> float:
    """Packets/s of track() on connections it knows (the in-process core's hot path)."""
    start = clock()
    for tup, rep in zip(flows, replies, strict=True):
        ct.track(rep, tcp_flags=SYN | ACK, length=60, now=1.0)
        ct.track(tup, tcp_flags=ACK, length=52, now=1.0)
    return 2 * len(flows) / (clock() - start)


def setup(n: int) -> tuple[Conntrack, list[CtTuple], list[CtTuple], float]:
    """``n`` masqueraded connections: the table, their tuples, reply tuples, and conns/s."""
    ct = Conntrack(max_entries=n)
    nat = Nat(ct, rng=random.Random(1))
    flows = tuples(n)
    start = time.perf_counter()
    for tup in flows:  # every host uses source port 40000: all but 8 are remapped
        conn = ct.track(tup, tcp_flags=SYN, length=60, now=0.0).conn
        assert conn is not None
        assert nat.setup(conn, NatRange(WAN), Manip.SRC)
        assert ct.confirm(conn, 0.0)
    new_rate = n / (time.perf_counter() - start)
    replies = [ct.lookup(tup)[0].tuples[1] for tup in flows]  # type: ignore[index]
    assert len(set(replies)) == n
    return ct, flows, replies, new_rate


def main(n: int) -> None:
    ct, flows, replies, new_rate = setup(n)

    hot_rate = established_rate(ct, flows, replies)

    start = time.perf_counter()
    alive = ct.gc(2.0)
    gc_live = time.perf_counter() - start
    start = time.perf_counter()
    dead = ct.gc(1e9)
    gc_all = time.perf_counter() - start
    assert alive == 0 and dead == n

    print(f"connections                 {n}")
    print(f"new + masquerade + confirm  {new_rate:12,.0f} conns/s")
    print(f"established packets         {hot_rate:12,.0f} pkts/s  ({hot_rate / new_rate:.1f}x new)")
    print(f"gc pass, nothing expires    {gc_live * 1e3:12.1f} ms")
    print(f"gc pass, everything expires {gc_all * 1e3:12.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 65536)
