"""Generate the example traffic for ``p4ft simulate``.

Run: .venv/bin/python examples/traffic/make_pcaps.py

router_h1.pcap / router_h2.pcap (examples/router): both hosts resolve their gateway (ARP, NDP);
a TCP conversation h1 -> h2:80 with handshake, data both ways and FIN; a UDP exchange that goes
idle for 40 s (its flow expires) and then resumes; an IPv6 TCP conversation.

nat_inside.pcap / nat_outside.pcap (examples/nat): h1 behind masquerade talks to
198.51.100.9:443 (beyond the gateway 203.0.113.254);
198.51.100.9 reaches the inside web server through the DNAT port-forward 203.0.113.1:8080.

Kernel behaviours (examples/kernel, issue 10), each against the memory driver as hardware:

- router_h1/h2.pcap again with ``--ruleset-at 1.6=examples/kernel/reload.nft`` (flush ruleset
  + the same table with a drop rule): the flowtable is freed, h1's FIN meets the new rule;
  and with examples/kernel/nodevices.toml: no devices, no fast path, no hardware.
- neigh_h1/h2.pcap (examples/kernel/software.toml): a one-way UDP stream from h1, which never
  answers ARP, to h2, which answers and later changes its MAC.
- closing_h1/h2.pcap (examples/router): a TCP flow closes with a FIN through the fast path and
  goes idle; its retransmitted FIN after the flow expired still finds the connection (CLOSE).
- tables_h1/h2.pcap (examples/router, ``--hw-capacity 2``): an IPv6 flow fills the IPv6 table,
  an IPv4 flow still gets the IPv4 table, a second IPv4 flow waits in software and is installed
  by its refresh once the first one has left the hardware.

encap_lan.pcap / encap_wan.pcap / encap_up.pcap (examples/encap, issue 17): a host in VLAN 10
(eth0.10) talks TCP to a server behind the PPPoE WAN (masquerade); a QinQ host (S-tag 100,
C-tag 10: eth0.100.10) talks UDP to the untagged uplink; then a frame of VLAN 11 (no such
device: dropped), a PPPoE discovery frame (pppd's: dropped) and a 1500-byte DF packet that does
not fit the 1492-byte session (frag needed, back in VLAN 10).

Timestamps are fixed, so the files are reproducible byte for byte.
"""

from __future__ import annotations

import socket
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE, PPPoED
from scapy.packet import Packet
from scapy.utils import wrpcap
from scapy.utils6 import in6_getnsma, in6_getnsmac

HERE = Path(__file__).resolve().parent
H1_MAC, H2_MAC = "00:00:00:00:01:01", "00:00:00:00:02:02"
R1_MAC, R2_MAC = "00:00:00:00:01:fe", "00:00:00:00:02:fe"
GW_MAC = "00:00:00:00:02:01"  # the NAT example's upstream gateway (a static neighbour)
T0 = 1_700_000_000.0


class Capture:
    """Frames of one host, stamped with time offsets from T0."""

    def __init__(self) -> None:
        self.frames: list[Packet] = []

    def add(self, offset: float, frame: Packet) -> None:
        frame.time = T0 + offset
        self.frames.append(frame)

    def write(self, name: str) -> None:
        wrpcap(str(HERE / name), sorted(self.frames, key=lambda f: f.time))


def arp_request(mac: str, ip: str, target: str) -> Packet:
    return Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc=ip, pdst=target)


def neighbor_solicitation(mac: str, ip: str, target: str) -> Packet:
    group = in6_getnsma(socket.inet_pton(socket.AF_INET6, target))
    return (
        Ether(dst=in6_getnsmac(group), src=mac)
        / IPv6(src=ip, dst=socket.inet_ntop(socket.AF_INET6, group), hlim=255)
        / ICMPv6ND_NS(tgt=target)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac)
    )


class Tcp:
    """One TCP conversation with real sequence numbers, seen from both ends."""

    def __init__(self, client: Packet, server: Packet, cport: int, sport: int) -> None:
        self.client, self.server = client, server  # Ether/IP templates of each direction
        self.cport, self.sport = cport, sport
        self.cseq, self.sseq = 1000, 5000

    def c(self, flags: str, data: bytes = b"") -> Packet:
        pkt = self.client.copy() / TCP(
            sport=self.cport, dport=self.sport, flags=flags, seq=self.cseq, ack=self.sseq
        )
        self.cseq += len(data) + ("S" in flags or "F" in flags)
        return pkt / data if data else pkt

    def s(self, flags: str, data: bytes = b"") -> Packet:
        pkt = self.server.copy() / TCP(
            sport=self.sport, dport=self.cport, flags=flags, seq=self.sseq, ack=self.cseq
        )
        self.sseq += len(data) + ("S" in flags or "F" in flags)
        return pkt / data if data else pkt


