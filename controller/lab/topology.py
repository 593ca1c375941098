"""What a lab topology file declares: router ports, the host behind each, the ruleset.

Topology files live in ``mininet/<name>.py`` (not a package) and define ``TOPOLOGY``. From it
the lab derives the router TOML the controller reads (DESIGN §4.2) and each host's addresses
and default routes (the router's address on the host's port).
"""

from __future__ import annotations

import ipaddress
import runpy
from dataclasses import dataclass, field
from pathlib import Path

from ndo.p4runtime.schema import REPO

TOPOLOGY_DIR = REPO / "mininet"


@dataclass(frozen=True, slots=True)
class LabPort:
    """One switch data port with one host on its link."""

    id: int
    name: str  # the router's device name, used by nft rules and flowtables
    host: str
    router: tuple[str, ...]  # the router's addresses on this port, "10.0.1.254/24"
    addresses: tuple[str, ...]  # the host's addresses, same prefixes
    mtu: int = 1500
    # A tagged or PPPoE link (``controller.lab.shim`` syntax, outermost first: "vlan:10",
    # "802.1ad:100", "pppoe:4660"): the router's addresses go on the VLAN devices NAME.ID[.ID]
    # or the PPPoE device pppoe-NAME, and the host talks through a userspace shim.
    encap: tuple[str, ...] = ()

    @property
    def device(self) -> str:
        """The router device that holds this link's addresses."""
        name = self.name
        for item in self.encap:
            kind, _, ident = item.partition(":")
            name = f"pppoe-{self.name}" if kind == "pppoe" else f"{name}.{int(ident, 0)}"
        return name

    def subdevices_toml(self) -> list[str]:
        """The [[vlans]] / [[pppoe]] entries of this link, lowest first."""
        lines: list[str] = []
        link = self.name
        addresses = ", ".join(f'"{a}"' for a in self.router)
        for i, item in enumerate(self.encap):
            kind, _, ident = item.partition(":")
            last = i == len(self.encap) - 1
            if kind == "pppoe":
                local = ipaddress.ip_interface(self.router[0]).ip
                peer = ipaddress.ip_interface(self.addresses[0]).ip
                lines += ["[[pppoe]]", f'name = "pppoe-{self.name}"', f'link = "{link}"',
                          f"session = {int(ident, 0)}", f'peer_mac = "{self.host_mac}"',
                          f'local = "{local}"', f'peer = "{peer}"', ""]
                continue
            name = f"{link}.{int(ident, 0)}"
            lines += ["[[vlans]]", f'name = "{name}"', f'link = "{link}"',
                      f"id = {int(ident, 0)}",
                      f'protocol = "{"802.1ad" if kind == "802.1ad" else "802.1q"}"']
            lines += [f"addresses = [{addresses}]", ""] if last else [""]
            link = name
        return lines

    @property
    def mac(self) -> str:
        return f"00:00:00:00:{self.id:02x}:fe"

    @property
    def host_mac(self) -> str:
        return f"00:00:00:00:{self.id:02x}:01"

    def gateway(self, family: int) -> str | None:
        for text in self.router:
            address = ipaddress.ip_interface(text).ip
            if address.version == family:
                return str(address)
        return None


@dataclass(frozen=True, slots=True)
class DemoConnection:
    """One TCP connection of the topology's demo (``p4ft lab``): ``client`` dials ``dial``
    (``ADDRESS:PORT``; default the server's IPv4 address and ``port``), ``server`` listens on
    ``port``. The demo follows it to [HW_OFFLOAD] and prints both of its tuples."""

    title: str
    client: str
    server: str
    port: int
    dial: str | None = None


@dataclass(frozen=True, slots=True)
class LabTopology:
    description: str
    ports: tuple[LabPort, ...]
    ruleset: str
    flowtable: dict[str, object] = field(default_factory=dict)  # [flowtable] keys
    demo: tuple[DemoConnection, ...] = ()  # what the topology is for, shown by `p4ft lab`
    netns: str | None = None  # kernel mode: this Linux namespace routes, ``ruleset`` is its nft
    kernel: dict[str, object] = field(default_factory=dict)  # more [kernel] keys (offload...)

    def dial(self, connection: DemoConnection) -> tuple[str, int]:
        """The (address, port) a demo connection's client connects to."""
        if connection.dial is None:
            return self.address(connection.server), connection.port
        address, _, port = connection.dial.rpartition(":")
        return address, int(port)

    def address(self, host: str, family: int = 4) -> str:
        for text in self.port_of(host).addresses:
            if (":" in text) == (family == 6):
                return text.split("/")[0]
        raise KeyError(f"{host} has no IPv{family} address")

    def port_of(self, host: str) -> LabPort:
        for port in self.ports:
            if port.host == host:
                return port
        raise KeyError(f"no host {host!r} in this topology")

    def router_toml(self, address: str, device_id: int, ruleset_file: str,
                    flowtable: dict[str, object] | None = None) -> str:
        lines = ["[switch]", f'address = "{address}"', f"device_id = {device_id}",
                 "election_id = 1", "cpu_port = 255", ""]
        for port in self.ports:
            addresses = "" if port.encap else ", ".join(f'"{a}"' for a in port.router)
            lines += ["[[ports]]", f"id = {port.id}", f'name = "{port.name}"',
                      f'mac = "{port.mac}"', f"addresses = [{addresses}]", f"mtu = {port.mtu}", ""]
        for port in self.ports:
            lines += port.subdevices_toml()
        if self.netns is not None:
            lines += ["[kernel]", f'netns = "{self.netns}"']
            lines += [f"{k} = {_toml(v)}" for k, v in self.kernel.items()]
            lines.append("")
        else:
            lines += ["[ruleset]", f'file = "{ruleset_file}"', ""]
        settings = {**self.flowtable, **(flowtable or {})}
        if settings:
            lines.append("[flowtable]")
            lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
        return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_topology(name_or_path: str | Path) -> LabTopology:
    """``router`` (a file in mininet/) or a path to a topology file."""
    path = Path(name_or_path)
    if path.suffix != ".py":
        path = TOPOLOGY_DIR / f"{name_or_path}.py"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TOPOLOGY_DIR.glob("*.py")))
        raise ValueError(f"no topology {name_or_path!r} (known: {known})")
    topology = runpy.run_path(str(path)).get("TOPOLOGY")
    if not isinstance(topology, LabTopology):
        raise ValueError(f"{path}: defines no TOPOLOGY = LabTopology(...)")
    hosts = {port.host for port in topology.ports}
    for connection in topology.demo:
        if not {connection.client, connection.server} <= hosts:
            raise ValueError(f"{path}: demo {connection.title!r} names a host that is not in "
                             f"the topology (have: {', '.join(sorted(hosts))})")
    return topology


def topology_names() -> list[str]:
    return sorted(p.stem for p in TOPOLOGY_DIR.glob("*.py"))
