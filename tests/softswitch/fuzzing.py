"""Random and mutated frames for fuzzing the softswitch (shared by the test and the bench)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from controller.edges.pipeline_files import DEVICE_CONFIG
from softswitch.pipeline import Pipeline


def seeds() -> list[bytes]:
    """Well-formed frames the mutations start from."""
    return [
        bytes(Ether() / IP(src="10.0.1.1", dst="10.0.2.2") / UDP(sport=1, dport=2) / b"abc"),
        bytes(Ether() / IP(src="10.0.1.1", dst="10.0.2.2") / TCP(sport=1, dport=2, flags="A")),
        bytes(Ether() / IP(dst="10.0.2.2", ihl=6, options=b"\x01\x01\x01\x01") / UDP()),
        bytes(Ether() / IP(dst="10.0.2.2", flags="MF") / UDP()),
        bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP() / b"x"),
        bytes(Ether() / ARP()),
    ]


def frames(count: int, seed: int = 1) -> Iterator[bytes]:
    rng = random.Random(seed)
    base = seeds()
    for i in range(count):
        kind = i % 4
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 120))
        else:
            data = bytearray(rng.choice(base))
            for _ in range(rng.randrange(1, 6)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            if kind == 2:
                del data[rng.randrange(len(data) + 1):]
            elif kind == 3:
                data += rng.randbytes(rng.randrange(0, 40))
            yield bytes(data)


def fuzz_pipeline(specialise: bool | None = None) -> Pipeline:
    """flowtable.p4's compiled JSON with the seeds' flows, so mutations also run the hit path."""
    pipe = Pipeline.from_json(json.loads(DEVICE_CONFIG.read_text()), specialise=specialise)
    v4 = (2, 0x2FE, 0x202, 0xC0000201, 0x0A000202, 5, 6, 1500)
    for proto in (6, 17):
        key = (1, 0x0A000101, 0x0A000202, proto, 1, 2)
        pipe.tables["FtIngress.flow_v4"].insert(key, 0, "FtIngress.forward_v4", v4)
    v6_key = (1, 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 2, 6, 20, 80)
    v6 = (2, 0x2FE, 0x202, 0x20010DB8 << 96 | 9, 0x20010DB8 << 96 | 2, 21, 81, 1500)
    pipe.tables["FtIngress.flow_v6"].insert(v6_key, 0, "FtIngress.forward_v6", v6)
    return pipe
