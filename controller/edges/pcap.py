"""Classic libpcap files: read either byte order and µs or ns timestamps; write µs or ns.
(pcapng is read by :mod:`controller.edges.pcapng`; :mod:`controller.edges.capture` picks one.)

``p4ft simulate`` replays pcaps on a virtual clock and writes one pcap per port, so this sits on
the traffic tools' path and stays free of scapy.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
MAX_RECORD = 0x40000  # libpcap's MAXIMUM_SNAPLEN: anything larger is a corrupt file

_FILE_HEADER = "IHHiIII"
_RECORD_HEADER = "IIII"


class PcapError(ValueError):
    """A file that is not a readable classic pcap; the message names the file and the offset."""


def read_pcap(
    path: str | Path, *, linktype: int = LINKTYPE_ETHERNET
) -> Iterator[tuple[float, bytes]]:
    """Yield ``(timestamp in seconds, frame bytes)`` for every record of ``path``.

    Raises :class:`PcapError` on a bad magic, a different link type, or a truncated record.
    """
    with open(path, "rb") as fh:
        yield from pcap_records(fh, str(path), linktype=linktype)


def pcap_records(
    fh: BinaryIO, name: str, *, linktype: int = LINKTYPE_ETHERNET
) -> Iterator[tuple[float, bytes]]:
    """The records of the classic pcap open in ``fh``; the header is checked now, not at the
    first ``next()``, so that a bad file fails before a long replay starts."""
    head = fh.read(24)
    if len(head) < 24:
        raise PcapError(f"{name}: too short for a pcap header")
    endian, scale = _byte_order(head, name)
    _magic, _major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack(
        endian + _FILE_HEADER, head
    )
    if network != linktype:
        raise PcapError(f"{name}: link type {network}, expected {linktype}")
    return _records(fh, name, struct.Struct(endian + _RECORD_HEADER), scale)


def _records(
    fh: BinaryIO, name: str, record: struct.Struct, scale: int
) -> Iterator[tuple[float, bytes]]:
    offset = 24
    read = fh.read
    unpack = record.unpack
    while True:
        rec = read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise PcapError(f"{name}: truncated record header at offset {offset}")
        sec, frac, incl, _orig = unpack(rec)
        if incl > MAX_RECORD:
            raise PcapError(f"{name}: implausible record length {incl} at offset {offset}")
        data = read(incl)
        if len(data) < incl:
            raise PcapError(f"{name}: truncated record at offset {offset}")
        yield sec + frac / scale, data
        offset += 16 + incl


def _byte_order(head: bytes, path: str | Path) -> tuple[str, int]:
    for endian in ("<", ">"):
        magic = struct.unpack(endian + "I", head[:4])[0]
        if magic == MAGIC_US:
            return endian, 1_000_000
        if magic == MAGIC_NS:
            return endian, 1_000_000_000
    raise PcapError(f"{path}: not a classic pcap file (magic {head[:4].hex()})")


class PcapWriter:
    """Write records to a classic pcap (little endian), µs or ns resolution.

    Usable as a context manager; ``path`` may also be an open binary file (left open on close).
    """

    def __init__(
        self,
        path: str | Path | BinaryIO,
        *,
        nanoseconds: bool = False,
        snaplen: int = 65535,
        linktype: int = LINKTYPE_ETHERNET,
    ) -> None:
        self._owned = isinstance(path, str | Path)
        self._fh: BinaryIO = open(path, "wb") if isinstance(path, str | Path) else path  # noqa: SIM115
        self._scale = 1_000_000_000 if nanoseconds else 1_000_000
        self._snaplen = snaplen
        magic = MAGIC_NS if nanoseconds else MAGIC_US
        self._fh.write(struct.pack("<" + _FILE_HEADER, magic, 2, 4, 0, 0, snaplen, linktype))
        self._record = struct.Struct("<" + _RECORD_HEADER)

    def write(self, timestamp: float, frame: bytes | bytearray | memoryview) -> None:
        """Append one frame captured at ``timestamp`` seconds (cut to the snap length)."""
        sec, frac = divmod(round(timestamp * self._scale), self._scale)
        data = bytes(frame[: self._snaplen])
        self._fh.write(self._record.pack(sec, frac, len(data), len(frame)) + data)

    def close(self) -> None:
        if self._owned:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
