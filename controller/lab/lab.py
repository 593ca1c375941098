"""``Lab``: a Mininet network of hosts around one P4 switch, with the controller running.

    with Lab("router") as lab:
        print(lab.host("h1").cmd("ping -c1 10.0.2.1"))
        print(lab.flows())

The switch target and the controller are separate processes (``p4ft softswitch`` or
simple_switch_grpc, and ``p4ft controller``) in the root namespace; this process only runs
Mininet and talks to the controller over its control socket, never gRPC.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from controller.edges import control
from controller.lab.kernel import kernel_router_down, kernel_router_up
from controller.lab.nodes import Bmv2Switch, LabHost, SoftSwitch, bmv2_binary
from controller.lab.topology import LabTopology, load_topology

CONTROLLER_TIMEOUT = 30.0
CHANNELS = ("netdev", "p4runtime")
PUNT_DEVICE = "s1-punt"
"""The controller's end of the CPU port's veth (the netdev punt channel); the switch's end is
``s1-cpu``, port 255 of the switch."""
LAB_LOCK = Path("/run/lock/p4ft-lab.lock")
"""One lab at a time per machine: Mininet's node and veth names (s1, h1, s1-eth1) and the
switch's gRPC port are machine-wide, so a second lab (another test run, a user's ``p4ft lab``)
waits here for the first to stop instead of tearing its links down."""


def default_target() -> str:
    return "bmv2" if bmv2_binary() is not None else "softswitch"


class Lab:
    """Start with ``start()`` (or ``with``); ``stop()`` tears everything down."""

    def __init__(self, topology: str | LabTopology = "router", target: str | None = None, *,
                 workdir: str | Path | None = None, grpc_port: int = 9559,
                 table_size: int | None = None, flowtable: dict[str, object] | None = None,
                 ruleset: str | None = None, channel: str = "netdev") -> None:
        self.topology = topology if isinstance(topology, LabTopology) else load_topology(topology)
        self.target = target or default_target()
        if self.target not in ("softswitch", "bmv2"):
            raise ValueError(f"unknown target {self.target!r} (softswitch or bmv2)")
        if self.target == "bmv2" and table_size is not None:
            raise ValueError("--table-size exists only on the softswitch; BMv2's table sizes "
                             "come from the compiled program")
        if self.target == "bmv2" and bmv2_binary() is None:
            raise RuntimeError("--target bmv2: simple_switch_grpc is not on PATH and "
                               "$BMV2_SWITCH is unset")
        if channel not in CHANNELS:
            raise ValueError(f"unknown punt channel {channel!r} ({' or '.join(CHANNELS)})")
        self.channel = channel
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="p4ft-lab-")
        self.workdir = Path(workdir or self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.control_path = self.workdir / "control.sock"
        self.config_path = self.workdir / "router.toml"
        self.grpc_port = grpc_port
        self.table_size = table_size
        self._flowtable = flowtable
        self._ruleset = ruleset if ruleset is not None else self.topology.ruleset
        self.net = None
        self.controller: subprocess.Popen | None = None
        self._lock: Any = None
        self._shims: list[subprocess.Popen] = []

    # -- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("warning")
        self._acquire_machine()
        for port in self.topology.ports:  # veths a crashed lab left ("File exists")
            subprocess.run(["ip", "link", "del", f"s1-eth{port.id}"], capture_output=True,
                           check=False)
        (self.workdir / "ruleset.nft").write_text(self._ruleset)
        punt = (f'[punt]\nchannel = "netdev"\ndevice = "{PUNT_DEVICE}"\n'
                if self.channel == "netdev" else "")
        self.config_path.write_text(self.topology.router_toml(
            f"127.0.0.1:{self.grpc_port}", 1, "ruleset.nft", self._flowtable) + punt)
        switch_cls = SoftSwitch if self.target == "softswitch" else Bmv2Switch
        params: dict[str, Any] = {"grpc_port": self.grpc_port, "log_dir": str(self.workdir),
                                  "punt_device": PUNT_DEVICE if self.channel == "netdev" else None}
        if self.target == "softswitch":
            params["table_size"] = self.table_size
        self.net = Mininet(topo=None, controller=None, host=LabHost, build=False,
                           autoSetMacs=False)
        try:
            switch = self.net.addSwitch("s1", cls=switch_cls, **params)
            for port in self.topology.ports:
                host = self.net.addHost(port.host, ip=None)
                self.net.addLink(host, switch, port2=port.id, addr1=port.host_mac)
            self.net.build()
            self.net.start()
            for port in self.topology.ports:
                self._configure_host(port)
            if self.topology.netns is not None:
                kernel_router_up(self.topology.netns, self.workdir / "ruleset.nft")
            self.start_controller()
        except BaseException:
            self.stop()
            raise

    def _acquire_machine(self) -> None:
        LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = LAB_LOCK.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"lab: another lab is running on this machine; waiting for it ({LAB_LOCK})",
                  file=sys.stderr)
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def _configure_host(self, port) -> None:
        host = self.net.get(port.host)
        intf = host.defaultIntf().name
        host.cmd(f"ip addr flush dev {intf}")
        if port.encap:
            intf = self._start_shim(host, intf, port)
        for address in port.addresses:
            host.cmd(f"ip addr add {address} dev {intf}" + (" nodad" if ":" in address else ""))
        pppoe = bool(port.encap) and port.encap[-1].startswith("pppoe")
        host.cmd(f"ip link set {intf} mtu {port.mtu - 8 if pppoe else port.mtu} up")
        if pppoe:
            peer = port.router[0].split("/")[0]  # pppd's "ip addr add LOCAL peer PEER"
            host.cmd(f"ip addr flush dev {intf}")
            host.cmd(f"ip addr add {port.addresses[0].split('/')[0]} peer {peer} dev {intf}")
            host.cmd(f"ip route add default dev {intf}")
            return
        for family in (4, 6):
            gateway = port.gateway(family)
            if gateway is not None:
                host.cmd(f"ip -{family} route add default via {gateway} dev {intf}")

    def _start_shim(self, host, lower: str, port) -> str:
        """The host's tagged / PPPoE link (controller.lab.shim) on a TAP device; the veth
        below carries the bigger frames (its MTU is raised by the tags' room)."""
        tap = f"{port.host}-tap"
        host.cmd(f"ip link set {lower} mtu {port.mtu + 64} up")
        cmd = [sys.executable, "-m", "controller.lab.shim", "--lower", lower, "--tap", tap,
               "--encap", ",".join(port.encap), "--tap-mac", port.host_mac,
               "--peer-mac", port.mac]
        shim = host.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._shims.append(shim)
        ready = shim.stdout.readline().strip()
        if ready != "READY":
            raise RuntimeError(f"shim of {port.host} did not start: {shim.stderr.read()}")
        return tap

    def start_controller(self) -> None:
        """(Re)start ``p4ft controller`` and wait until it reports itself ready."""
        log = (self.workdir / "controller.log").open("ab")
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "controller", "--config",
             str(self.config_path), "--control", str(self.control_path),
             "--state-dir", str(self.workdir / "state")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            control.wait_ready(self.control_path, CONTROLLER_TIMEOUT,
                               alive=lambda: self.controller.poll() is None)
        except control.ControlError as exc:
            raise RuntimeError(f"{exc}:\n{self.controller_log()}") from None

    def stop_controller(self) -> None:
        """SIGTERM, as a user's Ctrl-C: offloaded flows stay in hardware."""
        if self.controller is not None and self.controller.poll() is None:
            self.controller.terminate()
            try:
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait()
        self.controller = None

    def restart_switch(self) -> None:
        """Kill the P4 switch and start it again, empty, while the controller runs: the
        controller reconnects, pushes the pipeline and writes its flows again."""
        self.net.get("s1").restart()

    def stop(self) -> None:
        self.stop_controller()
        for shim in self._shims:
            shim.kill()
            shim.wait()
        self._shims.clear()
        if self.topology.netns is not None:
            kernel_router_down(self.topology.netns)
        if self.net is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self.net.stop()
            self.net = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    # -- use ---------------------------------------------------------------------------------

    def host(self, name: str):
        return self.net.get(name)

    def address(self, host: str, family: int = 4) -> str:
        return self.topology.address(host, family)

    def request(self, op: str, **kwargs: Any) -> Any:
        return control.request(op, self.control_path, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        return next(iter(self.request("snapshot").values()))

    def flows(self) -> list[dict[str, Any]]:
        return self.snapshot()["conns"]

    def stats(self) -> dict[str, Any]:
        return self.snapshot()["stats"]

    def p4ft(self, *args: str) -> str:
        """Output of a ``p4ft`` CLI command against this lab's controller."""
        result = subprocess.run([sys.executable, "-m", "controller.cli", *args,
                                 "--control", str(self.control_path)],
                                capture_output=True, text=True, check=False)
        return result.stdout + result.stderr

    def router_cmd(self, *args: str) -> str:
        """Output of a command in the kernel-mode router's namespace (``conntrack -L``...)."""
        assert self.topology.netns is not None, "not a kernel-mode lab"
        result = subprocess.run(["ip", "netns", "exec", self.topology.netns, *args],
                                capture_output=True, text=True, check=False)
        return result.stdout + result.stderr

    def controller_log(self) -> str:
        path = self.workdir / "controller.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
