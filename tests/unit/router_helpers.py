"""A two-port dual-stack router for the classic path and Router tests, and scapy frame makers.

h1 (10.0.1.1, 2001:db8:1::1) sits behind port 1 "eth0"; h2 (10.0.2.2, 2001:db8:2::2) behind
port 2 "eth1". Both are static neighbours unless a test asks for learning.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from controller.config import RouterConfig, parse_config

H1_MAC, H2_MAC = "00:00:00:00:01:01", "00:00:00:00:02:02"
R1_MAC, R2_MAC = "00:00:00:00:01:fe", "00:00:00:00:02:fe"
H1, H2, R1, R2 = "10.0.1.1", "10.0.2.2", "10.0.1.254", "10.0.2.254"
H1_6, H2_6, R1_6 = "2001:db8:1::1", "2001:db8:2::2", "2001:db8:1::fe"
INTERNET = "198.51.100.7"  # behind h2's side through a static route

FORWARD_OFFLOAD = """
table inet filter {
    flowtable ft { hook ingress priority 0; devices = { eth0, eth1 }; flags offload; counter; }
    chain forward {
        type filter hook forward priority 0; policy accept;
        meta l4proto { tcp, udp } flow add @ft
    }
}
"""

NAT = """
table ip nat {
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        iifname "eth1" tcp dport 8080 dnat to 10.0.1.1:80
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "eth1" ip saddr 10.0.1.0/24 masquerade
    }
}
"""


def router_config(
    ruleset: str = FORWARD_OFFLOAD,
    *,
    static_neighbors: bool = True,
    mtu2: int = 1500,
    flowtable: str = "",
) -> RouterConfig:
    neighbors = ""
    if static_neighbors:
        neighbors = f"""
[[neighbors]]
address = "{H1}"
mac = "{H1_MAC}"
port = "eth0"
[[neighbors]]
address = "{H2}"
mac = "{H2_MAC}"
port = "eth1"
[[neighbors]]
address = "{H1_6}"
mac = "{H1_MAC}"
port = "eth0"
[[neighbors]]
address = "{H2_6}"
mac = "{H2_MAC}"
port = "eth1"
"""
    text = f"""
[[ports]]
id = 1
name = "eth0"
mac = "{R1_MAC}"
addresses = ["{R1}/24", "{R1_6}/64"]
[[ports]]
id = 2
name = "eth1"
mac = "{R2_MAC}"
addresses = ["{R2}/24", "2001:db8:2::fe/64"]
mtu = {mtu2}
[[routes]]
prefix = "198.51.100.0/24"
via = "{H2}"
{neighbors}
[ruleset]
text = '''{ruleset}'''
[flowtable]
{flowtable}
"""
    return parse_config(text)


def tcp4(
    flags: str,
    *,
    src: str = H1,
    dst: str = H2,
    sport: int = 40000,
    dport: int = 80,
    payload: bytes = b"",
    ttl: int = 64,
    mac: str = R1_MAC,
    src_mac: str = H1_MAC,
    df: bool = False,
) -> bytes:
    return bytes(
        Ether(dst=mac, src=src_mac)
        / IP(src=src, dst=dst, ttl=ttl, flags="DF" if df else 0)
        / TCP(sport=sport, dport=dport, flags=flags)
        / payload
    )


def tcp4_reply(flags: str, **kw: object) -> bytes:
    """h2 -> h1 with the ports swapped (the reply direction of :func:`tcp4`)."""
    kw.setdefault("src", H2)
    kw.setdefault("dst", H1)
    kw.setdefault("sport", 80)
    kw.setdefault("dport", 40000)
    kw.setdefault("mac", R2_MAC)
    kw.setdefault("src_mac", H2_MAC)
    return tcp4(flags, **kw)  # type: ignore[arg-type]


def udp4(
    *,
    src: str = H1,
    dst: str = H2,
    sport: int = 5000,
    dport: int = 53,
    mac: str = R1_MAC,
    src_mac: str = H1_MAC,
    payload: bytes = b"q",
) -> bytes:
    return bytes(
        Ether(dst=mac, src=src_mac) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
    )


def tcp6(
    flags: str,
    *,
    src: str = H1_6,
    dst: str = H2_6,
    sport: int = 40000,
    dport: int = 80,
    mac: str = R1_MAC,
    src_mac: str = H1_MAC,
    hlim: int = 64,
    payload: bytes = b"",
) -> bytes:
    return bytes(
        Ether(dst=mac, src=src_mac)
        / IPv6(src=src, dst=dst, hlim=hlim)
        / TCP(sport=sport, dport=dport, flags=flags)
        / payload
    )


def ping4(dst: str = R1, *, src: str = H1, mac: str = R1_MAC, ttl: int = 64) -> bytes:
    return bytes(Ether(dst=mac, src=H1_MAC) / IP(src=src, dst=dst, ttl=ttl) / ICMP(id=7, seq=1))


def arp_who_has(target: str, *, src: str = H1, src_mac: str = H1_MAC) -> bytes:
    return bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=src_mac)
        / ARP(op=1, hwsrc=src_mac, psrc=src, pdst=target)
    )


def assert_checksums(frame: bytes) -> Ether:
    """Parse ``frame`` with scapy and verify its IPv4 header and L4 checksums on the raw bytes
    (a sum over the covered data, checksum included, folds to zero); UDP checksum 0 is "none"."""
    from scapy.layers.inet import in4_chksum
    from scapy.layers.inet6 import in6_chksum
    from scapy.utils import checksum

    pkt = Ether(frame)
    if IP not in pkt and IPv6 not in pkt:
        return pkt
    if IP in pkt:
        ip = pkt[IP]
        raw = bytes(ip)
        assert checksum(raw[: ip.ihl * 4]) == 0, "IPv4 header checksum is wrong"
        body = raw[ip.ihl * 4 : ip.len]
        if ip.flags.MF or ip.frag:
            return pkt  # a fragment: its L4 checksum covers the whole datagram
        proto, verify = ip.proto, lambda data: in4_chksum(ip.proto, ip, data)
    else:
        ip = pkt[IPv6]
        body = bytes(ip.payload)[: ip.plen]
        proto, verify = ip.nh, lambda data: in6_chksum(ip.nh, ip, data)
    if proto == 17 and body[6:8] == b"\0\0":
        return pkt
    if proto == 1:
        assert checksum(body) == 0, "ICMP checksum is wrong"
    else:
        assert verify(body) == 0, f"protocol {proto} checksum is wrong"
    return pkt
