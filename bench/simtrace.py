"""A reproducible synthetic capture for ``p4ft simulate`` at scale (bench_simulate.py).

``write_trace(dir, connections)`` writes ``h1.pcap`` (port 1, clients 10.0.1.x) and ``h2.pcap``
(port 2, the server 10.0.2.2) for ``examples/router/router.toml``: every host first asks for
its gateway (ARP), then connections start at a fixed rate, each a TCP handshake, ``DATA``
segments (two downloads for every upload) and a FIN exchange. The number of connections open
at once depends only on the start rate and a connection's length, so traces of 100k and 1M
packets have the same concurrency. Frames are packed with struct (scapy would take minutes),
checksums valid, in time order per file; nothing random, so the files are the same byte for byte.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator
from pathlib import Path

from controller.edges.pcap import PcapWriter
from inet.checksum import checksum, pseudo_header_sum

T0 = 1_700_000_000.0
CLIENTS = 50  # client hosts 10.0.1.1 .. 10.0.1.50
DATA = 44  # data segments per connection: 3 + 44 + 3 = 50 frames
START_RATE = 20.0  # connections started per virtual second
GAP = 0.25  # seconds between data segments: a connection lasts ~11 s, ~220 open at once
ARP_EVERY = 10.0  # every host answers the router's neighbour probes (a unicast ARP reply)
R1_MAC, R2_MAC = bytes.fromhex("0000000001fe"), bytes.fromhex("0000000002fe")
SERVER_MAC, SERVER_IP = bytes.fromhex("000000000202"), bytes((10, 0, 2, 2))
SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08

Event = tuple[float, int, bytes]  # (time, port, frame)


def client(i: int) -> tuple[bytes, bytes]:
    host = 1 + i % CLIENTS
    return bytes((0, 0, 0, 0, 1, host)), bytes((10, 0, 1, host))


def arp(op: int, mac: bytes, ip: bytes, target: bytes, target_mac: bytes) -> bytes:
    eth = (b"\xff" * 6 if op == 1 else target_mac) + mac + b"\x08\x06"
    return eth + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, mac, ip, target_mac, target)


def neighbours(connections: int, until: float) -> Iterator[Event]:
    """Every host's ARP request for its gateway, then its ARP replies every ARP_EVERY s:
    a replay cannot answer the router's probes, so the capture carries the answers."""
    hosts = [
        (1, *client(k), bytes((10, 0, 1, 254)), R1_MAC) for k in range(min(CLIENTS, connections))
    ]
    hosts.append((2, SERVER_MAC, SERVER_IP, bytes((10, 0, 2, 254)), R2_MAC))
    for k, (port, mac, ip, gw, _) in enumerate(hosts):
        yield T0 + k * 0.001, port, arp(1, mac, ip, gw, b"\0" * 6)
    t = T0 + ARP_EVERY
    while t < until:
        for k, (port, mac, ip, gw, gw_mac) in enumerate(hosts):
            yield t + k * 0.001, port, arp(2, mac, ip, gw, gw_mac)
        t += ARP_EVERY


def tcp_frame(
    src_mac: bytes,
    dst_mac: bytes,
    src: bytes,
    dst: bytes,
    ports: tuple[int, int],
    seq: int,
    ack: int,
    flags: int,
    payload: int,
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", *ports, seq, ack, 5 << 4, flags, 65535, 0, 0)
    data = b"\0" * payload  # zeros: they add nothing to the checksum
    check = checksum(tcp, pseudo_header_sum(4, src, dst, 6, 20 + payload))
    tcp = tcp[:16] + struct.pack("!H", check) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp + data


def connection(i: int) -> Iterator[Event]:
    """One TCP connection's frames as (time, port, frame), in time order."""
    mac, ip = client(i)
    cport, sport = 10000 + i // CLIENTS, 80 + i % 2 * 363  # 80 or 443
    t = T0 + 1.0 + i / START_RATE
    cseq, sseq = 1000 + i, 5000 + i

    def up(flags: int, payload: int = 0) -> tuple[int, bytes]:
        return 1, tcp_frame(mac, R1_MAC, ip, SERVER_IP, (cport, sport), cseq, sseq, flags, payload)

    def down(flags: int, payload: int = 0) -> tuple[int, bytes]:
        frame = tcp_frame(
            SERVER_MAC, R2_MAC, SERVER_IP, ip, (sport, cport), sseq, cseq, flags, payload
        )
        return 2, frame

    yield (t, *up(SYN))
    cseq += 1
    yield (t + 0.001, *down(SYN | ACK))
    sseq += 1
    yield (t + 0.002, *up(ACK))
    for k in range(DATA):
        t_k = t + 0.01 + k * GAP
        if k % 3 == 2:
            yield (t_k, *up(PSH | ACK, 60))
            cseq += 60
        else:
            yield (t_k, *down(PSH | ACK, 200))
            sseq += 200
    t_end = t + 0.01 + DATA * GAP
    yield (t_end, *up(FIN | ACK))
    cseq += 1
    yield (t_end + 0.001, *down(FIN | ACK))
    sseq += 1
    yield (t_end + 0.002, *up(ACK))


def events(connections: int) -> Iterator[Event]:
    """Every frame of the trace in time order (a heap as large as the open connections)."""
    end = T0 + 1.0 + connections / START_RATE + DATA * GAP + 1.0
    heap: list[tuple[float, int, int, bytes, Iterator[Event]]] = []
    arps = neighbours(connections, end)
    when, port, frame = next(arps)
    heap.append((when, -1, port, frame, arps))
    order = started = 0
    while heap or started < connections:
        while started < connections and (not heap or T0 + 1.0 + started / START_RATE <= heap[0][0]):
            conn = connection(started)
            when, port, frame = next(conn)
            heapq.heappush(heap, (when, order, port, frame, conn))
            order += 1
            started += 1
        when, _order, port, frame, conn = heapq.heappop(heap)
        yield when, port, frame
        nxt = next(conn, None)
        if nxt is not None:
            heapq.heappush(heap, (nxt[0], order, nxt[1], nxt[2], conn))
            order += 1


def write_trace(out: Path, connections: int) -> tuple[Path, Path, int]:
    """``out/h1.pcap``, ``out/h2.pcap`` and the number of frames (reused when present)."""
    out.mkdir(parents=True, exist_ok=True)
    h1, h2, done = out / "h1.pcap", out / "h2.pcap", out / "frames"
    if done.exists():
        return h1, h2, int(done.read_text())
    count = 0
    with PcapWriter(h1) as w1, PcapWriter(h2) as w2:
        writers = {1: w1, 2: w2}
        for when, port, frame in events(connections):
            writers[port].write(when, frame)
            count += 1
    done.write_text(str(count))
    return h1, h2, count


if __name__ == "__main__":  # python bench/simtrace.py DIR [CONNECTIONS]
    import sys

    print(write_trace(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2000))
