"""pcap round trips, and interoperability with scapy's reader and writer."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapReader, wrpcap

from controller.edges.pcap import MAGIC_NS, MAGIC_US, PcapError, PcapWriter, read_pcap

FRAMES = [bytes(Ether() / IP(dst=f"10.0.0.{i}") / UDP() / bytes(i)) for i in range(1, 4)]


@pytest.mark.parametrize("ns", [False, True])
def test_round_trip(tmp_path: Path, ns: bool) -> None:
    path = tmp_path / "out.pcap"
    times = [0.0, 1.000001, 1700000000.123456]
    with PcapWriter(path, nanoseconds=ns) as writer:
        for t, frame in zip(times, FRAMES, strict=True):
            writer.write(t, frame)
    records = list(read_pcap(path))
    assert [frame for _, frame in records] == FRAMES
    assert [t for t, _ in records] == pytest.approx(times, abs=1e-6)


def test_scapy_reads_what_we_write(tmp_path: Path) -> None:
    path = tmp_path / "ours.pcap"
    with PcapWriter(path, nanoseconds=True) as writer:
        writer.write(12.5, FRAMES[0])
    (pkt,) = list(PcapReader(str(path)))
    assert bytes(pkt) == FRAMES[0] and float(pkt.time) == 12.5


def test_we_read_what_scapy_writes(tmp_path: Path) -> None:
    path = tmp_path / "scapy.pcap"
    pkts = [Ether(f) for f in FRAMES]
    for i, p in enumerate(pkts):
        p.time = 100 + i * 0.25
    wrpcap(str(path), pkts)
    assert list(read_pcap(path)) == [(100 + i * 0.25, f) for i, f in enumerate(FRAMES)]


@pytest.mark.parametrize(
    ("endian", "magic", "scale"),
    [
        (">", MAGIC_US, 1e6),
        ("<", MAGIC_US, 1e6),
        (">", MAGIC_NS, 1e9),
        ("<", MAGIC_NS, 1e9),
    ],
)
def test_both_byte_orders_and_resolutions(
    tmp_path: Path, endian: str, magic: int, scale: float
) -> None:
    path = tmp_path / "x.pcap"
    frac = 250_000 if scale == 1e6 else 250_000_000
    path.write_bytes(
        struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        + struct.pack(endian + "IIII", 7, frac, 3, 3)
        + b"abc"
    )
    assert list(read_pcap(path)) == [(7.25, b"abc")]


def test_snaplen_cuts_and_keeps_original_length() -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf, snaplen=10)
    writer.write(0, bytes(range(20)))
    writer.close()
    incl, orig = struct.unpack_from("<II", buf.getvalue(), 24 + 8)
    assert (incl, orig) == (10, 20)


def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng is not classic pcap
    with pytest.raises(PcapError, match=r"bad\.pcap: not a classic pcap"):
        list(read_pcap(bad))
    short = tmp_path / "short.pcap"
    short.write_bytes(b"\xd4\xc3")
    with pytest.raises(PcapError, match="too short"):
        list(read_pcap(short))


def test_truncated_record_and_wrong_link_type(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    with PcapWriter(path) as writer:
        writer.write(1, FRAMES[0])
        writer.write(2, FRAMES[1])
    path.write_bytes(path.read_bytes()[:-3])
    reader = read_pcap(path)
    assert next(reader)[1] == FRAMES[0]
    with pytest.raises(PcapError, match="truncated record at offset"):
        next(reader)
    raw = tmp_path / "raw.pcap"
    with PcapWriter(raw, linktype=101):
        pass
    with pytest.raises(PcapError, match="link type 101"):
        list(read_pcap(raw))