def router_example() -> None:
    h1, h2 = Capture(), Capture()
    h1.add(0.0, arp_request(H1_MAC, "10.0.1.1", "10.0.1.254"))
    h2.add(0.05, arp_request(H2_MAC, "10.0.2.2", "10.0.2.254"))
    h1.add(0.1, neighbor_solicitation(H1_MAC, "2001:db8:1::1", "2001:db8:1::fe"))
    h2.add(0.15, neighbor_solicitation(H2_MAC, "2001:db8:2::2", "2001:db8:2::fe"))

    tcp = Tcp(
        Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="10.0.2.2"),
        Ether(dst=R2_MAC, src=H2_MAC) / IP(src="10.0.2.2", dst="10.0.1.1"),
        40000,
        80,
    )
    h1.add(1.000, tcp.c("S"))  # classic, NEW
    h2.add(1.010, tcp.s("SA"))  # classic
    h1.add(1.020, tcp.c("A"))  # classic: ESTABLISHED + ASSURED -> OFFLOAD
    h1.add(1.022, tcp.c("PA", b"GET / HTTP/1.0\r\n\r\n"))  # sw_fastpath: REPLACE in flight
    h2.add(1.040, tcp.s("PA", b"HTTP/1.0 200 OK\r\n\r\nhello"))  # hw
    h1.add(1.050, tcp.c("A"))  # hw
    for i in range(5):
        h2.add(1.1 + i * 0.1, tcp.s("PA", bytes(100)))  # hw
    h1.add(2.000, tcp.c("FA"))  # FIN is punted: sw_fastpath (CLOSING)
    h2.add(2.010, tcp.s("FA"))
    h1.add(2.020, tcp.c("A"))

    for i, t in enumerate((3.0, 3.01, 3.1, 3.2)):
        if i % 2 == 0:
            frame = Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="10.0.2.2")
            h1.add(t, frame / UDP(sport=5353, dport=53) / b"query")
        else:
            frame = Ether(dst=R2_MAC, src=H2_MAC) / IP(src="10.0.2.2", dst="10.0.1.1")
            h2.add(t, frame / UDP(sport=53, dport=5353) / b"answer")
    udp_again = Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="10.0.2.2")
    h1.add(45.0, udp_again / UDP(sport=5353, dport=53) / b"query after idle")  # expired: classic

    tcp6 = Tcp(
        Ether(dst=R1_MAC, src=H1_MAC) / IPv6(src="2001:db8:1::1", dst="2001:db8:2::2"),
        Ether(dst=R2_MAC, src=H2_MAC) / IPv6(src="2001:db8:2::2", dst="2001:db8:1::1"),
        41000,
        22,
    )
    h1.add(5.000, tcp6.c("S"))
    h2.add(5.010, tcp6.s("SA"))
    h1.add(5.020, tcp6.c("A"))
    h1.add(5.100, tcp6.c("PA", b"SSH-2.0-example\r\n"))
    h2.add(5.200, tcp6.s("PA", b"SSH-2.0-server\r\n"))
    h1.add(46.0, tcp6.c("PA", b"still there?"))  # the flow expired meanwhile: classic

    h1.write("router_h1.pcap")
    h2.write("router_h2.pcap")


