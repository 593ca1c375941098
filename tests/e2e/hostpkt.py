"""Traffic tool run inside a lab host (``python hostpkt.py MODE ...``); prints JSON on stdout.

Modes: ``sniff IFACE SECONDS PORT`` (prints READY, then one JSON list of what arrived with TTL,
MACs and whether the checksums are valid), ``tcp-server PORT``, ``tcp-client HOST PORT COUNT
INTERVAL``, ``udp-echo PORT``, ``udp-client HOST PORT COUNT INTERVAL`` (sent/received counts),
``send IFACE HEX...`` (raw frames).
"""

from __future__ import annotations

import json
import socket
import sys
import time


def sniff(iface: str, seconds: str, port: str) -> None:
    from scapy.all import ICMP, IP, TCP, UDP, AsyncSniffer, Ether, IPv6

    def wanted(pkt) -> bool:  # no libpcap here, so no BPF: filter in Python
        if IP in pkt and (pkt[IP].flags.MF or pkt[IP].frag or ICMP in pkt):
            return True
        return any(l4 in pkt and int(port) in (pkt[l4].sport, pkt[l4].dport) for l4 in (TCP, UDP))

    sniffer = AsyncSniffer(iface=iface, lfilter=wanted, store=True)
    sniffer.start()
    time.sleep(0.5)
    print("READY", flush=True)
    time.sleep(float(seconds))
    packets = sniffer.stop() or []
    out = []
    for pkt in packets:
        if Ether not in pkt or not (IP in pkt or IPv6 in pkt):
            continue
        l3 = pkt[IP] if IP in pkt else pkt[IPv6]
        info = {"src_mac": pkt[Ether].src, "dst_mac": pkt[Ether].dst, "src": l3.src,
                "dst": l3.dst, "ttl": l3.ttl if IP in pkt else l3.hlim, "len": len(pkt)}
        if IP in pkt:
            info["ip_csum_ok"] = _checksum_ok(pkt[IP])
            info["frag"] = bool(pkt[IP].flags.MF or pkt[IP].frag)
            info["options"] = len(pkt[IP].options)
            if ICMP in pkt:
                info["icmp"] = [pkt[ICMP].type, pkt[ICMP].code]
        for l4 in (TCP, UDP):
            if l4 in pkt and not info.get("frag"):
                info["sport"], info["dport"] = pkt[l4].sport, pkt[l4].dport
                info["l4_csum_ok"] = _checksum_ok(l3, l4)
                if l4 is TCP:
                    info["flags"] = str(pkt[TCP].flags)
        out.append(info)
    print(json.dumps(out), flush=True)


def _checksum_ok(l3, l4=None) -> bool:
    """Whether the checksum on the wire is the one scapy computes from the same bytes."""
    fresh = type(l3)(bytes(l3))
    target = fresh if l4 is None else fresh[l4]
    original = target.chksum
    if l4 is not None and l4.__name__ == "UDP" and original == 0 and type(l3).__name__ == "IP":
        return True  # IPv4 UDP without checksum stays without
    del target.chksum
    rebuilt = type(l3)(bytes(fresh))
    return (rebuilt if l4 is None else rebuilt[l4]).chksum == original


def tcp_server(port: str) -> None:
    server = socket.socket(socket.AF_INET6)  # dual-stack: IPv4 clients arrive mapped
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("", int(port)))
    server.listen(1)
    print("READY", flush=True)
    conn, _ = server.accept()
    total = 0
    try:
        while data := conn.recv(65536):
            total += len(data)
    except ConnectionResetError:
        pass
    print(json.dumps({"received_bytes": total}), flush=True)


def tcp_client(host: str, port: str, count: str, interval: str, end: str = "fin") -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + 5
    while True:  # the server may still be starting in the other host
        conn = socket.socket(family)
        try:
            conn.connect((host, int(port)))
            break
        except ConnectionRefusedError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    for _ in range(int(count)):
        conn.sendall(b"x" * 100)
        time.sleep(float(interval))
    if end == "rst":  # SO_LINGER 0: close() sends RST instead of FIN
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    print(json.dumps({"sent_bytes": int(count) * 100}), flush=True)


def udp_echo(port: str) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("", int(port)))
    print("READY", flush=True)
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(data, peer)


def udp_client(host: str, port: str, count: str, interval: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    received = 0
    for i in range(int(count)):
        sock.sendto(str(i).encode().ljust(64, b"."), (host, int(port)))
        try:
            sock.recvfrom(65536)
            received += 1
        except TimeoutError:
            pass
        time.sleep(float(interval))
    print(json.dumps({"sent": int(count), "received": received}), flush=True)


def send(iface: str, kind: str, dst_mac: str, src: str, dst: str, port: str) -> None:
    """One crafted packet to ``dst`` through the router: ``frags``, ``options``, ``big``."""
    from scapy.all import IP, UDP, Ether, IPOption_RR, fragment, sendp

    base = Ether(dst=dst_mac) / IP(src=src, dst=dst, ttl=64)
    udp = UDP(sport=40000, dport=int(port))
    if kind == "frags":
        frames = [Ether(dst=dst_mac) / f for f in fragment(base[IP] / udp / (b"f" * 1200), 400)]
    elif kind == "options":
        frames = [Ether(dst=dst_mac) / IP(src=src, dst=dst, ttl=64, options=[IPOption_RR()])
                  / udp / (b"o" * 100)]
    else:
        frames = [Ether(dst=dst_mac) / IP(src=src, dst=dst, ttl=64, flags="DF")
                  / udp / (b"b" * 1600)]
    sendp(frames, iface=iface, verbose=False)
    print(json.dumps({"sent": len(frames)}), flush=True)


MODES = {"sniff": sniff, "tcp-server": tcp_server, "tcp-client": tcp_client,
         "udp-echo": udp_echo, "udp-client": udp_client, "send": send}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
