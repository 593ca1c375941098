"""Ports: the ``-i`` syntax, queue ports, and AF_PACKET ports on veth pairs in a namespace."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from softswitch.ports import (
    PACKET_AUXDATA,
    SOL_PACKET,
    TP_STATUS_VLAN_VALID,
    PacketSocketPort,
    QueuePort,
    parse_interface,
    with_vlan_tag,
)

ROOT = Path(__file__).resolve().parents[2]


def test_parse_interface() -> None:
    assert parse_interface("1@veth1") == (1, "veth1")
    assert parse_interface("12@s1-eth2") == (12, "s1-eth2")
    for bad in ("veth1", "x@veth1", "1@", "@veth1"):
        with pytest.raises(ValueError, match="PORT@IFNAME"):
            parse_interface(bad)


def test_vlan_tag_from_auxdata_is_put_back_after_the_macs() -> None:
    frame = bytes(range(12)) + b"\x08\x00payload"
    aux = struct.pack("=IIIHHHH", TP_STATUS_VLAN_VALID, 0, 0, 0, 0, 42, 0)
    assert with_vlan_tag(frame, [(SOL_PACKET, PACKET_AUXDATA, aux)]) == (
        bytes(range(12)) + b"\x81\x00\x00\x2a\x08\x00payload")
    untagged = struct.pack("=IIIHHHH", 0, 0, 0, 0, 0, 0, 0)
    assert with_vlan_tag(frame, [(SOL_PACKET, PACKET_AUXDATA, untagged)]) == frame
    assert with_vlan_tag(frame, []) == frame


async def test_a_missing_interface_is_named_in_the_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("AF_PACKET sockets need root")
    with pytest.raises(OSError, match="port 3@p4ft-nosuch0"):
        PacketSocketPort(3, "p4ft-nosuch0").open(lambda port_id, frame: None)


def test_queue_port_counts_what_it_cannot_carry() -> None:
    port = QueuePort(1, maxsize=1)
    port.inject(b"before open")
    assert port.counters.rx_errors == 1
    received = []
    port.open(lambda port_id, frame: received.append((port_id, frame)))
    port.inject(b"in")
    assert received == [(1, b"in")]
    port.send(b"a")
    port.send(b"b")
    assert port.drain() == [b"a"]
    assert (port.counters.tx_frames, port.counters.tx_dropped) == (1, 1)


def test_paused_queue_port_holds_frames_in_order_until_resumed() -> None:
    port = QueuePort(1)
    received = []
    port.open(lambda port_id, frame: received.append(frame))
    port.pause()
    port.inject(b"a")
    port.inject(b"b")
    assert received == []
    port.resume()
    assert received == [b"a", b"b"]
    assert port.counters.rx_frames == 2


# The switch side runs inside the namespace (a process cannot bind AF_PACKET sockets to another
# namespace's interfaces): ports 1@s1 and 2@s2, their peers h1 and h2 play the hosts.
NETNS_SCRIPT = r"""
import asyncio, json, socket
from finsy.proto import p4r
from softswitch.ports import PacketSocketPort
from softswitch.switch import SoftSwitch
from tests.softswitch.p4rt_support import CPU_PORT, DEVICE_CONFIG, make_pipeline, p4info

def host(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((name, 0))
    s.settimeout(2)
    return s

def recv_marked(sock, marker):
    while True:
        frame = sock.recv(65535)
        if marker in frame:
            return frame

async def main():
    sw = SoftSwitch([PacketSocketPort(1, "s1"), PacketSocketPort(2, "s2")], cpu_port=CPU_PORT,
                    pipeline_factory=make_pipeline, sweep_period=0)
    sw.device.set_pipeline(p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
                           p4r.ForwardingPipelineConfig(p4info=p4info(),
                                                        p4_device_config=DEVICE_CONFIG))
    sw.device.pipeline.tables["ingress.flow"].insert((1, 0x0A000001), 0, "ingress.fwd", (2,))
    to_cpu = []
    sw.switch.to_cpu = to_cpu.append
    await sw.start("127.0.0.1:0")
    h1, h2 = host("h1"), host("h2")
    hit = bytes.fromhex("0a000001") + b"HIT-MARK" + bytes(48)
    miss = bytes.fromhex("0a000009") + b"MISS-MARK" + bytes(47)
    tagged = bytes.fromhex("0a000007") + bytes(8) + bytes.fromhex("8100002a0800") + b"VLAN-MARK"
    h1.send(hit)
    h1.send(miss)
    h1.send(tagged)
    loop = asyncio.get_running_loop()
    got = await loop.run_in_executor(None, recv_marked, h2, b"HIT-MARK")
    for _ in range(100):
        if len(to_cpu) == 2:
            break
        await asyncio.sleep(0.01)
    ports = sw.switch.ports
    result = {"forwarded": got == hit, "to_cpu": [f[2:].hex() for f in to_cpu],
              "tagged": tagged.hex(),
              "rx_port1": ports[1].counters.rx_frames, "rx_port2": ports[2].counters.rx_frames,
              "tx_port2": ports[2].counters.tx_frames}
    await sw.stop()
    print(json.dumps(result))

asyncio.run(main())
"""


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces and veth pairs")
    name = f"p4rt-{uuid.uuid4().hex[:8]}"
    try:
        _sh("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot create a network namespace: {exc}")
    try:
        ns = ("ip", "netns", "exec", name)
        _sh(*ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1")
        for n in ("1", "2"):
            _sh(*ns, "ip", "link", "add", f"h{n}", "type", "veth", "peer", "name", f"s{n}")
            for dev in (f"h{n}", f"s{n}"):
                _sh(*ns, "ip", "link", "set", dev, "up")
        yield ns
    finally:
        subprocess.run(("ip", "netns", "del", name), check=False, capture_output=True)


@pytest.mark.e2e
def test_af_packet_ports_forward_punt_and_ignore_their_own_sends(netns) -> None:
    done = subprocess.run((*netns, sys.executable, "-c", NETNS_SCRIPT), cwd=ROOT,
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["forwarded"]
    miss, tagged = (bytes.fromhex(f) for f in result["to_cpu"])
    assert miss.startswith(bytes.fromhex("0a000009") + b"MISS")
    assert tagged == bytes.fromhex(result["tagged"])  # the VLAN tag the kernel stripped is back
    assert result["rx_port1"] == 3
    assert result["tx_port2"] == 1
    assert result["rx_port2"] == 0  # our own send on s2 was not read back as a received frame
