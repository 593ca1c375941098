"""A netlink socket on the asyncio loop: requests with their answers, and multicast events.

Messages are split here (``struct nlmsghdr``) and handed on as (type, flags, bytes); decoding
is the codecs' job (:mod:`.ctnetlink`, :mod:`.rtnetlink`). The socket is non-blocking and read
with ``loop.add_reader``, so the daemon stays one asyncio thread.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable

from controller.edges.eventloop import rearm_reader
from controller.kernel.nla import HEADER

log = logging.getLogger("p4ft.kernel")

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_MULTI = 0x02
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_NO_ENOBUFS = 5
RCVBUF = 8 << 20

Message = tuple[int, int, bytes]  # (type, flags, whole message)
EventHandler = Callable[[int, int, bytes], None]


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


def split(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Messages of one datagram as (type, flags, seq, bytes); a truncated tail is dropped."""
    out = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, msg_type, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > len(data):
            break
        out.append((msg_type, flags, seq, data[offset : offset + length]))
        offset += (length + 3) & ~3
    return out


class NetlinkSocket:
    """One netlink socket (open it inside the namespace it should talk to)."""

    def __init__(self, protocol: int, groups: tuple[int, ...] = ()) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  protocol)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind((0, 0))
        for group in groups:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        self.sock.setblocking(False)
        self.counters: Counter[str] = Counter()
        self._seq = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[list[Message]], list[Message]]] = {}
        self._on_event: EventHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, on_event: EventHandler | None = None) -> None:
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("netlink socket closed"))
        self.sock.close()

    def next_seq(self) -> int:
        return next(self._seq)

    async def request(self, build: Callable[[int], bytes], timeout: float = 5.0) -> list[Message]:
        """Send ``build(seq)``; return the answers (a dump's entries, or nothing for an ACK).
        An error answer raises :class:`NetlinkError` with the kernel's errno."""
        return await self.submit(build, timeout)

    def submit(self, build: Callable[[int], bytes], timeout: float = 5.0
               ) -> asyncio.Future[list[Message]]:
        """Send ``build(seq)`` now; the answers (or the error) arrive in the returned future.

        A request to the kernel is carried out before ``send`` returns
        (``netlink_unicast_kernel`` runs the kernel socket's input in the sender's context), so
        what is sent after it, on any socket, meets its effect: only the answer comes later."""
        assert self._loop is not None, "start() first"
        seq = self.next_seq()
        future: asyncio.Future[list[Message]] = self._loop.create_future()
        self._pending[seq] = (future, [])
        try:
            self.sock.send(build(seq))
        except BaseException:
            self._pending.pop(seq, None)
            raise
        self._loop.call_later(timeout, self._expire, seq)
        return future

    def _expire(self, seq: int) -> None:
        pending = self._pending.pop(seq, None)
        if pending is not None and not pending[0].done():
            pending[0].set_exception(TimeoutError("no netlink answer"))

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: count, carry on
                    self.counters["events_lost"] += 1
                    if self._loop is not None:
                        rearm_reader(self._loop, self.sock.fileno(), self._readable)
                    continue
                raise
            for msg_type, flags, seq, msg in split(data):
                self._dispatch(msg_type, flags, seq, msg)

    def _dispatch(self, msg_type: int, flags: int, seq: int, msg: bytes) -> None:
        pending = self._pending.get(seq) if seq else None
        if pending is None:
            if msg_type not in (NLMSG_ERROR, NLMSG_DONE) and self._on_event is not None:
                self.counters["events"] += 1
                try:
                    self._on_event(msg_type, flags, msg)
                except Exception:  # one bad event must not stop the reader
                    self.counters["event_errors"] += 1
                    log.exception("netlink event handler failed")
            return
        future, answers = pending
        if future.done():
            del self._pending[seq]
            return
        if msg_type == NLMSG_ERROR:
            code = -struct.unpack_from("=i", msg, HEADER.size)[0]
            if code:
                future.set_exception(NetlinkError(code, os.strerror(code)))
            else:
                future.set_result(answers)
        elif msg_type == NLMSG_DONE:
            future.set_result(answers)
        else:
            answers.append((msg_type, flags, msg))
            if not flags & NLM_F_MULTI:
                future.set_result(answers)
        if future.done():
            del self._pending[seq]
