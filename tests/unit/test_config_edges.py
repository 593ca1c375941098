"""Router TOML at its edges: whatever the file holds, a one-line ConfigError naming the file
(and the key), never a traceback; from ``p4ft controller`` and ``p4ft ruleset check --config``
alike. Fuzzed with hypothesis over bytes and over documents shaped like a router config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import cli
from controller.config import ConfigError, RouterConfig, load_config, parse_config

PORT = '[[ports]]\nid = 1\nname = "eth0"\nmac = "02:00:00:00:00:01"\n'


def _port(address: str) -> str:
    return PORT + f'addresses = ["{address}"]\n'


@pytest.mark.parametrize(("address", "what"), [
    ("10.0.1.0/24", "the network address of 10.0.1.0/24"),
    ("10.0.1.255/24", "the broadcast address of 10.0.1.0/24"),
    ("2001:db8:1::/64", "the Subnet-Router anycast address"),
])
def test_an_address_its_subnet_reserves_is_refused(address, what):
    with pytest.raises(ConfigError, match=f"r.toml: ports\\[0\\].addresses\\[0\\]: .* is {what}"):
        parse_config(_port(address), name="r.toml")


@pytest.mark.parametrize("address", ["10.0.1.0/31", "10.0.1.1/31", "10.0.1.7/32",
                                     "2001:db8::/127", "2001:db8::1/64", "10.0.1.1/24"])
def test_point_to_point_and_host_addresses_are_accepted(address):
    assert parse_config(_port(address)).ports[0].addresses[0].ip.exploded


def test_without_switch_the_default_address_is_used_and_marked():
    cfg = parse_config(PORT)
    assert cfg.switch.address == "127.0.0.1:9559" and cfg.switch.address_defaulted
    given_ = parse_config('[switch]\naddress = "10.1.1.1:9559"\n' + PORT)
    assert not given_.switch.address_defaulted
    # a [switch] table without an address still uses (and says) the default
    assert parse_config("[switch]\ndevice_id = 3\n" + PORT).switch.address_defaulted


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    nested = tmp_path / "nested.toml"
    nested.write_text(PORT + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(PORT.encode() + '# café\n'.encode("latin-1"))
    return {"nested": (nested, "nested too deeply"),
            "latin1": (latin, "not UTF-8 text (byte 0xe9 at offset")}


@pytest.mark.parametrize("case", ["nested", "latin1"])
def test_a_broken_file_is_one_line_naming_it(tmp_path, case):
    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("case", ["nested", "latin1"])
@pytest.mark.parametrize("command", ["controller", "ruleset-check"])
def test_both_commands_print_one_line_naming_the_file(tmp_path, capsys, case, command):
    path, message = _bad_files(tmp_path)[case]
    ruleset = tmp_path / "r.nft"
    ruleset.write_text("table inet t { }\n")
    argv = (["controller", "--config", str(path), "--control", str(tmp_path / "c.sock")]
            if command == "controller" else ["ruleset", "check", str(ruleset), "--config",
                                             str(path)])
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and str(path) in err and message in err, err


def test_a_nul_in_the_ruleset_file_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"ruleset\.file: cannot read"):
        parse_config(PORT + '[ruleset]\nfile = "a\\u0000b"\n', base_dir=tmp_path)


# -- fuzzing ---------------------------------------------------------------------------------


def _toml(value) -> str:
    """``value`` as a TOML inline value (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


anything = st.recursive(
    st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)
ints = st.integers(-2, 2**65) | st.sampled_from([0, 1, 2, 255, 1500, 1280, 67, 65536])
addresses = st.sampled_from(["10.0.1.254/24", "10.0.1.0/24", "10.0.1.255/24", "2001:db8::1/64",
                             "2001:db8::/64", "10.0.2.1/31", "224.0.0.1/4", "0.0.0.0/0", "x",
                             "10.0.1.254", "fe80::1/64", "10.0.1.254/33"])
ips = st.sampled_from(["10.0.1.1", "10.0.2.1", "2001:db8::2", "10.9.9.9", "::", "nope"])
macs = st.sampled_from(["02:00:00:00:00:01", "03:00:00:00:00:01", "02-00-00-00-00-02",
                        "02:00:00:00:00", "zz:00:00:00:00:01"])
names = st.sampled_from(["eth0", "eth1", "", "a/b", "x" * 16, "eth 0"])


def _table(fields: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: v | anything for k, v in fields.items()})


reasons = st.dictionaries(st.sampled_from(["miss", "ttl", "nope", "tcp_fin_rst"]),
                          _table({"rate_pps": ints, "burst": ints}) | anything, max_size=2)
documents = st.fixed_dictionaries({}, optional={
    "switch": _table({"address": st.sampled_from(["127.0.0.1:9559", "h:0", "[::1]:9559", ":1",
                                                  "host:99999"]),
                      "device_id": ints, "election_id": ints, "cpu_port": ints}),
    "ports": st.lists(_table({"id": ints, "name": names, "mac": macs,
                              "addresses": st.lists(addresses, max_size=3), "mtu": ints}),
                      max_size=3),
    "routes": st.lists(_table({"prefix": addresses, "via": ips, "port": names}), max_size=2),
    "neighbors": st.lists(_table({"address": ips, "mac": macs, "port": names}), max_size=2),
    "ruleset": _table({"file": st.sampled_from(["r.nft", "missing.nft", ".", "a\x00b"]),
                       "text": st.just("table inet t { }")}),
    "flowtable": _table({"tcp_timeout": ints, "udp_timeout": ints,
                         "fin_mode": st.sampled_from(["closing", "teardown", "x"]),
                         "offload_min_packets": ints, "offload_min_bytes": ints}),
    "conntrack": _table({"max": ints}),
    "punt": _table({"rate_pps": ints, "burst": ints, "exception_rate_pps": ints,
                    "exception_burst": ints, "reasons": reasons}),
    "kernel": _table({"netns": st.just("r1"), "offload": st.lists(st.sampled_from(
        ["tcp", "udp", "icmp"])), "match": st.lists(st.sampled_from(
            ["tcp dport 22", "iifname eth0", "bogus ("]))}),
    "unknown": anything,
})


def _loads_or_explains(text: str, base_dir: Path) -> None:
    try:
        assert isinstance(parse_config(text, name="fuzz.toml", base_dir=base_dir), RouterConfig)
    except ConfigError as error:
        assert str(error).startswith("fuzz.toml: ") and "\n" not in str(error).strip(), error


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=documents)
def test_any_router_shaped_document_loads_or_names_file_and_key(tmp_path, doc):
    (tmp_path / "r.nft").write_text("table inet t { }\n")
    text = "\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items())
    _loads_or_explains(text, tmp_path)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | st.integers(1, 4000).map(lambda n: (PORT + "a = " + "{b = " * n + "1" + "}" * n)
                                  .encode()))
def test_any_file_content_loads_or_is_one_config_error(tmp_path, data):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error).strip()


def test_an_unresolvable_switch_host_fails_start_up_at_once_naming_it(tmp_path, capsys):
    config = tmp_path / "r1.toml"
    config.write_text('[switch]\naddress = "no-such-switch.invalid:9559"\n' + PORT)
    code = cli.main(["controller", "--config", str(config), "--control",
                     str(tmp_path / "c.sock"), "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 1
    assert ("p4ft controller: r1: switch address no-such-switch.invalid:9559: cannot resolve "
            "'no-such-switch.invalid'") in err
