"""Kernel mode end to end: a real Linux router namespace (r1) is the slow path, the switch
(P4FT_TARGET) holds the connections its conntrack established. Assertions are on the kernel itself
(``conntrack -L``, the nft forward chain's counter) and on what the receiving host got."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Sniffer, conn_to, run, serve, start, wait_for

pytestmark = pytest.mark.e2e

IDLE = 4  # the flowtable's idle budget in this lab, seconds


@pytest.fixture(scope="module")
def lab(target):
    from controller.lab import Lab

    with Lab("kernel", target, grpc_port=9566,
             flowtable={"tcp_timeout": IDLE, "udp_timeout": IDLE}) as lab:
        yield lab


def forward_counter(lab) -> int:
    text = lab.router_cmd("nft", "list", "chain", "inet", "filter", "forward")
    return int(re.search(r"counter packets (\d+)", text).group(1))


def kernel_conns(lab, proto: str, dport: int) -> list[str]:
    text = lab.router_cmd("conntrack", "-L", "-p", proto, "--dport", str(dport))
    return [line for line in text.splitlines() if line.startswith(proto)]


def hw_entries(lab) -> int:
    return lab.stats()["hw_entries"]


def hw_dirs(lab, port: int) -> int:
    """Directions of the connection to ``port`` the hardware holds (0 once it is gone)."""
    conn = conn_to(lab, port)
    return conn.get("hw_directions", 0) if conn else 0


def offloaded(lab, port: int):
    return wait_for(lambda: (c := conn_to(lab, port)) and c["offload"] == "HW_OFFLOAD" and c)


@pytest.mark.parametrize(("family", "port"), [(4, 5201), (6, 5211)])
def test_tcp_handshake_in_the_kernel_data_in_hardware_with_ttl_macs_and_nat(lab, family, port):
    h2 = lab.topology.port_of("h2")
    sniffer = Sniffer(lab, "h2", port)
    server = serve(lab, "h2", "tcp-server", str(port))
    before = forward_counter(lab)
    client = start(lab, "h1", "tcp-client", lab.address("h2", family), str(port), "40", "0.05")
    conn = offloaded(lab, port)
    assert conn, lab.flows()
    (line,) = kernel_conns(lab, "tcp", port)
    assert "ESTABLISHED" in line and "[ASSURED]" in line, line
    client.communicate(timeout=20)
    server.communicate(timeout=20)
    counted = forward_counter(lab) - before
    # the kernel forwarded the handshake and the close; the 40 segments and their ACKs did not
    # reach it
    assert 0 < counted <= 10, counted
    seen = [p for p in sniffer.result() if p["dport"] == port]
    payload = [p for p in seen if "P" in p.get("flags", "")]
    assert len(payload) == 40
    # masqueraded (IPv4 only: the nat table is ip), by the kernel or the switch
    source = "10.0.2.254" if family == 4 else lab.address("h1", 6)
    for packet in seen:
        assert packet["src"] == source
        assert packet["ttl"] == 63
        assert packet["src_mac"] == h2.mac and packet["dst_mac"] == h2.host_mac
        assert packet.get("ip_csum_ok", True) and packet["l4_csum_ok"], packet


def test_udp_entry_outlives_its_kernel_timeout_while_hardware_carries_it_then_expires(lab):
    lab.router_cmd("sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=3",
                   "net.netfilter.nf_conntrack_udp_timeout_stream=5")
    echo = serve(lab, "h2", "udp-echo", "5202")
    try:
        punts = sum(lab.stats()["punts"].values())
        # 8 s of traffic: longer than the kernel's 5 s stream timeout
        result = run(lab, "h1", "udp-client", lab.address("h2"), "5202", "80", "0.1")
        assert result == {"sent": 80, "received": 80}
        assert kernel_conns(lab, "udp", 5202), "the kernel's entry timed out under hardware"
        conn = conn_to(lab, 5202)
        assert conn["offload"] == "HW_OFFLOAD", conn
        assert sum(lab.stats()["punts"].values()) - punts <= 10
        # hardware STATS reach the counters p4ft flows shows
        assert wait_for(lambda: conn_to(lab, 5202)["original"]["packets"] >= 70, timeout=IDLE)
        # idle: the flowtable expires the flow, both hardware entries go, the kernel entry then
        # ages out on its own
        assert wait_for(lambda: hw_entries(lab) == 0, timeout=IDLE + 6), lab.flows()
        assert wait_for(lambda: not kernel_conns(lab, "udp", 5202), timeout=10)
    finally:
        echo.kill()


@pytest.mark.parametrize(("port", "end"), [(5203, "fin"), (5204, "rst")])
def test_fin_and_rst_reach_the_kernel_and_remove_both_hardware_entries(lab, port, end):
    server = serve(lab, "h2", "tcp-server", str(port))
    client = start(lab, "h1", "tcp-client", lab.address("h2"), str(port), "30", "0.05", end)
    conn = offloaded(lab, port)  # as seen while offloaded: the client may be done by now
    assert conn and conn["hw_directions"] == 2, lab.flows()
    # the kernel's own TCP state machine closed it (the RST too: its sequence number is
    # not checked against the ACKs the kernel never saw); watched from the hosts' end on, as a
    # loaded machine can take longer to remove the entries than the closed state lasts
    # FIN: both FINs reached the kernel (LAST_ACK when the last ACK still took the hardware
    # entry before the teardown removed it, TIME_WAIT when it reached the kernel too)
    states = ("TIME_WAIT", "LAST_ACK") if end == "fin" else ("CLOSE",)
    seen: list[str] = []

    def closed() -> bool:
        seen.extend(kernel_conns(lab, "tcp", port))
        return any(f" {state} " in line for line in seen for state in states)

    def entries_gone() -> bool:
        closed()  # the state may pass while the entries go
        return hw_entries(lab) == 0

    client.communicate(timeout=20)
    server.communicate(timeout=20)
    assert wait_for(entries_gone), lab.flows()
    assert wait_for(closed), seen[-4:]
    assert lab.stats()["punts"].get("tcp_fin_rst", 0) >= 1


def test_conntrack_delete_removes_both_hardware_entries(lab):
    def torn_down() -> int:
        return lab.snapshot()["flowtables"][0]["counters"].get("teardown_ct_dying", 0)

    echo = serve(lab, "h2", "udp-echo", "5205")
    try:
        run(lab, "h1", "udp-client", lab.address("h2"), "5205", "10", "0.05")
        conn = offloaded(lab, 5205)
        assert conn and conn["hw_directions"] == 2, lab.flows()
        before = torn_down()
        out = lab.router_cmd("conntrack", "-D", "-p", "udp", "--dport", "5205")
        assert "1 flow entries have been deleted" in out, out
        assert wait_for(lambda: hw_entries(lab) == 0), lab.flows()
        assert torn_down() == before + 1  # by the kernel's DESTROY, not by idling
        assert conn_to(lab, 5205) is None
    finally:
        echo.kill()


def test_controller_restart_keeps_forwarding_and_offloads_the_kernels_connection_again(lab):
    # IPv6: a masqueraded entry would not survive its representor going away with the
    # controller (the kernel's masquerade forgets connections of a device that goes down)
    echo = serve(lab, "h2", "udp-echo", "5207")
    client = start(lab, "h1", "udp-client", lab.address("h2", 6), "5207", "100", "0.1")
    try:
        first = offloaded(lab, 5207)
        assert first, lab.flows()
        lab.stop_controller()
        lab.start_controller()
        # the kernel's entry, found in the conntrack dump at start, offloaded again once the
        # kernel resolved the neighbours it lost with the representors
        again = offloaded(lab, 5207)
        assert again and again["id"] == first["id"], lab.flows()
        assert lab.stats()["hw_entries_adopted"] == 0  # the re-offload took the entries over
    finally:
        out, _ = client.communicate(timeout=30)
        echo.kill()
    assert '"received": 100' in out, out


@pytest.mark.parametrize(("port", "change"), [(5208, "neighbour"), (5209, "link")])
def test_a_neighbour_change_or_a_representor_down_removes_both_hardware_entries(lab, port,
                                                                                change):
    echo = serve(lab, "h2", "udp-echo", str(port))
    client = start(lab, "h1", "udp-client", lab.address("h2"), str(port), "40", "0.1")
    try:
        assert offloaded(lab, port) and hw_dirs(lab, port) == 2, lab.flows()
        if change == "neighbour":  # h2 "moved": the kernel's neighbour entry gets a new MAC
            lab.router_cmd("ip", "neigh", "replace", lab.address("h2"), "lladdr",
                           "00:00:00:00:02:99", "dev", "eth1")
        else:
            lab.router_cmd("ip", "link", "set", "eth1", "down")
        assert wait_for(lambda: hw_dirs(lab, port) == 0, timeout=5), lab.flows()
    finally:
        lab.router_cmd("ip", "link", "set", "eth1", "up")
        lab.router_cmd("ip", "neigh", "del", lab.address("h2"), "dev", "eth1")
        client.communicate(timeout=60)
        echo.kill()