def nat_example() -> None:
    inside, outside = Capture(), Capture()
    inside.add(0.0, arp_request(H1_MAC, "10.0.1.1", "10.0.1.254"))

    out = Tcp(
        Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="198.51.100.9"),
        Ether(dst=R2_MAC, src=GW_MAC) / IP(src="198.51.100.9", dst="203.0.113.1"),
        40000,  # masquerade keeps the port: nothing else uses it
        443,
    )
    inside.add(1.000, out.c("S"))
    outside.add(1.010, out.s("SA"))
    inside.add(1.020, out.c("A"))
    inside.add(1.030, out.c("PA", b"hello"))
    outside.add(1.040, out.s("PA", b"world"))
    inside.add(1.050, out.c("FA"))
    outside.add(1.060, out.s("FA"))
    inside.add(1.070, out.c("A"))

    fwd = Tcp(
        Ether(dst=R2_MAC, src=GW_MAC) / IP(src="198.51.100.9", dst="203.0.113.1"),
        Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="198.51.100.9"),
        50000,
        8080,
    )
    outside.add(2.000, fwd.c("S"))
    fwd.sport = 80  # the server answers from the port it listens on; the router maps it back
    inside.add(2.010, fwd.s("SA"))
    fwd.sport = 8080
    outside.add(2.020, fwd.c("A"))
    outside.add(2.030, fwd.c("PA", b"GET /"))
    fwd.sport = 80
    inside.add(2.040, fwd.s("PA", b"200 OK"))
    fwd.sport = 8080
    outside.add(2.050, fwd.c("A"))

    inside.write("nat_inside.pcap")
    outside.write("nat_outside.pcap")


def gateway_arp(h1: Capture, h2: Capture) -> None:
    """Both hosts resolve their gateway, which teaches the router their MACs."""
    h1.add(0.0, arp_request(H1_MAC, "10.0.1.1", "10.0.1.254"))
    h2.add(0.05, arp_request(H2_MAC, "10.0.2.2", "10.0.2.254"))
    h1.add(0.1, neighbor_solicitation(H1_MAC, "2001:db8:1::1", "2001:db8:1::fe"))
    h2.add(0.15, neighbor_solicitation(H2_MAC, "2001:db8:2::2", "2001:db8:2::fe"))


def web(cport: int) -> Tcp:
    return Tcp(
        Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="10.0.2.2"),
        Ether(dst=R2_MAC, src=H2_MAC) / IP(src="10.0.2.2", dst="10.0.1.1"),
        cport,
        80,
    )


def neigh_example() -> None:
    h1, h2 = Capture(), Capture()
    stream = Ether(dst=R1_MAC, src=H1_MAC) / IP(src="10.0.1.1", dst="10.0.2.2")
    for t in (1.0, 1.2, 1.4, 1.6, 3.0, 3.2):
        h1.add(t, stream / UDP(sport=6000, dport=7000) / b"tick")
    h2.add(1.1, arp_request(H2_MAC, "10.0.2.2", "10.0.2.254"))  # after the router asked
    h2.add(2.5, arp_request("00:00:00:00:02:99", "10.0.2.2", "10.0.2.254"))  # a new NIC
    h1.write("neigh_h1.pcap")
    h2.write("neigh_h2.pcap")


def closing_example() -> None:
    h1, h2 = Capture(), Capture()
    gateway_arp(h1, h2)
    tcp = web(40000)
    h1.add(1.000, tcp.c("S"))
    h2.add(1.010, tcp.s("SA"))
    h1.add(1.020, tcp.c("A"))  # OFFLOAD
    h1.add(1.030, tcp.c("PA", b"GET /"))  # sw_fastpath
    h2.add(1.050, tcp.s("PA", b"200 OK"))  # hw
    h1.add(1.100, tcp.c("A"))  # hw
    h1.add(2.000, tcp.c("FA"))  # punted: sw_fastpath, CLOSING; then silence
    fin = tcp.c("FA")
    fin[TCP].seq -= 1  # the same FIN, retransmitted after the flow expired
    h1.add(38.0, fin)
    h2.add(60.0, tcp.s("A"))  # long after: the connection is gone by now
    h1.write("closing_h1.pcap")
    h2.write("closing_h2.pcap")


def tables_example() -> None:
    h1, h2 = Capture(), Capture()
    gateway_arp(h1, h2)
    ssh6 = Tcp(
        Ether(dst=R1_MAC, src=H1_MAC) / IPv6(src="2001:db8:1::1", dst="2001:db8:2::2"),
        Ether(dst=R2_MAC, src=H2_MAC) / IPv6(src="2001:db8:2::2", dst="2001:db8:1::1"),
        41000,
        22,
    )
    for base, tcp, first in ((1.0, ssh6, True), (2.0, web(40000), True), (3.0, web(40001), False)):
        h1.add(base, tcp.c("S"))
        h2.add(base + 0.01, tcp.s("SA"))
        h1.add(base + 0.02, tcp.c("A"))  # OFFLOAD
        h1.add(base + 0.03, tcp.c("PA", b"hello"))  # sw_fastpath: REPLACE in flight
        h2.add(base + 0.05, tcp.s("PA", b"world"))  # hw (or sw_fastpath: its table is full)
        if first:
            continue
        for t in (4.1, 5.5, 5.6):  # refreshes retry REPLACE once a second
            h2.add(t, tcp.s("PA", b"more"))
    web_a_fin = web(40000)
    web_a_fin.cseq, web_a_fin.sseq = 1006, 5006  # after the exchange above
    h1.add(4.0, web_a_fin.c("FA"))  # the first IPv4 flow closes: GC frees its hardware slots
    h1.write("tables_h1.pcap")
    h2.write("tables_h2.pcap")


