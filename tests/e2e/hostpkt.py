"""Traffic tool run inside a lab host (``python hostpkt.py MODE ...``); prints JSON on stdout.

Modes: ``sniff IFACE PORT`` (prints READY once capturing, then one JSON line per frame seen, with
TTL, MACs and whether the checksums are valid, until its stdin closes), ``tcp-server PORT``,
``tcp-client HOST PORT COUNT INTERVAL``, ``udp-echo PORT``, ``udp-client HOST PORT COUNT
INTERVAL`` (sent/received counts), ``udp-flows HOST PORT COUNT`` (COUNT flows at once, a
round per line on stdin), ``send IFACE HEX...`` (raw frames).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time


def sniff(iface: str, port: str) -> None:
    """Capture on an AF_PACKET socket bound before READY, so nothing sent after READY is missed;
    when stdin closes, drain what the kernel already queued (every frame that crossed the
    interface before then) and stop."""
    import select
    from pathlib import Path

    from scapy.all import Ether

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from softswitch.ports import AUXDATA_SPACE, PACKET_AUXDATA, SOL_PACKET, with_vlan_tag

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)  # tags as on the wire (the kernel strips one)
    sock.bind((iface, ETH_P_ALL))
    print("READY", flush=True)
    stopping = False
    while True:
        readable, _, _ = select.select([sock] if stopping else [sock, sys.stdin], [], [],
                                       0 if stopping else None)
        if sys.stdin in readable and not sys.stdin.buffer.read1(4096):
            stopping = True  # stdin closed: drain the socket without waiting
        if sock in readable:
            frame, ancillary, _, _ = sock.recvmsg(65536, AUXDATA_SPACE)
            info = _describe(Ether(with_vlan_tag(frame, ancillary)), int(port))
            if info is not None:
                print(json.dumps(info), flush=True)
        elif stopping:
            return


ETH_P_ALL = 3


def _describe(pkt, port: int) -> dict | None:
    """What the tests check of one frame, or None if it is not of interest."""
    from scapy.all import ICMP, IP, TCP, UDP, IPv6

    if not (IP in pkt or IPv6 in pkt):
        return None
    fragment = IP in pkt and bool(pkt[IP].flags.MF or pkt[IP].frag)
    if not (fragment or (IP in pkt and ICMP in pkt) or any(
            l4 in pkt and port in (pkt[l4].sport, pkt[l4].dport) for l4 in (TCP, UDP))):
        return None
    l3 = pkt[IP] if IP in pkt else pkt[IPv6]
    info = {"src_mac": pkt.src, "dst_mac": pkt.dst, "src": l3.src, "dst": l3.dst,
            "ttl": l3.ttl if IP in pkt else l3.hlim, "len": len(pkt), "encap": _encap(pkt)}
    if IP in pkt:
        info["ip_csum_ok"] = _checksum_ok(pkt[IP])
        info["frag"] = fragment
        info["options"] = len(pkt[IP].options)
        if ICMP in pkt:
            info["icmp"] = [pkt[ICMP].type, pkt[ICMP].code]
    for l4 in (TCP, UDP):
        if l4 in pkt and not fragment:
            info["sport"], info["dport"] = pkt[l4].sport, pkt[l4].dport
            info["l4_csum_ok"] = _checksum_ok(l3, l4)
            if l4 is TCP:
                info["flags"] = str(pkt[TCP].flags)
    return info


def _encap(pkt) -> list[str]:
    """The frame's tags and PPPoE session, outermost first: "802.1ad:100", "vlan:10",
    "pppoe:4660" (the shim's syntax)."""
    out = []
    layer = pkt.payload
    while layer is not None and layer.name in ("802.1Q", "802_1AD", "PPP over Ethernet"):
        if layer.name == "PPP over Ethernet":
            out.append(f"pppoe:{layer.sessionid}")
        else:
            out.append(f"{'vlan' if layer.name == '802.1Q' else '802.1ad'}:{layer.vlan}")
        layer = layer.payload
    return out


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
    """Send COUNT numbered datagrams, each after the previous one's echo (or REPLY_WAIT seconds
    without it) and INTERVAL; "received" counts the distinct datagrams echoed, late ones too: a
    loaded machine delays replies, only a lost one is missing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sent, echoed = int(count), set()

    def receive_until(seq: bytes, until: float) -> None:
        while seq not in echoed and (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return
            echoed.add(data.split(b".", 1)[0])

    for i in range(sent):
        seq = str(i).encode()
        sock.sendto(seq.ljust(64, b"."), (host, int(port)))
        receive_until(seq, time.monotonic() + REPLY_WAIT)
        time.sleep(float(interval))
    for seq in (str(i).encode() for i in range(sent)):
        receive_until(seq, time.monotonic() + 1.0)
    print(json.dumps({"sent": sent, "received": len(echoed)}), flush=True)


REPLY_WAIT = 10.0


def udp_flows(host: str, port: str, count: str) -> None:
    """COUNT UDP flows to an ``udp-echo`` at HOST:PORT, one socket (source port) each. A round
    (the first at once, then one per line on stdin, until it closes) sends a datagram on every
    flow and resends to those not echoed yet (new flows take the controller's path first),
    for up to ROUND_WAIT s; prints {"round", "flows", "echoed", "sends"}."""
    import resource
    import selectors

    flows = int(count)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, flows + 64), max(hard, flows + 64)))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    selector = selectors.DefaultSelector()
    socks = []
    for i in range(flows):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect((host, int(port)))
        selector.register(sock, selectors.EVENT_READ, i)
        socks.append(sock)
    number = 0
    while True:
        number += 1
        tag = f"{number}.".encode()
        echoed: set[int] = set()

        def drain(timeout: float, tag: bytes = tag, echoed: set[int] = echoed) -> None:
            for key, _ in selector.select(timeout):
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    while True:
                        if key.fileobj.recv(128).startswith(tag):
                            echoed.add(key.data)

        deadline, sends, wait = time.monotonic() + ROUND_WAIT, 0, 0.5
        while len(echoed) < flows and time.monotonic() < deadline:
            for k, i in enumerate([i for i in range(flows) if i not in echoed]):
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    socks[i].send(tag + str(i).encode().ljust(60, b"."))
                    sends += 1
                if k % 50 == 49:
                    drain(0.01)  # a burst's echoes are read while the next goes out
            until = min(deadline, time.monotonic() + wait)
            while len(echoed) < flows and (left := until - time.monotonic()) > 0:
                drain(left)
            wait *= 2
        print(json.dumps({"round": number, "flows": flows, "echoed": len(echoed),
                          "sends": sends}), flush=True)
        if not sys.stdin.readline():
            return


ROUND_WAIT = 60.0


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
         "udp-echo": udp_echo, "udp-client": udp_client, "udp-flows": udp_flows,
         "send": send}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
