"""The asyncio netlink socket against this machine's kernel (read-only rtnetlink requests,
no privileges needed): answers matched to requests, errors raised with the kernel's errno."""

from __future__ import annotations

import errno
import socket

import pytest
from pyroute2.netlink import NETLINK_ROUTE

from controller.kernel import rtnetlink
from controller.kernel.netlink import NetlinkError, NetlinkSocket

LOOPBACK = bytes([127, 0, 0, 1])


async def test_route_get_answers_with_the_output_device() -> None:
    sock = NetlinkSocket(NETLINK_ROUTE)
    sock.start()
    try:
        answer = await sock.request(lambda seq: rtnetlink.route_get_request(seq, LOOPBACK))
        route = rtnetlink.decode_route(answer[0][2])
        assert route is not None and route.oif == socket.if_nametoindex("lo")
        assert route.gateway is None
    finally:
        sock.close()


async def test_an_error_answer_raises_with_the_kernels_errno_and_the_socket_goes_on() -> None:
    sock = NetlinkSocket(NETLINK_ROUTE)
    sock.start()
    try:
        with pytest.raises(NetlinkError) as info:  # no such neighbour on lo
            await sock.request(lambda seq: rtnetlink.neigh_get_request(
                seq, socket.if_nametoindex("lo"), bytes([192, 0, 2, 77])))
        assert info.value.errno in (errno.ENOENT, errno.EINVAL)
        answer = await sock.request(lambda seq: rtnetlink.route_get_request(seq, LOOPBACK))
        assert len(answer) == 1
    finally:
        sock.close()


async def _events_after_an_overrun(names: list[str]) -> tuple[int, int]:
    """Link events overrun a tiny receive buffer (ENOBUFS), then one more link comes: was it
    heard? (events_lost, events heard after the overrun)."""
    import asyncio
    import subprocess

    heard: list[int] = []
    sock = NetlinkSocket(NETLINK_ROUTE, (1,))  # RTNLGRP_LINK
    sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    sock.start(lambda msg_type, flags, msg: heard.append(msg_type))
    try:
        for name in names[:-1]:  # the loop does not run meanwhile: the buffer overruns
            subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
                           check=True)
        async with asyncio.timeout(10):
            while not sock.counters["events_lost"]:
                await asyncio.sleep(0.01)
        before = len(heard)
        subprocess.run(["ip", "link", "add", names[-1], "type", "veth", "peer", "name",
                        f"{names[-1]}p"], check=True)
        async with asyncio.timeout(10):
            while len(heard) == before:
                await asyncio.sleep(0.01)
        return sock.counters["events_lost"], len(heard) - before
    finally:
        sock.close()
        for name in names:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_events_are_heard_again_after_the_kernel_dropped_some(loop) -> None:
    """ENOBUFS is a socket error: uvloop stops watching such a socket unless re-armed."""
    import asyncio
    import os
    import shutil
    import uuid

    import uvloop

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create links")
    tag = uuid.uuid4().hex[:5]
    names = [f"p4nl{tag}{i}" for i in range(40)]
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        lost, heard = runner.run(_events_after_an_overrun(names))
    assert lost >= 1 and heard >= 1
