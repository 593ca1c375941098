"""pcapng reading (Enhanced/Simple Packet Blocks, sections, resolutions) and input captures."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter

from controller.edges.capture import Capture, Reorder, open_captures
from controller.edges.pcap import PcapError, PcapWriter

FRAMES = [bytes(Ether() / IP(dst=f"10.0.0.{i}") / UDP() / bytes(i)) for i in range(1, 4)]


def block(endian: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(endian + "II", btype, length) + body + struct.pack(endian + "I", length)


def shb(endian: str) -> bytes:
    return block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(endian: str, linktype: int = 1, tsresol: int | None = None, tsoffset: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += struct.pack(endian + "HH", 9, 1) + bytes((tsresol,)) + b"\0\0\0"
    if tsoffset:
        opts += struct.pack(endian + "HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack(endian + "HH", 0, 0)
    return block(endian, 1, struct.pack(endian + "HHI", linktype, 0, 65535) + opts)


def epb(endian: str, iface: int, units: int, frame: bytes) -> bytes:
    head = struct.pack(
        endian + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)
    )
    return block(endian, 6, head + frame)


def test_enhanced_packets_of_two_sections_with_their_own_byte_order_and_resolution(
    tmp_path: Path,
) -> None:
    data = (
        shb("<")
        + idb("<")
        + epb("<", 0, 1_500_000, FRAMES[0])  # µs: 1.5 s
        + block("<", 4, b"\x00" * 8)  # a name resolution block: skipped
        + shb(">")
        + idb(">", tsresol=9)
        + idb(">", tsresol=0x80 | 10, tsoffset=100)
        + epb(">", 0, 2_250_000_000, FRAMES[1])  # ns: 2.25 s
        + epb(">", 1, 3 * 1024 + 512, FRAMES[2])  # 2^-10 s units + 100 s offset
    )
    path = tmp_path / "two.pcapng"
    path.write_bytes(data)
    records = list(Capture(path))
    assert [f for _, f in records] == FRAMES
    assert [t for t, _ in records] == pytest.approx([1.5, 2.25, 103.5])


def test_simple_packet_block_takes_the_previous_time(tmp_path: Path) -> None:
    spb = block("<", 3, struct.pack("<I", len(FRAMES[1])) + FRAMES[1])
    path = tmp_path / "spb.pcapng"
    path.write_bytes(shb("<") + idb("<") + epb("<", 0, 7_000_000, FRAMES[0]) + spb)
    assert list(Capture(path)) == [(7.0, FRAMES[0]), (7.0, FRAMES[1])]


def test_we_read_what_scapy_writes_as_pcapng(tmp_path: Path) -> None:
    path = tmp_path / "scapy.pcapng"
    writer = PcapNgWriter(str(path))
    for i, frame in enumerate(FRAMES):
        pkt = Ether(frame)
        pkt.time = 1_700_000_000 + i * 0.5
        writer.write(pkt)
    writer.close()
    records = list(Capture(path))
    assert [f for _, f in records] == FRAMES
    assert [t for t, _ in records] == pytest.approx([1_700_000_000 + i * 0.5 for i in range(3)])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (shb("<") + idb("<", linktype=101) + epb("<", 0, 1, FRAMES[0]), "link type 101"),
        (shb("<") + epb("<", 0, 1, FRAMES[0]), "undeclared interface 0"),
        ((shb("<") + idb("<") + epb("<", 0, 1, FRAMES[0]))[:-6], "truncated block"),
        (shb("<")[:8] + b"\x01\x02\x03\x04" + shb("<")[12:], "byte-order magic"),
    ],
)
def test_bad_pcapng_is_a_clear_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.pcapng"
    path.write_bytes(data)
    with pytest.raises(PcapError, match=message):
        list(Capture(path))


def test_a_bad_header_fails_when_opened_not_when_read(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.pcap", tmp_path / "bad.pcap"
    with PcapWriter(good) as w:
        w.write(1.0, FRAMES[0])
    bad.write_bytes(b"garbage!" * 4)
    with pytest.raises(PcapError, match=r"bad\.pcap"):
        open_captures([good, bad])


def test_position_follows_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "p.pcap"
    with PcapWriter(path) as w:
        for i, frame in enumerate(FRAMES):
            w.write(i, frame)
    capture = Capture(path)
    it = iter(capture)
    next(it)
    assert capture.position == 24 + 16 + len(FRAMES[0])
    list(it)
    assert capture.position == capture.size == path.stat().st_size


def test_reorder_within_the_window_and_count_what_comes_later() -> None:
    frames = [(1.0, b"a"), (3.0, b"c"), (2.0, b"b"), (4.0, b"d"), (0.5, b"late")]
    ordered = Reorder(frames, window=2)
    assert [f for _, _, f in ordered] == [b"a", b"b", b"late", b"c", b"d"]
    assert ordered.late == 1  # 0.5 came after 2.0 had left a window of 2: replayed late
    in_window = Reorder(frames, window=8)
    assert [f for _, _, f in in_window] == [b"late", b"a", b"b", b"c", b"d"]
    assert in_window.late == 0
