"""One controller process driving two softswitches: each has its own router and ruleset.

Real processes (``p4ft softswitch`` x2 without interfaces, ``p4ft controller``), no root needed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from controller.edges import control

RULESET = """table inet filter {
    flowtable ft { hook ingress priority 0; devices = { eth0, eth1 }; flags offload; }
    chain forward { type filter hook forward priority 0; policy accept; %s flow add @ft; }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, name: str, port: int, match: str) -> str:
    (tmp_path / f"{name}.nft").write_text(RULESET % match)
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""[switch]
address = "127.0.0.1:{port}"
device_id = 1
[[ports]]
id = 1
name = "eth0"
mac = "00:00:00:00:01:fe"
addresses = ["10.0.1.254/24"]
[[ports]]
id = 2
name = "eth1"
mac = "00:00:00:00:02:fe"
addresses = ["10.0.2.254/24"]
[ruleset]
file = "{name}.nft"
""")
    return str(path)


def _p4ft(*args: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "controller.cli", *args], stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.fixture
def controller(tmp_path):
    ports = [_free_port(), _free_port()]
    switches = [_p4ft("softswitch", "--no-p4", "--device-id", "1", "--grpc-addr",
                      f"127.0.0.1:{p}") for p in ports]
    sock = tmp_path / "control.sock"
    metrics = _free_port()
    log = (tmp_path / "controller.log").open("wb")
    daemon = _p4ft("controller", "--config", _config(tmp_path, "red", ports[0], "tcp dport 22"),
                   "--config", _config(tmp_path, "blue", ports[1], "udp dport 53"),
                   "--control", str(sock), "--state-dir", str(tmp_path / "state"),
                   "--metrics", f"127.0.0.1:{metrics}", log=log)
    try:
        try:
            control.wait_ready(sock, 60, alive=lambda: daemon.poll() is None)
        except control.ControlError as exc:
            pytest.fail(f"{exc}\n{(tmp_path / 'controller.log').read_text()}")
        yield daemon, sock, metrics
    finally:
        for proc in (daemon, *switches):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def test_two_switches_each_with_its_own_ruleset(controller):
    _daemon, sock, _metrics = controller
    rulesets = control.request("ruleset", sock)
    assert set(rulesets) == {"red", "blue"}
    assert "tcp dport 22" in rulesets["red"] and "udp dport 53" in rulesets["blue"]
    applied = control.request("ruleset_apply", sock, switch="red", filename="x.nft",
                              text="add table ip extra\n")
    assert "table ip extra" in applied["red"]
    assert "table ip extra" not in control.request("ruleset", sock, switch="blue")["blue"]
    with pytest.raises(control.ControlError, match="several switches"):
        control.request("ruleset_apply", sock, text="add table ip x\n")


def test_deleting_a_flowtable_a_rule_uses_is_refused_and_nothing_changes(controller):
    _daemon, sock, _metrics = controller
    before = control.request("ruleset", sock, switch="red")
    with pytest.raises(control.ControlError):
        control.request("ruleset_apply", sock, switch="red", filename="del.nft",
                        text="delete flowtable inet filter ft\n")
    assert control.request("ruleset", sock, switch="red") == before


def test_flowtable_device_the_switch_lacks_is_refused_with_its_location(controller):
    """nft refuses a device __dev_get_by_name does not find: ENOENT at the device."""
    _daemon, sock, _metrics = controller
    before = control.request("ruleset", sock, switch="red")
    with pytest.raises(control.ControlError, match=r"ft\.nft:1:\d+: .*no device eth9"):
        control.request("ruleset_apply", sock, switch="red", filename="ft.nft",
                        text="add flowtable inet filter ft { devices = { eth9 }; }\n")
    assert control.request("ruleset", sock, switch="red") == before


def test_sigterm_stops_cleanly_and_removes_the_socket(controller):
    daemon, sock, _metrics = controller
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    assert not sock.exists()


def test_metrics_endpoint_serves_prometheus_text_per_switch(controller):
    import urllib.request

    _daemon, _sock, metrics = controller
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert 'p4ft_connected{switch="red"} 1' in text
    assert 'p4ft_connected{switch="blue"} 1' in text
