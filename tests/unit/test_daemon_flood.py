"""A punt flood against one SwitchSession: the packet-in queue stays bounded (oldest dropped,
counted per reason), the 1 s tick keeps running and a new connection is still offloaded.

The session drives the in-process softswitch (flowtable.p4's compiled JSON); the flood is fed
straight into the driver's packet-in queue, as fast as the event loop lets a task produce it.
"""

from __future__ import annotations

import asyncio

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from controller.config import parse_config
from controller.edges.daemon import PACKET_BATCH, SwitchSession
from ndo.api import PacketIn, PuntReason
from tests.ndo.p4rt_support import DEVICE_ID, pipeline, running_target

pytestmark = pytest.mark.asyncio

QUEUE = 4 * PACKET_BATCH
H1, H2 = "02:00:00:00:01:01", "02:00:00:00:02:02"
R1, R2 = "02:00:00:00:01:fe", "02:00:00:00:02:fe"
RULESET = """table inet filter {
    flowtable ft { hook ingress priority 0; devices = { eth0, eth1 }; flags offload; }
    chain forward { type filter hook forward priority 0; policy accept;
        udp dport 9 accept
        meta l4proto tcp flow add @ft }
}
"""


def config(address: str, extra: str = ""):  # type: ignore[no-untyped-def]
    """The two-port router on the switch at ``address``; ``extra`` adds TOML sections."""
    return parse_config(f"""[switch]
address = "{address}"
device_id = {DEVICE_ID}
[[ports]]
id = 1
name = "eth0"
mac = "{R1}"
addresses = ["10.0.1.254/24"]
[[ports]]
id = 2
name = "eth1"
mac = "{R2}"
addresses = ["10.0.2.254/24"]
[[neighbors]]
address = "10.0.1.1"
mac = "{H1}"
port = "eth0"
[[neighbors]]
address = "10.0.2.1"
mac = "{H2}"
port = "eth1"
{extra}[ruleset]
text = '''{RULESET}'''
""")


def handshake(sport: int = 40000) -> list[tuple[int, bytes]]:
    """SYN, SYN-ACK, ACK of 10.0.1.1:sport → 10.0.2.1:80 as they reach the switch's ports."""
    def seg(port: int, flags: str, seq: int, ack: int) -> tuple[int, bytes]:
        if port == 1:
            l3 = Ether(src=H1, dst=R1) / IP(src="10.0.1.1", dst="10.0.2.1")
            l4 = TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=ack)
        else:
            l3 = Ether(src=H2, dst=R2) / IP(src="10.0.2.1", dst="10.0.1.1")
            l4 = TCP(sport=80, dport=sport, flags=flags, seq=seq, ack=ack)
        return port, bytes(l3 / l4)
    return [seg(1, "S", 100, 0), seg(2, "SA", 500, 101), seg(1, "A", 101, 501)]


FLOOD = bytes(Ether(src=H1, dst=R1) / IP(src="10.0.1.1", dst="10.0.2.1")
              / UDP(sport=5000, dport=9) / (b"f" * 18))


async def until(condition, timeout: float = 30.0, step=None) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            if step is not None:
                step()
            await asyncio.sleep(0.05)


async def test_a_punt_flood_leaves_the_queue_bounded_the_tick_running_and_offloads_working(
) -> None:
    async with running_target(size=1024) as target:
        session = SwitchSession("r1", config(target.address), pipeline(1024),
                                packet_queue=QUEUE)
        await session.start()
        flooding = True

        async def flood() -> None:  # more per loop turn than a batch, less than the queue
            while flooding:
                for _ in range(PACKET_BATCH + QUEUE // 4):
                    session.p4rt.punts.put(PacketIn(FLOOD, 1, PuntReason.NOT_TCP_UDP))
                await asyncio.sleep(0)

        task = asyncio.create_task(flood())
        try:
            await until(lambda: session.p4rt.punts.dropped["NOT_TCP_UDP"] > 0)
            ticks = session.counters["ticks"]

            def connect() -> None:  # resent while the flood may push it out of the queue
                for port, frame in handshake():
                    target.ports[port].inject(frame)

            await until(lambda: session.router.offload.installed() == 1, step=connect)
            await until(lambda: session.counters["ticks"] >= ticks + 2)
            assert len(target.table(4)) == 2  # both directions in hardware
        finally:
            flooding = False
            await task
            await session.stop()
        stats = session.snapshot()["stats"]
        assert stats["packet_in_queue"]["max_depth"] == QUEUE
        assert stats["packet_in_queue"]["drops"]["NOT_TCP_UDP"] > 0
        assert stats["punt_path"]["receive"]["count"] > QUEUE
        assert stats["controller"].get("receive_errors", 0) == 0
