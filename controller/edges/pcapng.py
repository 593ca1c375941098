"""pcapng files (draft-ietf-opsawg-pcapng): the packets of every section and interface.

Wireshark and ``dumpcap`` write pcapng by default, so ``p4ft simulate`` reads it as it reads a
classic pcap: ``(timestamp in seconds, frame bytes)`` in file order. Each section carries its own
byte order (the Section Header Block's magic); each Interface Description Block its link type
and timestamp resolution (``if_tsresol``, ``if_tsoffset``). Enhanced, Simple and the obsolete
Packet Blocks carry frames; every other block (name resolution, statistics, custom) is skipped,
as readers must skip blocks they do not know. A frame of a non-Ethernet interface is an error,
as in a classic pcap of another link type.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from controller.edges.pcap import LINKTYPE_ETHERNET, MAX_RECORD, PcapError

SHB = b"\x0a\x0d\x0d\x0a"  # the Section Header Block type: the same bytes in either order
IDB, OPB, SPB, EPB = 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_TSRESOL, OPT_TSOFFSET = 0, 9, 14
MAX_BLOCK = MAX_RECORD + 4096  # a packet block: the frame plus headers and options


@dataclass(slots=True)
class _Interface:
    linktype: int
    scale: float  # seconds per timestamp unit
    offset: int  # seconds added to every timestamp


def pcapng_records(
    fh: BinaryIO, name: str, *, linktype: int = LINKTYPE_ETHERNET
) -> Iterator[tuple[float, bytes]]:
    """The packets of the pcapng open in ``fh``; the first Section Header Block is checked now,
    so that a bad file fails before a long replay starts."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != SHB:
        raise PcapError(f"{name}: not a pcapng file (no section header block)")
    endian = _endian(head[8:12], name, 0)
    return _blocks(fh, name, linktype, head, endian)


def _endian(magic: bytes, name: str, offset: int) -> str:
    for endian in ("<", ">"):
        if struct.unpack(endian + "I", magic)[0] == BYTE_ORDER_MAGIC:
            return endian
    raise PcapError(f"{name}: bad byte-order magic {magic.hex()} at offset {offset}")


def _blocks(
    fh: BinaryIO, name: str, linktype: int, first: bytes, endian: str
) -> Iterator[tuple[float, bytes]]:
    interfaces: list[_Interface] = []
    offset = 0
    last_time = 0.0
    pending: bytes | None = first  # the first SHB's 12 bytes, already read
    while True:
        if pending is not None:
            head, pending = pending[:8], pending[8:]
        else:
            head = fh.read(8)
            if not head:
                return
        if len(head) < 8:
            raise PcapError(f"{name}: truncated block header at offset {offset}")
        btype_raw = head[:4]
        if btype_raw == SHB:  # a new section: its own byte order
            rest = pending if pending else fh.read(4)
            pending = None
            if len(rest) < 4:
                raise PcapError(f"{name}: truncated section header at offset {offset}")
            endian = _endian(rest, name, offset)
            interfaces = []
            length = struct.unpack(endian + "I", head[4:8])[0]
            body = rest + _read(fh, length - 12, name, offset)
        else:
            length = struct.unpack(endian + "I", head[4:8])[0]
            if length < 12 or length % 4 or length > MAX_BLOCK:
                raise PcapError(f"{name}: implausible block length {length} at offset {offset}")
            body = _read(fh, length - 8, name, offset)
        btype = struct.unpack(endian + "I", btype_raw)[0]
        if btype in (EPB, OPB):  # both: 20 bytes of header before the frame
            layout = "IIII" if btype == EPB else "HxxIII"
            iface_id, high, low, incl = struct.unpack_from(endian + layout, body)
            start = 20
            iface = _interface(interfaces, iface_id, name, offset, linktype)
            if start + incl > len(body) - 4:
                raise PcapError(f"{name}: packet longer than its block at offset {offset}")
            last_time = ((high << 32) | low) * iface.scale + iface.offset
            yield last_time, body[start : start + incl]
        elif btype == SPB:
            iface = _interface(interfaces, 0, name, offset, linktype)
            (orig,) = struct.unpack_from(endian + "I", body)
            yield last_time, body[4 : 4 + min(orig, len(body) - 8)]  # no timestamp: the last
        elif btype == IDB:
            interfaces.append(_describe(body, endian, name, offset))
        offset += length


def _read(fh: BinaryIO, size: int, name: str, offset: int) -> bytes:
    if size < 4 or size > MAX_BLOCK:
        raise PcapError(f"{name}: implausible block length {size + 8} at offset {offset}")
    data = fh.read(size)
    if len(data) < size:
        raise PcapError(f"{name}: truncated block at offset {offset}")
    return data


def _interface(
    interfaces: list[_Interface], iface_id: int, name: str, offset: int, linktype: int
) -> _Interface:
    if iface_id >= len(interfaces):
        raise PcapError(f"{name}: packet of undeclared interface {iface_id} at offset {offset}")
    iface = interfaces[iface_id]
    if iface.linktype != linktype:
        raise PcapError(
            f"{name}: interface {iface_id} has link type {iface.linktype}, expected {linktype}"
        )
    return iface


def _describe(body: bytes, endian: str, name: str, offset: int) -> _Interface:
    """An Interface Description Block: link type, and the options that place timestamps."""
    if len(body) < 12:
        raise PcapError(f"{name}: truncated interface description at offset {offset}")
    link = struct.unpack_from(endian + "H", body)[0]
    scale, shift = 1e-6, 0
    at, end = 8, len(body) - 4
    while at + 4 <= end:
        code, size = struct.unpack_from(endian + "HH", body, at)
        value = body[at + 4 : at + 4 + size]
        if code == OPT_END:
            break
        if code == OPT_TSRESOL and size >= 1:
            res = value[0]
            scale = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0**-res
        elif code == OPT_TSOFFSET and size >= 8:
            shift = struct.unpack(endian + "q", value[:8])[0]
        at += 4 + (size + 3) // 4 * 4
    return _Interface(link, scale, shift)
