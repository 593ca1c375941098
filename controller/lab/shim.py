"""A lab host's VLAN / QinQ / PPPoE link in userspace: the lab kernels have no 8021Q or PPP.

The host's IP stack sits on a TAP device; this process moves frames between the TAP and the
host's veth to the switch, adding the encapsulation on the way out and taking it off on the way
in, so a real TCP stack talks through the P4 switch over tagged or PPPoE links. For PPPoE the
session is up from the start, as the router TOML says (discovery and LCP/IPCP are pppd's job
and not modelled); the TAP runs without ARP and only IP crosses. Frames on the veth with any
other encapsulation (another VLAN, another session, untagged) are not the host's and are left
alone, as the kernel leaves a tag no VLAN device takes.

Run by the lab in the host's namespace::

    python -m controller.lab.shim --lower h1-eth0 --tap tap0 --encap vlan:10 --tap-mac MAC
    python -m controller.lab.shim ... --encap 802.1ad:100,vlan:10
    python -m controller.lab.shim ... --encap pppoe:4660 --peer-mac ROUTER_MAC

It prints READY once both ends are open and runs until killed.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import selectors
import socket
import struct
import subprocess
import sys

from inet import encap
from inet.encap import Encap, Encaps
from softswitch.ports import (
    AUXDATA_SPACE,
    ETH_P_ALL,
    PACKET_AUXDATA,
    SOL_PACKET,
    with_vlan_tag,
)

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
PACKET_OUTGOING = 4  # sll_pkttype of what this socket (or the host) sent
_IP_TYPES = (b"\x08\x00", b"\x86\xdd")
_KINDS = {"vlan": encap.ETH_P_8021Q, "802.1ad": encap.ETH_P_8021AD, "pppoe": encap.ETH_P_PPP_SES}


def parse_encaps(text: str) -> Encaps:
    """``vlan:10``, ``802.1ad:100,vlan:10``, ``pppoe:4660`` (outermost first)."""
    out = []
    for item in text.split(","):
        kind, _, ident = item.partition(":")
        if kind not in _KINDS or not ident:
            raise ValueError(f"not an encapsulation: {item!r} (vlan:ID, 802.1ad:ID, pppoe:SID)")
        out.append(Encap(int(ident, 0), _KINDS[kind]))
    bad = encap.problem(tuple(out))
    if bad:
        raise ValueError(bad)
    return tuple(out)


class Shim:
    """The frame rewriting, without I/O: TAP frame -> wire frame and back (None: not ours)."""

    def __init__(self, encaps: Encaps, tap_mac: bytes, peer_mac: bytes | None = None) -> None:
        self.encaps = encaps
        self.tap_mac = tap_mac
        self.pppoe = encaps[-1].proto == encap.ETH_P_PPP_SES
        if self.pppoe and peer_mac is None:
            raise ValueError("a PPPoE link needs the peer's (the access concentrator's) MAC")
        self.peer_mac = peer_mac

    def to_wire(self, frame: bytes) -> bytes | None:
        ethertype = frame[12:14]
        if self.pppoe:
            if ethertype not in _IP_TYPES:
                return None  # only IP rides a PPP session here
            dst = self.peer_mac
        else:
            dst = frame[0:6]
        head = encap.header(self.encaps, int.from_bytes(ethertype, "big"), len(frame) - 14)
        return dst + frame[6:12] + head + frame[14:]  # type: ignore[operator]

    def from_wire(self, frame: bytes) -> bytes | None:
        found = encap.walk(frame)
        if found is None or found.unsupported or found.encaps != self.encaps:
            return None
        if found.ethertype in (encap.ETH_P_PPP_SES, encap.ETH_P_PPP_DISC):
            return None
        dst = self.tap_mac if self.pppoe else frame[0:6]
        return dst + frame[6:12] + struct.pack("!H", found.ethertype) + frame[found.offset:]


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def run(shim: Shim, lower: str, tap: str) -> None:
    tap_fd = open_tap(tap)
    mac = shim.tap_mac.hex(":")
    subprocess.run(["ip", "link", "set", tap, "address", mac], check=True)
    if shim.pppoe:
        subprocess.run(["ip", "link", "set", tap, "arp", "off"], check=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)  # the outer tag the kernel strips on receive
    sock.bind((lower, ETH_P_ALL))
    sel = selectors.DefaultSelector()
    sel.register(tap_fd, selectors.EVENT_READ, "tap")
    sel.register(sock, selectors.EVENT_READ, "wire")
    print("READY", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "tap":
                out = shim.to_wire(os.read(tap_fd, 65536))
                if out is not None:
                    sock.send(out)
            else:
                frame, ancillary, _flags, address = sock.recvmsg(65536, AUXDATA_SPACE)
                if address[2] == PACKET_OUTGOING:
                    continue
                inner = shim.from_wire(with_vlan_tag(frame, ancillary))
                if inner is not None:
                    os.write(tap_fd, inner)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lower", required=True, help="the host's interface to the switch")
    parser.add_argument("--tap", required=True, help="the TAP device to create")
    parser.add_argument("--encap", required=True, help="vlan:ID[,vlan:ID] | 802.1ad:ID,vlan:ID"
                        " | pppoe:SID (outermost first)")
    parser.add_argument("--tap-mac", required=True, help="the TAP's MAC (the host's)")
    parser.add_argument("--peer-mac", help="PPPoE: the access concentrator's MAC")
    args = parser.parse_args(argv)
    try:
        shim = Shim(parse_encaps(args.encap), bytes.fromhex(args.tap_mac.replace(":", "")),
                    bytes.fromhex(args.peer_mac.replace(":", "")) if args.peer_mac else None)
    except ValueError as exc:
        print(f"shim: {exc}", file=sys.stderr)
        return 2
    run(shim, args.lower, args.tap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
