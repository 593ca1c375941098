"""Mininet nodes: hosts fit for scapy tests and the two P4 switch targets.

The switches run in the root namespace and start their target as a separate process (gRPC
threads and forks in one process deadlock), with simple_switch_grpc's flags:
``-i N@IFNAME ... --no-p4 -- --grpc-server-addr ADDR --cpu-port 255``. The controller pushes
the pipeline.

With a ``punt_device`` (the netdev punt channel, ``controller.edges.netdev``) the CPU port is a
veth instead: the switch gets ``-i 255@<name>-cpu`` and no ``--cpu-port`` (so port 255 is an
ordinary port whose frames carry packet_in / packet_out), and the controller reads the peer.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from mininet.node import Host, Switch

START_TIMEOUT = 20.0
CPU_PORT = 255
SWITCH_PORT_MTU = 9500
"""The switch's ports are hardware: their MTU is the switch's (jumbo), not the router's per-port
``mtu`` (which the controller enforces with ICMP fragmentation-needed). It is set before the
target opens the ports: BMv2 captures with libpcap, which sizes its capture from the MTU then."""


class LabHost(Host):
    """A host with checksum/segmentation offloads off (as P4Host): scapy sees real checksums."""

    def config(self, **params):
        result = super().config(**params)
        for intf in self.intfList():
            if intf.name != "lo":
                self.cmd(f"ethtool -K {intf.name} rx off tx off sg off tso off gso off gro off"
                         " >/dev/null 2>&1")
        self.cmd("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")
        return result


class P4Switch(Switch):
    """A P4Runtime target listening on ``grpc_port``; subclasses give the command line."""

    def __init__(self, name: str, grpc_port: int = 9559, device_id: int = 1,
                 log_dir: str = "/tmp", punt_device: str | None = None, **params) -> None:
        super().__init__(name, **params)
        self.grpc_port = grpc_port
        self.device_id = device_id
        self.punt_device = punt_device  # the controller's end of the CPU port's veth
        self.cpu_device = f"{name}-cpu" if punt_device else None  # the switch's end
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def target_ports(self) -> tuple[list[str], list[str]]:
        """``-i`` specs and the CPU port flag: data ports, then the CPU port's veth or the
        P4Runtime stream's CPU port."""
        cmd = [arg for spec in self.data_ports() for arg in ("-i", spec)]
        if self.cpu_device is not None:
            return [*cmd, "-i", f"{CPU_PORT}@{self.cpu_device}"], []
        return cmd, ["--cpu-port", str(CPU_PORT)]

    def start(self, controllers) -> None:
        if _listening(self.grpc_port):
            raise RuntimeError(f"{self.grpc_address} is already in use (a switch left by an "
                               "earlier lab?): stop it or choose another gRPC port")
        names = [intf.name for intf in self.intfList() if intf.name != "lo"]
        if self.cpu_device is not None:
            self.cmd(f"ip link del {self.cpu_device} >/dev/null 2>&1")  # a crashed lab's
            self.cmd(f"ip link add {self.cpu_device} type veth peer name {self.punt_device}")
            names += [self.cpu_device, self.punt_device]
        for name in names:
            self.cmd(f"sysctl -qw net.ipv6.conf.{name}.disable_ipv6=1")
            self.cmd(f"ethtool -K {name} rx off tx off sg off tso off gso off gro off"
                     " >/dev/null 2>&1")
            self.cmd(f"ip link set {name} mtu {SWITCH_PORT_MTU} up")
        self._launch("wb")

    def _launch(self, log_mode: str) -> None:
        """Start the target and wait until its gRPC port listens."""
        log = self.log_path.open(log_mode)
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(self.grpc_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"P4 switch {self.name} did not start: see {self.log_path}\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.1)

    def restart(self) -> None:
        """Kill the target (SIGKILL, as a crash: nothing is saved) and start a fresh one on the
        same ports; it comes back without a pipeline and with empty tables."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._launch("ab")

    def stop(self, deleteIntfs: bool = True) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.cpu_device is not None:
            self.cmd(f"ip link del {self.cpu_device} >/dev/null 2>&1")
        super().stop(deleteIntfs)

    def data_ports(self) -> list[str]:
        return [f"{port}@{intf.name}" for intf, port in sorted(self.ports.items(),
                                                                key=lambda item: item[1])
                if intf.name != "lo"]


class SoftSwitch(P4Switch):
    """The embedded target: ``p4ft softswitch`` on AF_PACKET sockets of the switch's veths."""

    def __init__(self, name: str, table_size: int | None = None, **params) -> None:
        super().__init__(name, **params)
        self.table_size = table_size

    def command(self) -> list[str]:
        ports, cpu = self.target_ports()
        cmd = [sys.executable, "-m", "controller.cli", "softswitch", "--no-p4",
               "--device-id", str(self.device_id), *ports]
        if self.table_size is not None:
            cmd += ["--table-size", str(self.table_size)]
        return [*cmd, "--", "--grpc-server-addr", self.grpc_address, *cpu]


class Bmv2Switch(P4Switch):
    """BMv2 ``simple_switch_grpc`` from $BMV2_SWITCH or PATH."""

    def command(self) -> list[str]:
        binary = bmv2_binary()
        if binary is None:
            raise RuntimeError("simple_switch_grpc is not installed (not on PATH and "
                               "$BMV2_SWITCH unset): use --target softswitch")
        ports, cpu = self.target_ports()
        return [binary, "--no-p4", "--device-id", str(self.device_id), "--log-console",
                "-L", "warn", *ports, "--", "--grpc-server-addr", self.grpc_address, *cpu]


def bmv2_binary() -> str | None:
    explicit = os.environ.get("BMV2_SWITCH")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    return shutil.which("simple_switch_grpc")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0
