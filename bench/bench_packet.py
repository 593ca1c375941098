"""Packet-path benchmark: parse, NAT rewrite and full checksum against scapy, in one run.

Prints the per-operation cost and the ratios that matter: how much faster the struct parser is
than scapy's dissector, and how much cheaper RFC 1624 incremental updates are than recomputing
the checksums of the rewritten frame.

    .venv/bin/python bench/bench_packet.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from controller.ip.mangle import decrement_ttl, set_src_addr, set_src_port
from controller.ip.packet import parse
from inet.checksum import checksum, pseudo_header_sum

FRAME = bytes(
    Ether()
    / IP(src="10.0.1.1", dst="10.0.2.2")
    / TCP(sport=40000, dport=80, flags="A")
    / (b"x" * 1400)
)
NEW_ADDR = bytes([192, 0, 2, 1])


def per_op(fn: Callable[[], object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds


PARSED = parse(bytearray(FRAME))
BUF = bytearray(FRAME)


def rewrite_incremental() -> None:
    pkt = PARSED
    set_src_addr(pkt, NEW_ADDR)
    set_src_port(pkt, 1024)
    if pkt.ttl < 2:
        pkt.frame[22] = pkt.ttl = 64
    decrement_ttl(pkt)


def rewrite_recompute() -> None:
    buf = BUF
    buf[26:30] = NEW_ADDR
    buf[34:36] = (1024).to_bytes(2, "big")
    buf[22] = (buf[22] - 1) or 64
    buf[24:26] = b"\0\0"
    buf[24:26] = checksum(buf[14:34]).to_bytes(2, "big")
    buf[50:52] = b"\0\0"
    seg = buf[34:]
    buf[50:52] = checksum(seg, pseudo_header_sum(4, NEW_ADDR, buf[30:34], 6, len(seg))).to_bytes(
        2, "big"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    n = args.rounds
    ours = per_op(lambda: parse(FRAME), n)
    scapy = per_op(lambda: Ether(FRAME), max(n // 20, 100))
    incr = per_op(rewrite_incremental, n)
    full = per_op(rewrite_recompute, n)
    print(f"parse (struct)            {ours * 1e6:8.2f} us")
    print(
        f"parse (scapy Ether())     {scapy * 1e6:8.2f} us   ratio scapy/ours {scapy / ours:6.1f}x"
    )
    print(f"NAT + TTL, RFC 1624       {incr * 1e6:8.2f} us")
    print(
        f"NAT + TTL, recompute      {full * 1e6:8.2f} us   ratio recompute/incremental "
        f"{full / incr:6.2f}x  ({len(FRAME)}-byte frame)"
    )


if __name__ == "__main__":
    main()
