"""[[vlans]] and [[pppoe]]: devices on devices, refused where the kernel flowtable could not
carry their encapsulations, and in kernel mode (no 8021Q/PPP here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import SUBDEVICE_BASE, ConfigError, load_config, parse_config
from inet.encap import Encap

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "encap" / "router.toml"
PORTS = """
[[ports]]
id = 1
name = "eth0"
mac = "02:00:00:00:01:fe"
mtu = 1500
[[ports]]
id = 2
name = "eth1"
mac = "02:00:00:00:02:fe"
"""
PPPOE = """
[[pppoe]]
name = "pppoe-wan"
link = "eth1"
session = 7
peer_mac = "02:00:00:00:02:01"
local = "203.0.113.5"
peer = "203.0.113.1"
"""


def test_the_example_has_vlan_qinq_and_pppoe_devices_above_every_port_id() -> None:
    config = load_config(EXAMPLE)
    devices = {d.name: d for d in config.subdevices}
    assert [d.name for d in config.ports] == ["eth0", "eth1", "eth2"]
    assert devices["eth0.100"].encap == Encap(100, 0x88A8)
    assert devices["eth0.100.10"].link == "eth0.100"
    assert devices["eth0.10"].mac == config.ports[0].mac  # inherited, as vlan devices do
    wan = devices["pppoe-wan"]
    assert (wan.encap, wan.mtu, str(wan.peer)) == (Encap(0x1234, 0x8864), 1492, "203.0.113.1")
    assert all(d.id >= SUBDEVICE_BASE for d in config.subdevices)
    assert config.port_by_name("pppoe-wan") is wan


def test_pppoe_defaults_to_1492_and_routes_may_go_via_its_peer() -> None:
    config = parse_config(PORTS + PPPOE + '[[routes]]\nprefix = "0.0.0.0/0"\nvia = "203.0.113.1"\n')
    assert config.subdevices[0].mtu == 1492
    assert config.routes[0].via is not None


@pytest.mark.parametrize("extra, key, message", [
    ('[[vlans]]\nname = "eth0.5"\nlink = "eth9"\nid = 5\n', "vlans[0].link", "no device"),
    ('[[vlans]]\nname = "eth0.5"\nlink = "eth0"\nid = 4095\n', "vlans[0].id", ""),
    ('[[vlans]]\nname = "eth0.5"\nlink = "eth0"\nid = 5\nprotocol = "isl"\n',
     "vlans[0].protocol", "802.1q or 802.1ad"),
    ('[[vlans]]\nname = "a"\nlink = "eth0"\nid = 5\n[[vlans]]\nname = "b"\nlink = "eth0"\n'
     'id = 5\n', "vlans[1]", "already has vlan:5"),
    ('[[vlans]]\nname = "a"\nlink = "eth0"\nid = 5\nprotocol = "802.1ad"\n[[vlans]]\n'
     'name = "b"\nlink = "a"\nid = 6\nprotocol = "802.1ad"\n', "vlans[1]", "inner tag"),
    ('[[vlans]]\nname = "a"\nlink = "eth0"\nid = 5\n[[vlans]]\nname = "b"\nlink = "a"\nid = 6\n'
     '[[vlans]]\nname = "c"\nlink = "b"\nid = 7\n', "vlans[2]", "3 encapsulations"),
    ('[[vlans]]\nname = "eth1"\nlink = "eth0"\nid = 5\n', "vlans[0].name", "duplicate"),
    ('[[vlans]]\nname = "v"\nlink = "eth0"\nid = 5\nmtu = 1501\n', "vlans[0].mtu", ""),
    (PPPOE.replace('session = 7', 'session = 0'), "pppoe[0].session", ""),
    (PPPOE.replace('"203.0.113.1"', '"2001:db8::1"'), "pppoe[0]", "IPCP"),
    ('[kernel]\nnetns = "r"\n' + PPPOE, "pppoe", "8021Q/PPP"),
])
def test_bad_devices_are_refused_by_key(extra: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message or None) as err:
        parse_config(PORTS + extra)
    assert f"router.toml: {key}" in str(err.value)
