"""Random and mutated frames for fuzzing the softswitch (shared by the test and the bench)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import router_program

FLOWTABLE_JSON = Path(__file__).resolve().parents[1] / "fixtures" / "flowtable" / "flowtable.json"


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


def fuzz_pipeline() -> Pipeline:
    """flowtable.p4's JSON when it has landed, else the router test program with entries."""
    if FLOWTABLE_JSON.is_file():
        return Pipeline.from_json(json.loads(FLOWTABLE_JSON.read_text()))
    pipe = Pipeline.from_json(router_program())
    pipe.tables["ingress.fwd"].insert((0x0A000202,), 0, "ingress.forward", (2, 1, 2))
    return pipe
