"""The netdev punt channel: the switch's CPU port as a network device the controller reads.

The switch's port 255 is an ordinary port on a veth (BMv2: ``-i 255@DEV`` without
``--cpu-port``); its peer is read and written here through an AF_PACKET socket. Frames toward
the CPU carry the ``packet_in`` header first, exactly as flowtable.p4's deparser emits it;
frames from the controller carry ``packet_out`` first, which the program's parser extracts on
ingress port 255. Both layouts come from the P4Info's ControllerPacketMetadata (the fields in
header order with their widths), never from fixed offsets: the channel follows the program.

This is the role of a DSA tagger (net/dsa/tag_*.c: ``dsa_switch_rcv`` strips the switch's tag
and learns the source port from it; ``xmit`` pushes a tag that names the egress port), done in
user space on the controller's side of a veth.

Reads are non-blocking, a burst per readiness callback into one preallocated buffer; frames go
to the same bounded :class:`PuntQueue` as the stream's. A device that goes away (deleted, or
re-created with a new ifindex) is reopened by name when it comes back; a link that goes down
and up keeps its socket. What the kernel dropped for a full socket buffer is read from
PACKET_STATISTICS and counted (``kernel_drops``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from controller.edges.eventloop import rearm_reader
from ndo.api import PacketIn, PuntReason
from ndo.p4runtime.packet_io import MIN_FRAME  # an Ethernet header, after the controller header
from ndo.p4runtime.punt_queue import PuntQueue, Queued
from ndo.p4runtime.schema import FlowSchema, PacketMetadata, SchemaError
from ndo.timing import Stage
from softswitch.ports import ETH_P_ALL, MAX_FRAME, SOL_PACKET, _grow_buffers

log = logging.getLogger(__name__)

PACKET_STATISTICS = 6  # struct tpacket_stats: packets, drops (reset by each read)
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: the kernel's own transmissions are not ours to read
READ_BURST = 256  # frames per readiness callback: the packet loop and the tick get their turn
WATCH_PERIOD = 0.5  # how soon a device that went away and came back is read again
_REASONS = {int(r): r for r in PuntReason}
_TPACKET_STATS = struct.Struct("=II")
SIOCGIFFLAGS, IFF_UP = 0x8913, 0x1


class ControllerHeader:
    """One ``@controller_header``'s wire layout: P4Info metadata in header order, big endian,
    packed bit by bit as the deparser emits a header (no padding between fields)."""

    def __init__(self, name: str, metadata: PacketMetadata) -> None:
        widths = [(field, bits) for field, (_, bits) in metadata.fields.items()]
        total = sum(bits for _, bits in widths)
        if total % 8 or not total:
            raise SchemaError(f"controller header {name!r}: {total} bits is not whole bytes")
        self.name = name
        self.size = total // 8
        self._fields: dict[str, tuple[int, int]] = {}  # name → (shift, mask)
        shift = total
        for field, bits in widths:
            shift -= bits
            self._fields[field] = (shift, (1 << bits) - 1)

    def field(self, name: str) -> tuple[int, int]:
        """(shift, mask) of ``name`` in the header read as one big-endian integer."""
        try:
            return self._fields[name]
        except KeyError:
            raise SchemaError(f"controller header {self.name!r} has no field {name!r}") from None

    def pack(self, **values: int) -> bytes:
        """The header with these field values (others zero); ValueError if one does not fit."""
        word = 0
        for name, value in values.items():
            shift, mask = self.field(name)
            if not 0 <= value <= mask:
                raise ValueError(f"{self.name}.{name} = {value} does not fit its width")
            word |= value << shift
        return word.to_bytes(self.size, "big")


def _link(name: str) -> tuple[int, bool]:
    """(ifindex, administratively up) of device ``name``; (0, False) when there is none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
            flags = struct.unpack_from("H", fcntl.ioctl(
                ctl, SIOCGIFFLAGS, struct.pack("16sH", name.encode(), 0)), 16)[0]
        return socket.if_nametoindex(name), bool(flags & IFF_UP)
    except OSError:
        return 0, False