def encap_example() -> None:
    lan, wan, up = Capture(), Capture(), Capture()
    lan_mac, wan_mac, up_mac = "02:00:00:00:01:fe", "02:00:00:00:02:fe", "02:00:00:00:03:fe"
    h10, h100, ac, gw = ("02:00:00:00:10:02", "02:00:00:00:30:02", "02:00:00:00:02:01",
                         "02:00:00:00:03:01")
    lan.add(0.0, Ether(src=h10, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10)
            / ARP(hwsrc=h10, psrc="10.0.10.2", pdst="10.0.10.254"))
    lan.add(0.05, Ether(src=h100, dst="ff:ff:ff:ff:ff:ff") / Dot1AD(vlan=100) / Dot1Q(vlan=10)
            / ARP(hwsrc=h100, psrc="10.0.100.2", pdst="10.0.100.254"))
    tcp = Tcp(
        Ether(dst=lan_mac, src=h10) / Dot1Q(vlan=10) / IP(src="10.0.10.2", dst="93.184.216.34"),
        Ether(dst=wan_mac, src=ac) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021)
        / IP(src="93.184.216.34", dst="203.0.113.5"),
        40000,
        443,
    )
    lan.add(1.000, tcp.c("S"))  # classic: out through pppoe-wan, masqueraded
    wan.add(1.010, tcp.s("SA"))
    lan.add(1.020, tcp.c("A"))  # OFFLOAD: tag 10 on eth0, session 0x1234 on eth1
    lan.add(1.022, tcp.c("PA", b"GET / HTTP/1.0\r\n\r\n"))  # sw_fastpath
    wan.add(1.040, tcp.s("PA", b"HTTP/1.0 200 OK\r\n\r\nhello"))  # hw: session popped, tag pushed
    lan.add(1.050, tcp.c("A"))  # hw
    for i, t in enumerate((2.0, 2.01, 2.1)):
        if i % 2 == 0:
            lan.add(t, Ether(dst=lan_mac, src=h100) / Dot1AD(vlan=100) / Dot1Q(vlan=10)
                    / IP(src="10.0.100.2", dst="198.51.100.7") / UDP(sport=5000, dport=53)
                    / b"query")
        else:
            up.add(t, Ether(dst=up_mac, src=gw) / IP(src="198.51.100.7", dst="10.0.100.2")
                   / UDP(sport=53, dport=5000) / b"answer")
    lan.add(3.0, Ether(dst=lan_mac, src=h10) / Dot1Q(vlan=11)
            / IP(src="10.0.11.2", dst="93.184.216.34") / UDP(sport=1, dport=2))  # no eth0.11
    wan.add(3.1, Ether(dst=wan_mac, src=ac) / PPPoED(code=0xA7, sessionid=0x1234))  # PADT
    big = Tcp(tcp.client, tcp.server, 40001, 443)
    lan.add(3.2, big.c("S"))
    wan.add(3.21, big.s("SA"))
    lan.add(3.22, big.c("A"))
    lan.add(3.3, Ether(dst=lan_mac, src=h10) / Dot1Q(vlan=10)
            / IP(src="10.0.10.2", dst="93.184.216.34", flags="DF")
            / TCP(sport=40001, dport=443, flags="PA", seq=big.cseq, ack=big.sseq)
            / bytes(1460))  # 1500 > 1492: frag needed, never offloaded
    lan.write("encap_lan.pcap")
    wan.write("encap_wan.pcap")
    up.write("encap_up.pcap")


if __name__ == "__main__":
    router_example()
    nat_example()
    neigh_example()
    closing_example()
    tables_example()
    encap_example()
