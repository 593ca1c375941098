"""Each lab topology carries its own demo, and the demo recognises its connections offloaded
by their original tuple (what the client dialled), so a translated reply does not hide them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.lab.demo import connections, offloaded
from controller.lab.topology import DemoConnection, LabTopology, load_topology, topology_names


def test_every_topology_declares_a_demo_of_hosts_it_has() -> None:
    for name in topology_names():  # load_topology refuses a demo host the topology lacks
        assert load_topology(name).demo, name


def test_the_nat_demo_masquerades_to_the_outside_and_uses_the_port_forward() -> None:
    nat = load_topology("nat")
    (masquerade, forward) = nat.demo
    assert nat.port_of(masquerade.client).name.startswith("lan")
    assert nat.port_of(masquerade.server).name == "wan"
    assert nat.port_of(forward.client).name == "wan"
    assert nat.dial(forward) == ("192.0.2.254", 8080)  # the router's address, not h1's
    assert "dnat to 10.0.1.1:80" in nat.ruleset and forward.port == 80


def _conn(src: str, dst: str, dport: int, reply_src: str, offload: str) -> dict:
    return {"original": {"src": src, "dst": dst, "sport": 40000, "dport": dport},
            "reply": {"src": reply_src, "dst": src, "sport": dport, "dport": 40000},
            "offload": offload}


def test_a_dnat_connection_is_found_by_what_the_client_dialled() -> None:
    nat = load_topology("nat")
    forward = nat.demo[1]
    conn = _conn("192.0.2.1", "192.0.2.254", 8080, "10.0.1.1", "HW_OFFLOAD")
    assert offloaded([conn], nat, forward)
    assert not offloaded([{**conn, "offload": "OFFLOAD"}], nat, forward)
    assert not offloaded([_conn("192.0.2.1", "10.0.1.1", 80, "10.0.1.1", "HW_OFFLOAD")], nat,
                         forward)


def test_a_topology_without_a_demo_connects_its_first_two_hosts() -> None:
    router = load_topology("router")
    bare = LabTopology(description="x", ports=router.ports, ruleset=router.ruleset)
    assert connections(bare) == (DemoConnection(
        "h1 opens a TCP connection to h2 (10.0.2.1) through the P4 switch", "h1", "h2", 5001),)
    assert connections(router) == connections(bare)


def test_a_demo_naming_an_unknown_host_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("from controller.lab import DemoConnection, LabTopology, load_topology\n"
                    "base = load_topology('router')\n"
                    "TOPOLOGY = LabTopology('x', base.ports, base.ruleset,\n"
                    "                       demo=(DemoConnection('t', 'h1', 'h9', 1),))\n")
    with pytest.raises(ValueError, match="names a host that is not in the topology"):
        load_topology(path)
