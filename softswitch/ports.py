"""Switch ports: AF_PACKET raw sockets on named interfaces, and in-process queue ports.

A port hands every received frame to ``on_frame(port_id, frame)`` and sends what the switch gives
it without blocking. Failures are counted per port, never raised into the switch: a full socket
buffer drops the frame (as a NIC ring would) and says so in ``counters``.

The switch can ``pause`` a port whose frames go to a congested CPU port: it stops reading until
``resume`` (at the latest after ``PAUSE_LIMIT``), so the frames wait in (or overflow) the socket's
receive buffer instead of taking the event loop from the P4Runtime stream that drains the CPU port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

OnFrame = Callable[[int, bytes], None]

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sent: our own transmissions echo back
MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: `& socket.MSG_TRUNC` runs enum code per frame
SOL_PACKET, PACKET_AUXDATA = 263, 8
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # Linux; not exported by the socket module
SOCKET_BUFFER = 4 * 1024 * 1024  # absorbs bursts while the interpreter is busy (libpcap: 2 MB)
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 1 << 4, 1 << 6
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
AUXDATA_SPACE = socket.CMSG_SPACE(_AUXDATA.size)
MAX_FRAME = 65535
READ_BURST = 64  # frames read per readiness callback, so one busy port cannot starve the loop
PAUSE_LIMIT = 0.05  # seconds a paused port waits at most: a stuck controller never stops a port


@dataclass
class PortCounters:
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_dropped: int = 0  # socket buffer full, interface down, or port not open


class Port(Protocol):
    port_id: int
    name: str
    counters: PortCounters

    def open(self, on_frame: OnFrame) -> None: ...
    def send(self, frame: bytes) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...


def with_vlan_tag(frame: bytes, ancillary: list[tuple[int, int, bytes]]) -> bytes:
    """The frame as it was on the wire: the kernel strips a VLAN tag on receive and hands it
    over in PACKET_AUXDATA; put it back after the MAC addresses, as libpcap (and so BMv2) does."""
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
            status, _, _, _, _, tci, tpid = _AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID and len(frame) >= 12:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
    return frame


def _grow_buffers(sock: socket.socket) -> None:
    """Socket buffers of SOCKET_BUFFER bytes: forced past net.core.[rw]mem_max when we hold
    CAP_NET_ADMIN, else as large as the sysctl allows."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


def parse_interface(spec: str) -> tuple[int, str]:
    """``1@veth1`` (simple_switch_grpc's ``-i`` syntax) as (1, "veth1")."""
    number, sep, name = spec.partition("@")
    if not sep or not name or not number.isdigit():
        raise ValueError(f"bad interface {spec!r}: expected PORT@IFNAME, e.g. 1@veth1")
    return int(number), name


class PacketSocketPort:
    """A port on a network interface through an AF_PACKET raw socket (needs CAP_NET_RAW).

    Frames the host itself transmits on the interface (PACKET_OUTGOING, which includes our own
    sends) are ignored, or every frame we forward would come back in as if received.
    """

    def __init__(self, port_id: int, ifname: str) -> None:
        self.port_id = port_id
        self.name = ifname
        self.counters = PortCounters()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_frame: OnFrame | None = None
        self._resume_timer: asyncio.TimerHandle | None = None

    def open(self, on_frame: OnFrame) -> None:
        """Bind to the interface and read from it in the running event loop."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            _grow_buffers(sock)
            sock.bind((self.name, 0))
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._readable)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"port {self.port_id}@{self.name}: {exc.strerror}") from exc
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop, self._on_frame = sock, loop, on_frame

    def _readable(self) -> None:
        sock, on_frame = self._sock, self._on_frame
        if sock is None or on_frame is None:
            return
        for _ in range(READ_BURST):
            try:
                frame, ancillary, flags, address = sock.recvmsg(MAX_FRAME, AUXDATA_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ENETDOWN while the interface flaps
                self.counters.rx_errors += 1
                log.debug("port %d (%s): receive failed: %s", self.port_id, self.name, exc)
                if self._loop is not None and self._resume_timer is None:
                    # uvloop (libuv's uv_poll) stops watching a socket that reported POLLERR
                    self._loop.remove_reader(sock.fileno())
                    self._loop.add_reader(sock.fileno(), self._readable)
                return
            if address[2] == PACKET_OUTGOING:
                continue
            if flags & MSG_TRUNC:
                self.counters.rx_errors += 1
                continue
            frame = with_vlan_tag(frame, ancillary)
            self.counters.rx_frames += 1
            self.counters.rx_bytes += len(frame)
            on_frame(self.port_id, frame)
            if self._resume_timer is not None:  # on_frame paused this port
                return

    def pause(self) -> None:
        """Stop reading until :meth:`resume`, or PAUSE_LIMIT from now."""
        if self._sock is None or self._loop is None or self._resume_timer is not None:
            return
        self._loop.remove_reader(self._sock.fileno())
        self._resume_timer = self._loop.call_later(PAUSE_LIMIT, self.resume)

    def resume(self) -> None:
        if self._resume_timer is None:
            return
        self._resume_timer.cancel()
        self._resume_timer = None
        if self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._readable)

    def send(self, frame: bytes) -> None:
        if self._sock is None:
            self.counters.tx_dropped += 1
            return
        try:
            self._sock.send(frame)
        except OSError as exc:  # EAGAIN (buffer full), ENETDOWN, EMSGSIZE...
            self.counters.tx_dropped += 1
            log.debug("port %d (%s): send failed: %s", self.port_id, self.name, exc)
            return
        self.counters.tx_frames += 1
        self.counters.tx_bytes += len(frame)

    def close(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = self._loop = None


class QueuePort:
    """An in-process port for tests and simulation.

    ``inject(frame)`` is a frame arriving from the wire; frames the switch sends collect in
    ``sent`` (an asyncio.Queue, usable with or without a running loop). Frames injected while the
    port is paused wait, in order, until it resumes.
    """

    def __init__(self, port_id: int, name: str | None = None, maxsize: int = 0) -> None:
        self.port_id = port_id
        self.name = name or f"port{port_id}"
        self.counters = PortCounters()
        self.sent: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
        self._on_frame: OnFrame | None = None
        self.paused = False
        self._waiting: deque[bytes] = deque()

    def open(self, on_frame: OnFrame) -> None:
        self._on_frame = on_frame

    def inject(self, frame: bytes) -> None:
        if self._on_frame is None:
            self.counters.rx_errors += 1
            return
        if self.paused:
            self._waiting.append(frame)
            return
        self.counters.rx_frames += 1
        self.counters.rx_bytes += len(frame)
        self._on_frame(self.port_id, frame)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        while self._waiting and not self.paused:
            self.inject(self._waiting.popleft())

    def send(self, frame: bytes) -> None:
        try:
            self.sent.put_nowait(frame)
        except asyncio.QueueFull:
            self.counters.tx_dropped += 1
            return
        self.counters.tx_frames += 1
        self.counters.tx_bytes += len(frame)

    def drain(self) -> list[bytes]:
        """Every frame sent so far, oldest first, removed from the queue."""
        frames = []
        while not self.sent.empty():
            frames.append(self.sent.get_nowait())
        return frames

    def close(self) -> None:
        self._on_frame = None
        self._waiting.clear()
