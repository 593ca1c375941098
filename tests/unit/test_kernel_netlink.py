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
