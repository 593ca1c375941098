"""Router TOML: the DESIGN §4.2 example loads; every error names the file and the key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from controller.config import ConfigError, Policer, load_config, parse_config
from ndo.api import PuntReason

EXAMPLE = """
[switch]
address = "127.0.0.1:9559"
device_id = 1
election_id = 1
cpu_port = 255

[[ports]]
id = 1
name = "eth0"
mac = "00:00:00:00:01:fe"
addresses = ["10.0.1.254/24", "2001:db8:1::fe/64"]
mtu = 1500

[[ports]]
id = 2
name = "eth1"
mac = "00:00:00:00:02:fe"
addresses = ["10.0.2.254/24"]

[[routes]]
prefix = "10.0.3.0/24"
via = "10.0.2.1"

[[routes]]
prefix = "10.0.4.0/24"
port = "eth1"

[[neighbors]]
address = "10.0.1.1"
mac = "00:00:00:00:01:01"
port = "eth0"

[ruleset]
file = "ruleset.nft"

[flowtable]
tcp_timeout = 30
udp_timeout = 30
fin_mode = "closing"
"""

PORT = (
    '[[ports]]\nid = 1\nname = "eth0"\nmac = "02:00:00:00:00:01"\naddresses = ["10.0.1.254/24"]\n'
)


def test_design_example_loads(tmp_path: Path) -> None:
    (tmp_path / "ruleset.nft").write_text("table inet x {}\n")
    (tmp_path / "router.toml").write_text(EXAMPLE)
    cfg = load_config(tmp_path / "router.toml")
    assert cfg.switch.address == "127.0.0.1:9559" and cfg.switch.cpu_port == 255
    eth0 = cfg.port_by_name("eth0")
    assert eth0 is not None and eth0.id == 1 and eth0.mac == bytes.fromhex("0000000001fe")
    assert eth0.addresses == (
        ipaddress.ip_interface("10.0.1.254/24"),
        ipaddress.ip_interface("2001:db8:1::fe/64"),
    )
    assert cfg.port_by_id(2).mtu == 1500  # type: ignore[union-attr]
    assert cfg.routes[0].via == ipaddress.ip_address("10.0.2.1") and cfg.routes[0].port is None
    assert cfg.routes[1].port == "eth1" and cfg.routes[1].via is None
    assert cfg.neighbors[0].mac == bytes.fromhex("000000000101")
    assert cfg.ruleset is not None and cfg.ruleset.text == "table inet x {}\n"
    assert cfg.ruleset.file == tmp_path / "ruleset.nft"
    assert cfg.flowtable.fin_mode == "closing" and cfg.flowtable.tcp_timeout == 30
    assert cfg.conntrack.max == 65536


def test_defaults_and_inline_ruleset() -> None:
    cfg = parse_config(PORT + '[ruleset]\ntext = "table ip t {}"\n', name="r.toml")
    assert cfg.switch.address == "127.0.0.1:9559" and cfg.switch.device_id == 1
    assert cfg.ports[0].mtu == 1500 and cfg.routes == () and cfg.neighbors == ()
    assert cfg.ruleset is not None and cfg.ruleset.file is None
    assert cfg.ruleset.source == "r.toml:ruleset.text"
    assert cfg.flowtable.udp_timeout == 30


def test_extra_sections() -> None:
    cfg = parse_config(
        PORT + "[conntrack]\nmax = 10\n[flowtable]\nfin_mode = 'teardown'\n"
        "offload_min_packets = 5\noffload_min_bytes = 3000\n"
    )
    assert cfg.conntrack.max == 10 and cfg.flowtable.fin_mode == "teardown"
    assert (cfg.flowtable.offload_min_packets, cfg.flowtable.offload_min_bytes) == (5, 3000)


def test_punt_polices_misses_and_exceptions_apart_with_per_reason_overrides() -> None:
    cfg = parse_config(PORT + "[punt]\nrate_pps = 2000\nburst = 200\nexception_rate_pps = 100\n"
                       "[punt.reasons.ttl]\nrate_pps = 10\nburst = 5\n")
    assert cfg.punt is not None
    policers = cfg.punt.policers()
    assert set(policers) == set(PuntReason) - {PuntReason.NONE}
    assert policers[PuntReason.MISS] == Policer(2000, 200)
    assert policers[PuntReason.TCP_FIN_RST] == Policer(100, 200)  # burst defaults to misses'
    assert policers[PuntReason.TTL] == Policer(10, 5)


def test_no_punt_section_means_no_policing() -> None:
    assert parse_config(PORT).punt is None


def test_the_punt_channel_is_the_stream_unless_a_netdev_is_named() -> None:
    assert parse_config(PORT).punt_channel.channel == "p4runtime"
    cfg = parse_config(PORT + "[punt]\nchannel = 'netdev'\ndevice = 's1-punt'\n")
    assert (cfg.punt_channel.channel, cfg.punt_channel.device) == ("netdev", "s1-punt")
    assert cfg.punt is None  # a channel alone polices nothing
    both = parse_config(PORT + "[punt]\nchannel = 'netdev'\ndevice = 'cpu0'\nrate_pps = 9\n"
                        "burst = 3\n")
    assert both.punt is not None and both.punt.miss.rate_pps == 9


def port(**fields: str) -> str:
    base = {
        "id": "1",
        "name": '"eth0"',
        "mac": '"02:00:00:00:00:01"',
        "addresses": '["10.0.1.254/24"]',
    }
    base.update(fields)
    return "[[ports]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "router.toml: ports: at least one"),
        ("[[ports]]\nid = 1\n", "router.toml: ports[0].name: missing"),
        (port(mac='"00:00:00:00:01"'), "router.toml: ports[0].mac: not a MAC address"),
        (port(mac='"01:00:5e:00:00:01"'), "ports[0].mac: not a unicast MAC"),
        (port(id='"1"'), "ports[0].id: must be an integer"),
        (port(id="true"), "ports[0].id: must be an integer"),
        (port(id="255"), "ports[0].id: 255 is the CPU port"),
        (port(id="0"), "ports[0].id: must be between 1"),
        (port(addresses='["10.0.1.254"]'), "ports[0].addresses[0]: must be ADDRESS/PREFIXLEN"),
        (port(addresses='["10.0.1.300/24"]'), "ports[0].addresses[0]: not an address"),
        (port(addresses='["2001:db8::1/64"]', mtu="1000"), "ports[0].mtu: IPv6 needs"),
        (port(mtu="10"), "ports[0].mtu: must be between 68"),
        (port(speed="10"), "ports[0].speed: unknown key"),
        (port() + port(mac='"02:00:00:00:00:02"', addresses=""), "ports[1].id: duplicate"),
        (
            port() + port(id="2", name='"eth1"', addresses='["10.0.1.254/16"]'),
            "ports[1].addresses[0]: duplicate address",
        ),
        (port() + port(id="2", name='"eth1"'), "ports[1].addresses[0]: duplicate address"),
        (port() + port(id="2", addresses=""), "ports[1].name: duplicate port name"),
        (
            port() + "[[routes]]\nprefix = '10.0.3.1/24'\nvia = '10.0.1.1'\n",
            "routes[0].prefix: not a prefix: 10.0.3.1/24 has host bits set",
        ),
        (port() + "[[routes]]\nprefix = '10.0.3.0/24'\n", "routes[0]: needs 'via'"),
        (
            port() + "[[routes]]\nprefix = '10.0.3.0/24'\nvia = '10.0.9.1'\n",
            "routes[0].via: 10.0.9.1 is not on a connected network",
        ),
        (
            port() + "[[routes]]\nprefix = '10.0.3.0/24'\nvia = '2001:db8::1'\n",
            "routes[0].via: IPv6 next hop",
        ),
        (
            port() + "[[routes]]\nprefix = '10.0.3.0/24'\nport = 'eth9'\n",
            "routes[0].port: no port named 'eth9'",
        ),
        (
            port() + "[[neighbors]]\naddress = '10.0.1.1'\nmac = '02:00:00:00:00:09'\n",
            "neighbors[0].port: missing",
        ),
        (
            port() + "[[neighbors]]\naddress = 'x'\nmac = '02:00:00:00:00:09'\nport = 'eth0'\n",
            "neighbors[0].address: not an IP address",
        ),
        (port() + "[ruleset]\n", "ruleset: needs exactly one"),
        (port() + "[ruleset]\nfile = 'nope.nft'\n", "ruleset.file: cannot read"),
        (port() + "[flowtable]\nfin_mode = 'sometimes'\n", "flowtable.fin_mode: must be"),
        (port() + "[flowtable]\ntcp_timeout = 0\n", "flowtable.tcp_timeout: must be between"),
        (port() + "[flowtable]\noffload_min_bytes = -1\n", "flowtable.offload_min_bytes: must be"),
        (port() + "[punt]\nburst = 5\n", "punt.rate_pps: missing"),
        (port() + "[punt]\nrate_pps = 5\n", "punt.burst: missing"),
        (port() + "[punt]\nrate_pps = 0\nburst = 1\n", "punt.rate_pps: must be between 1"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\nexception_burst = 0\n",
         "punt.exception_burst: must be between 1"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\nrate = 3\n", "punt.rate: unknown key"),
        (port() + "[punt]\nrate_pps = '5'\nburst = 1\n", "punt.rate_pps: must be an integer"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\n[punt.reasons.flood]\n",
         "punt.reasons.flood: not a punt reason (known: miss, tcp_fin_rst"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\n[punt.reasons]\nttl = 3\n",
         "punt.reasons.ttl: must be a table"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\n[punt.reasons.ttl]\nrate_pps = 1\n",
         "punt.reasons.ttl.burst: missing"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\n[punt.reasons.ttl]\nrate_pps = 1\n"
         "burst = 1\npir = 3\n", "punt.reasons.ttl.pir: unknown key"),
        (port() + "[punt]\nrate_pps = 5\nburst = 1\nreasons = 3\n",
         "punt.reasons: must be a table"),
        (port() + "[punt]\nchannel = 'netdev'\n", "punt.device: the netdev channel needs"),
        (port() + "[punt]\nchannel = 'grpc'\n", "punt.channel: must be 'p4runtime' or 'netdev'"),
        (port() + "[punt]\ndevice = 'cpu0'\n", "punt.device: only the netdev channel"),
        (port() + "[punt]\nchannel = 'netdev'\ndevice = 'eth0'\n",
         "punt.device: 'eth0' is a data port's name"),
        (port() + "[punt]\nchannel = 'netdev'\ndevice = 'a b'\n", "punt.device: not a device"),
        (port() + "[switch]\naddress = 'localhost'\n", "switch.address: must be HOST:PORT"),
        (port() + "[switch]\ncpu = 1\n", "switch.cpu: unknown key"),
        (port() + "[routers]\n", "router.toml: routers: unknown key"),
        (port() + "ports = 3\n", "router.toml: "),
        ("[[ports]\n", "router.toml: "),
        ("ports = 3\n", "router.toml: ports: must be an array of tables"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, name="router.toml", base_dir=tmp_path)
    assert message in str(err.value)
    assert str(err.value).startswith("router.toml: ")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.toml: cannot read"):
        load_config(tmp_path / "absent.toml")


def test_route_via_on_named_port_only() -> None:
    text = port() + port(
        id="2", name='"eth1"', mac='"02:00:00:00:00:02"', addresses='["10.0.2.254/24"]'
    )
    ok = parse_config(text + "[[routes]]\nprefix = '0.0.0.0/0'\nvia = '10.0.2.1'\nport = 'eth1'\n")
    assert ok.routes[0].port == "eth1"
    with pytest.raises(ConfigError, match="not on a connected network"):
        parse_config(text + "[[routes]]\nprefix = '0.0.0.0/0'\nvia = '10.0.2.1'\nport = 'eth0'\n")