class NetdevChannel:
    """Punts and packet-outs through an AF_PACKET socket on ``device``."""

    def __init__(self, device: str, schema: FlowSchema, packet_queue: int) -> None:
        self.device = device
        self.counters: Counter[str] = Counter()
        self.punts = PuntQueue(packet_queue)
        self.packet_out_wait = Stage()  # the send(2) of each packet-out
        self._in = ControllerHeader("packet_in", schema.packet_in)
        self._out = ControllerHeader("packet_out", schema.packet_out)
        self._port = self._in.field("ingress_port")
        self._reason = self._in.field("reason")
        self._out.field("egress_port")
        self._egress: dict[int, bytes] = {}  # egress port → its packet_out header, built once
        self._buffer = bytearray(MAX_FRAME + 1)
        self._view = memoryview(self._buffer)
        self._sock: socket.socket | None = None
        self._ifindex = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None
        self.kernel_drops = 0

    @property
    def up(self) -> bool:
        return self._sock is not None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the device (OSError naming it if it is not there) and watch it."""
        self._loop = asyncio.get_running_loop()
        self._open()
        self._watch = asyncio.create_task(self._watchdog(), name=f"punt:{self.device}")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        self._close_socket()
        self.punts.close()

    def _open(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            _grow_buffers(sock)  # as the softswitch's own ports: 4 MB, forced when allowed
            sock.bind((self.device, 0))
            sock.setblocking(False)
            self._ifindex = socket.if_nametoindex(self.device)
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._readable)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"punt device {self.device}: {exc.strerror}") from None
        self._sock = sock
        self.counters["opened"] += 1

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._read_kernel_drops(sock)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()

    async def _watchdog(self) -> None:
        """Reopen the device by name once it exists again: a new ifindex means a new device,
        and the old socket is bound to the one that went away and would never read again."""
        while True:
            await asyncio.sleep(WATCH_PERIOD)
            index, up = _link(self.device)
            if self._sock is not None and index != self._ifindex:
                log.warning("punt device %s went away", self.device)
                self.counters["device_lost"] += 1
                self._close_socket()
            if self._sock is None and up:
                try:
                    self._open()
                except OSError as exc:
                    log.debug("%s", exc)
                    continue
                log.info("punt device %s is read again", self.device)

    # -- packet-in -------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recv_into, view, put = sock.recv_into, self._view, self.punts.put
        size, limit = self._in.size, MAX_FRAME
        port_shift, port_mask = self._port
        reason_shift, reason_mask = self._reason
        reasons = _REASONS
        got = overflow = 0
        for _ in range(READ_BURST):
            try:
                n = recv_into(view, 0, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ENETDOWN when the link went down: the socket stays
                self.counters[f"rx_error_{errno.errorcode.get(exc.errno, exc.errno)}"] += 1
                if self._loop is not None:
                    rearm_reader(self._loop, sock.fileno(), self._readable)
                break
            if n > limit:
                self.counters["packet_in_truncated"] += 1
                continue
            if n < size + MIN_FRAME:
                self.counters["packet_in_short"] += 1
                continue
            word = int.from_bytes(view[:size], "big")
            reason = (word >> reason_shift) & reason_mask
            if not put(PacketIn(bytes(view[size:n]), (word >> port_shift) & port_mask,
                                reasons.get(reason, reason))):
                overflow += 1
            got += 1
        self.counters["packet_in"] += got
        if overflow:
            self.counters["packet_in_overflow"] += overflow

    async def packet_batches(self, limit: int) -> AsyncIterator[list[Queued]]:
        """What arrived since the last batch (at most ``limit``), until the channel closes."""
        while batch := await self.punts.batch(limit):
            yield batch

    # -- packet-out ------------------------------------------------------------------------

    def send_packet(self, frame: bytes, egress_port: int) -> bool:
        """Send ``frame`` out of ``egress_port``; False (counted) if it cannot go now."""
        sock = self._sock
        if sock is None:
            self.counters["packet_out_unavailable"] += 1
            return False
        if len(frame) < MIN_FRAME:
            self.counters["packet_out_short"] += 1
            return False
        header = self._egress.get(egress_port)
        if header is None:
            try:
                header = self._egress[egress_port] = self._out.pack(egress_port=egress_port)
            except ValueError:
                self.counters["packet_out_bad_port"] += 1
                return False
        start = time.perf_counter()
        try:
            sock.sendmsg((header, frame))  # gathered by the kernel: no joined copy here
        except (BlockingIOError, InterruptedError):
            self.counters["packet_out_overflow"] += 1
            return False
        except OSError as exc:  # ENETDOWN, ENXIO: the device is down or gone
            self.counters[f"packet_out_{errno.errorcode.get(exc.errno, exc.errno)}"] += 1
            return False
        self.packet_out_wait.add(time.perf_counter() - start)
        self.counters["packet_out"] += 1
        return True

    # -- stats -----------------------------------------------------------------------------

    def _read_kernel_drops(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _, drops = _TPACKET_STATS.unpack(
                sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size))
            self.kernel_drops += drops

    def stats(self) -> dict[str, Any]:
        if self._sock is not None:
            self._read_kernel_drops(self._sock)
        return {"channel": "netdev", "device": self.device, "up": self.up,
                "kernel_drops": self.kernel_drops, "counters": dict(self.counters)}
