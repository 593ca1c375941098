"""The router TOML (DESIGN §4.2) loaded into frozen dataclasses, or a :class:`ConfigError`.

The keys are a contract with users' files, so unknown keys are refused (a typo must not silently
mean "default"), and every error names the file and the key: ``router.toml: ports[1].mac: not a
MAC address``. The ruleset is only located and read here;
``controller.netfilter.ruleset`` parses it.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from controller.kernel.policy import OffloadPolicy, PolicyError
from controller.netfilter.flowtable import SUBDEVICE_BASE
from inet import encap
from inet.encap import Encap
from ndo.api import PuntReason

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FinMode = Literal["closing", "teardown"]

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
IPV6_MIN_MTU = 1280
IPV4_MIN_MTU = 68


class ConfigError(ValueError):
    """A bad router configuration; the message is ``FILE: KEY: what is wrong``."""


DEFAULT_SWITCH_ADDRESS = "127.0.0.1:9559"
"""Without ``[switch] address``: simple_switch_grpc's own default, P4Runtime's IANA port on the
loopback (a switch beside its controller). The controller logs that it used it."""


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    address: str = DEFAULT_SWITCH_ADDRESS
    device_id: int = 1
    election_id: int = 1
    cpu_port: int = 255
    address_defaulted: bool = False  # no ``[switch] address`` in the file: the default is used


PPPOE_MTU = 1492  # RFC 2516 §7: 1500 minus the 8 bytes of PPPoE and PPP headers


@dataclass(frozen=True, slots=True)
class PortConfig:
    """A device of the router: a switch port, or (``link`` set) a VLAN or PPPoE device on
    another device, whose frames carry ``encap`` on ``link`` (``vlan_dev_priv`` /
    ``pppoe_fill_forward_path``). A PPPoE device is point to point: no ARP/NDP, every frame
    goes to ``peer_mac`` (the access concentrator)."""

    id: int
    name: str  # the device name nft rules and flowtables use
    mac: bytes
    addresses: tuple[IPInterface, ...] = ()
    mtu: int = 1500
    link: str | None = None
    encap: Encap | None = None
    peer_mac: bytes | None = None
    peer: IPAddress | None = None  # PPP peer address (IPCP), reachable without ARP


@dataclass(frozen=True, slots=True)
class RouteConfig:
    prefix: IPNetwork
    via: IPAddress | None = None
    port: str | None = None  # a port name


@dataclass(frozen=True, slots=True)
class NeighborConfig:
    address: IPAddress
    mac: bytes
    port: str


@dataclass(frozen=True, slots=True)
class RulesetConfig:
    """The nft ruleset text and where it came from (for ``FILE:LINE:COL`` errors)."""

    text: str
    file: Path | None = None  # None when given inline as ``text``
    source: str = ""  # the name errors should use


@dataclass(frozen=True, slots=True)
class FlowtableConfig:
    tcp_timeout: int = 30
    udp_timeout: int = 30
    fin_mode: FinMode = "closing"
    # Capacity policy (controller.netfilter.capacity): only flows that carried this much through the
    # software fast path are offered to the hardware; 0 offers every flow at once.
    offload_min_packets: int = 0
    offload_min_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ConntrackConfig:
    max: int = 65536  # like nf_conntrack_max: NEW connections beyond it are refused


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """``[kernel]``: a Linux router namespace is the slow path (``controller.kernel``)."""

    netns: str
    offload: tuple[str, ...] = ("tcp", "udp")
    match: tuple[str, ...] = ()  # nft match expressions; any of them selects a connection


@dataclass(frozen=True, slots=True)
class Policer:
    """One punt reason's share of the controller: ``rate_pps`` packets/s, ``burst`` packets."""

    rate_pps: int
    burst: int


@dataclass(frozen=True, slots=True)
class PuntConfig:
    """Control-plane policing (``[punt]``): the switch drops punts beyond these rates.

    Misses (new flows) and exceptions (every other reason) are policed apart, so a flood of one
    kind leaves the other its share; ``reasons`` overrides single reasons.
    """

    miss: Policer
    exception: Policer
    reasons: tuple[tuple[PuntReason, Policer], ...] = ()

    def policers(self) -> dict[PuntReason, Policer]:
        """The policer of every punt reason."""
        out = {r: self.miss if r is PuntReason.MISS else self.exception
               for r in PuntReason if r is not PuntReason.NONE}
        out.update(self.reasons)
        return out


@dataclass(frozen=True, slots=True)
class PuntChannelConfig:
    """``[punt] channel``: how punts travel (``controller.edges.punt``): ``"p4runtime"`` (the
    P4Runtime stream, for a switch elsewhere) or ``"netdev"`` (the CPU port as ``device``)."""

    channel: Literal["p4runtime", "netdev"] = "p4runtime"
    device: str = ""


@dataclass(frozen=True, slots=True)
class RouterConfig:
    switch: SwitchConfig
    ports: tuple[PortConfig, ...]
    routes: tuple[RouteConfig, ...] = ()
    neighbors: tuple[NeighborConfig, ...] = ()
    ruleset: RulesetConfig | None = None
    flowtable: FlowtableConfig = FlowtableConfig()
    conntrack: ConntrackConfig = ConntrackConfig()
    punt: PuntConfig | None = None  # None: no policing configured
    punt_channel: PuntChannelConfig = PuntChannelConfig()
    path: Path | None = None
    kernel: KernelConfig | None = None
    subdevices: tuple[PortConfig, ...] = ()  # [[vlans]] and [[pppoe]], in link order

    @property
    def devices(self) -> tuple[PortConfig, ...]:
        """Every device the router has: switch ports, then VLAN / PPPoE devices."""
        return self.ports + self.subdevices

    def port_by_name(self, name: str) -> PortConfig | None:
        return next((p for p in self.devices if p.name == name), None)

    def port_by_id(self, port_id: int) -> PortConfig | None:
        return next((p for p in self.devices if p.id == port_id), None)


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a router TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (toml.io, "Spec")
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start}): a TOML file is UTF-8") from None
    return parse_config(text, name=str(path), base_dir=path.parent, path=path)


def parse_config(
    text: str, *, name: str = "router.toml", base_dir: Path | None = None, path: Path | None = None
) -> RouterConfig:
    """Validate TOML text; ``name`` prefixes errors, ``base_dir`` anchors ``ruleset.file``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{name}: arrays or inline tables nested too deeply (a router "
                          "config nests a few levels at most)") from None
    return _Loader(name, base_dir or Path(".")).router(doc, path)


T = TypeVar("T")


class _Loader:
    """Walks the document, keeping the file name for error messages."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.base_dir = base_dir

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.name}: {key}: {message}")

    # -- generic field access -------------------------------------------------------------

    def table(self, doc: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        self.only(value, key, allowed)
        return value

    def array(self, doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"must be an array of tables ([[{key}]])")
        return value

    def only(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                prefix = f"{where}." if where else ""
                raise self.error(f"{prefix}{key}", "unknown key")

    def get(
        self,
        table: dict[str, Any],
        where: str,
        key: str,
        kind: type[T],
        default: T | None = None,
        *,
        required: bool = False,
    ) -> T:
        full = f"{where}.{key}"
        if key not in table:
            if required:
                raise self.error(full, "missing")
            return default  # type: ignore[return-value]
        value = table[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise self.error(full, f"must be {_KIND_NAMES.get(kind, kind.__name__)}")
        return value

    def convert(self, key: str, value: str, parse: Callable[[str], T], what: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(key, f"{what}: {exc}") from exc

    def int_range(
        self,
        table: dict[str, Any],
        where: str,
        key: str,
        default: int | None,
        low: int,
        high: int,
        *,
        required: bool = False,
    ) -> int:
        value = self.get(table, where, key, int, default, required=required)
        if not low <= value <= high:
            raise self.error(f"{where}.{key}", f"must be between {low} and {high}, not {value}")
        return value

    # -- sections -------------------------------------------------------------------------

    def router(self, doc: dict[str, Any], path: Path | None) -> RouterConfig:
        self.only(
            doc, "",
            {"switch", "ports", "routes", "neighbors", "ruleset", "flowtable", "conntrack", "punt",
             "kernel", "vlans", "pppoe"},
        )
        switch = self.switch(doc)
        ports = tuple(self.port(p, f"ports[{i}]") for i, p in enumerate(self.array(doc, "ports")))
        self.check_ports(ports, switch)
        subdevices = self.subdevices(doc, ports)
        devices = ports + subdevices
        names = {p.name for p in devices}
        routes = tuple(
            self.route(r, f"routes[{i}]", devices)
            for i, r in enumerate(self.array(doc, "routes"))
        )
        neighbors = tuple(
            self.neighbor(n, f"neighbors[{i}]", names)
            for i, n in enumerate(self.array(doc, "neighbors"))
        )
        kernel = self.kernel(doc)
        if kernel is not None and subdevices:
            # the kernel mode's router is a real namespace: VLAN and PPPoE devices would need
            # the 8021Q and PPP modules, which the lab kernels lack (README "Kernel mode")
            raise self.error("vlans" if doc.get("vlans") else "pppoe",
                             "VLAN/PPPoE devices need 8021Q/PPP in the kernel; kernel mode "
                             "cannot create them (the mirror can: drop [kernel])")
        return RouterConfig(
            switch=switch,
            ports=ports,
            routes=routes,
            neighbors=neighbors,
            ruleset=self.ruleset(doc),
            flowtable=self.flowtable(doc),
            conntrack=self.conntrack(doc),
            punt=self.punt(doc),
            punt_channel=self.punt_channel(doc, names),
            path=path,
            kernel=kernel,
            subdevices=subdevices,
        )

    def switch(self, doc: dict[str, Any]) -> SwitchConfig:
        t = self.table(doc, "switch", {"address", "device_id", "election_id", "cpu_port"})
        address = self.get(t, "switch", "address", str, DEFAULT_SWITCH_ADDRESS)
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise self.error("switch.address", f"must be HOST:PORT, not {address!r}")
        return SwitchConfig(
            address=address,
            device_id=self.int_range(t, "switch", "device_id", 1, 0, 2**64 - 1),
            election_id=self.int_range(t, "switch", "election_id", 1, 1, 2**128 - 1),
            cpu_port=self.int_range(t, "switch", "cpu_port", 255, 0, 2**32 - 1),
            address_defaulted="address" not in t,
        )

    def port(self, t: dict[str, Any], where: str) -> PortConfig:
        self.only(t, where, {"id", "name", "mac", "addresses", "mtu"})
        port_id = self.int_range(t, where, "id", None, 1, 2**32 - 1, required=True)
        name = self.device_name(t, where)
        mac = self.mac(self.get(t, where, "mac", str, required=True), f"{where}.mac")
        addresses = self.get(t, where, "addresses", list, [])
        interfaces = tuple(
            self.interface(a, f"{where}.addresses[{i}]") for i, a in enumerate(addresses)
        )
        mtu = self.int_range(t, where, "mtu", 1500, IPV4_MIN_MTU, 65535)
        if mtu < IPV6_MIN_MTU and any(i.version == 6 for i in interfaces):
            raise self.error(f"{where}.mtu", f"IPv6 needs at least {IPV6_MIN_MTU}, not {mtu}")
        return PortConfig(port_id, name, mac, interfaces, mtu)

    def check_ports(self, ports: tuple[PortConfig, ...], switch: SwitchConfig) -> None:
        if not ports:
            raise self.error("ports", "at least one [[ports]] entry is needed")
        seen_ids: set[int] = set()
        seen_names: set[str] = set()
        seen_addrs: set[IPAddress] = set()
        for i, port in enumerate(ports):
            where = f"ports[{i}]"
            if port.id in seen_ids:
                raise self.error(f"{where}.id", f"duplicate port id {port.id}")
            if port.id == switch.cpu_port:
                raise self.error(f"{where}.id", f"{port.id} is the CPU port")
            if port.name in seen_names:
                raise self.error(f"{where}.name", f"duplicate port name {port.name!r}")
            for j, iface in enumerate(port.addresses):
                if iface.ip in seen_addrs:
                    raise self.error(f"{where}.addresses[{j}]", f"duplicate address {iface.ip}")
                seen_addrs.add(iface.ip)
            seen_ids.add(port.id)
            seen_names.add(port.name)

    def subdevices(
        self, doc: dict[str, Any], ports: tuple[PortConfig, ...]
    ) -> tuple[PortConfig, ...]:
        """``[[vlans]]`` then ``[[pppoe]]``: each on a ``link`` defined before it, with its
        encapsulation chain down to a switch port one the kernel flowtable can carry (at most
        two headers, an inner tag 802.1Q, PPPoE innermost), unique per link."""
        devices = {p.name: p for p in ports}
        chains: dict[str, tuple[Encap, ...]] = {p.name: () for p in ports}
        seen: set[tuple[str, Encap]] = set()
        out: list[PortConfig] = []
        for kind in ("vlans", "pppoe"):
            for i, t in enumerate(self.array(doc, kind)):
                where = f"{kind}[{i}]"
                dev = (self.vlan(t, where, devices) if kind == "vlans"
                       else self.pppoe(t, where, devices))
                dev = replace(dev, id=SUBDEVICE_BASE + len(out))
                assert dev.link is not None and dev.encap is not None
                if dev.name in devices:
                    raise self.error(f"{where}.name", f"duplicate device name {dev.name!r}")
                if (dev.link, dev.encap) in seen:
                    raise self.error(where, f"{dev.link} already has {dev.encap}")
                chain = (dev.encap, *chains[dev.link])  # outermost last on the way down
                bad = encap.problem(tuple(reversed(chain)))
                if bad:
                    raise self.error(where, f"{dev.name} over {dev.link}: {bad}")
                for iface in dev.addresses:
                    if any(iface.ip == a.ip for d in devices.values() for a in d.addresses):
                        raise self.error(f"{where}.addresses", f"duplicate address {iface.ip}")
                seen.add((dev.link, dev.encap))
                devices[dev.name] = dev
                chains[dev.name] = chain
                out.append(dev)
        return tuple(out)

    def link(self, t: dict[str, Any], where: str, devices: dict[str, PortConfig]) -> PortConfig:
        name = self.get(t, where, "link", str, required=True)
        if name not in devices:
            raise self.error(f"{where}.link", f"no device {name!r} defined before it")
        return devices[name]

    def device_name(self, t: dict[str, Any], where: str) -> str:
        name = self.get(t, where, "name", str, required=True)
        if not _is_device_name(name):
            raise self.error(f"{where}.name", f"not a device name: {name!r}")
        return name

    def vlan(self, t: dict[str, Any], where: str, devices: dict[str, PortConfig]) -> PortConfig:
        """``ip link add link LINK name NAME type vlan id ID [protocol 802.1ad]``."""
        self.only(t, where, {"name", "link", "id", "protocol", "mac", "addresses", "mtu"})
        name = self.device_name(t, where)
        link = self.link(t, where, devices)
        vid = self.int_range(t, where, "id", None, 1, 4094, required=True)
        protocol = self.get(t, where, "protocol", str, "802.1q").lower()
        tpid = {"802.1q": encap.ETH_P_8021Q, "802.1ad": encap.ETH_P_8021AD}.get(protocol)
        if tpid is None:
            raise self.error(f"{where}.protocol", f"802.1q or 802.1ad, not {protocol!r}")
        mac = self.mac(self.get(t, where, "mac", str), f"{where}.mac") if "mac" in t else link.mac
        addresses = self.get(t, where, "addresses", list, [])
        interfaces = tuple(
            self.interface(a, f"{where}.addresses[{i}]") for i, a in enumerate(addresses)
        )
        mtu = self.int_range(t, where, "mtu", link.mtu, IPV4_MIN_MTU, link.mtu)
        return PortConfig(0, name, mac, interfaces, mtu, link.name, Encap(vid, tpid))

    def pppoe(self, t: dict[str, Any], where: str, devices: dict[str, PortConfig]) -> PortConfig:
        """An up PPPoE session as pppd leaves it (discovery, LCP and IPCP are pppd's job):
        the session id, the access concentrator's MAC, the negotiated addresses."""
        self.only(t, where, {"name", "link", "session", "peer_mac", "local", "peer",
                             "addresses", "mtu"})
        name = self.device_name(t, where)
        link = self.link(t, where, devices)
        session = self.int_range(t, where, "session", None, 1, 0xFFFE, required=True)
        peer_mac = self.mac(self.get(t, where, "peer_mac", str, required=True),
                            f"{where}.peer_mac")
        local = self.address(self.get(t, where, "local", str, required=True), f"{where}.local")
        peer = self.address(self.get(t, where, "peer", str, required=True), f"{where}.peer")
        if local.version != 4 or peer.version != 4:
            raise self.error(where, "local and peer are the IPCP (IPv4) addresses")
        extra = self.get(t, where, "addresses", list, [])
        interfaces = (
            ipaddress.ip_interface(f"{local}/32"),
            *(self.interface(a, f"{where}.addresses[{i}]") for i, a in enumerate(extra)),
        )
        mtu = self.int_range(t, where, "mtu", min(PPPOE_MTU, link.mtu - 8), IPV4_MIN_MTU,
                             link.mtu - 8)
        return PortConfig(0, name, link.mac, interfaces, mtu, link.name,
                          Encap(session, encap.ETH_P_PPP_SES), peer_mac, peer)

    def route(self, t: dict[str, Any], where: str, ports: tuple[PortConfig, ...]) -> RouteConfig:
        self.only(t, where, {"prefix", "via", "port"})
        prefix = self.convert(
            f"{where}.prefix",
            self.get(t, where, "prefix", str, required=True),
            ipaddress.ip_network,
            "not a prefix",
        )
        via = port = None
        if "via" in t:
            via = self.address(self.get(t, where, "via", str), f"{where}.via")
            if via.version != prefix.version:
                raise self.error(f"{where}.via", f"IPv{via.version} next hop for {prefix}")
        if "port" in t:
            names = {p.name for p in ports}
            port = self.port_name(self.get(t, where, "port", str), f"{where}.port", names)
        if via is None and port is None:
            raise self.error(where, "needs 'via' (a next hop) or 'port'")
        if via is not None:
            onlink = [p for p in ports if port in (None, p.name)]
            if not any(via in iface.network for p in onlink for iface in p.addresses) and not any(
                via == p.peer for p in onlink
            ):
                raise self.error(f"{where}.via", f"{via} is not on a connected network")
        return RouteConfig(prefix, via, port)

    def neighbor(self, t: dict[str, Any], where: str, names: set[str]) -> NeighborConfig:
        self.only(t, where, {"address", "mac", "port"})
        return NeighborConfig(
            address=self.address(
                self.get(t, where, "address", str, required=True), f"{where}.address"
            ),
            mac=self.mac(self.get(t, where, "mac", str, required=True), f"{where}.mac"),
            port=self.port_name(
                self.get(t, where, "port", str, required=True), f"{where}.port", names
            ),
        )

    def ruleset(self, doc: dict[str, Any]) -> RulesetConfig | None:
        if "ruleset" not in doc:
            return None
        t = self.table(doc, "ruleset", {"file", "text"})
        if ("file" in t) == ("text" in t):
            raise self.error("ruleset", "needs exactly one of 'file' or 'text'")
        if "text" in t:
            return RulesetConfig(
                self.get(t, "ruleset", "text", str), source=f"{self.name}:ruleset.text"
            )
        file = self.base_dir / self.get(t, "ruleset", "file", str)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, a NUL in the name
            raise self.error("ruleset.file", f"cannot read {file}: {exc}") from exc
        return RulesetConfig(text, file=file, source=str(file))

    def flowtable(self, doc: dict[str, Any]) -> FlowtableConfig:
        t = self.table(
            doc,
            "flowtable",
            {"tcp_timeout", "udp_timeout", "fin_mode", "offload_min_packets", "offload_min_bytes"},
        )
        fin_mode = self.get(t, "flowtable", "fin_mode", str, "closing")
        if fin_mode not in ("closing", "teardown"):
            raise self.error(
                "flowtable.fin_mode", f"must be 'closing' or 'teardown', not {fin_mode!r}"
            )
        return FlowtableConfig(
            tcp_timeout=self.int_range(t, "flowtable", "tcp_timeout", 30, 1, 2**31 - 1),
            udp_timeout=self.int_range(t, "flowtable", "udp_timeout", 30, 1, 2**31 - 1),
            fin_mode=fin_mode,  # type: ignore[arg-type]
            offload_min_packets=self.int_range(
                t, "flowtable", "offload_min_packets", 0, 0, 2**63 - 1
            ),
            offload_min_bytes=self.int_range(t, "flowtable", "offload_min_bytes", 0, 0, 2**63 - 1),
        )

    def conntrack(self, doc: dict[str, Any]) -> ConntrackConfig:
        t = self.table(doc, "conntrack", {"max"})
        return ConntrackConfig(max=self.int_range(t, "conntrack", "max", 65536, 1, 2**31 - 1))

    def kernel(self, doc: dict[str, Any]) -> KernelConfig | None:
        if "kernel" not in doc:
            return None
        t = self.table(doc, "kernel", {"netns", "offload", "match"})
        if "ruleset" in doc:
            raise self.error("ruleset", "kernel mode filters with the namespace's own nft "
                             "ruleset (load it with nft -f there)")
        for key in ("offload_min_packets", "offload_min_bytes"):
            if doc.get("flowtable", {}).get(key):
                raise self.error(f"flowtable.{key}", "kernel mode has no software fast path "
                                 "to count a flow's packets before offload")
        netns = self.get(t, "kernel", "netns", str, required=True)
        offload = self.get(t, "kernel", "offload", list, ["tcp", "udp"])
        match = self.get(t, "kernel", "match", list, [])
        if not all(isinstance(v, str) for v in offload + match):
            raise self.error("kernel", "offload and match must be arrays of strings")
        try:
            OffloadPolicy(tuple(offload), tuple(match))
        except PolicyError as exc:
            raise self.error("kernel", str(exc)) from None
        return KernelConfig(netns, tuple(offload), tuple(match))

    def punt(self, doc: dict[str, Any]) -> PuntConfig | None:
        if "punt" not in doc:
            return None
        t = self.table(doc, "punt", {"rate_pps", "burst", "exception_rate_pps",
                                     "exception_burst", "reasons", "channel", "device"})
        if not {"rate_pps", "burst", "exception_rate_pps", "exception_burst", "reasons"} & set(t):
            return None  # only the channel is configured
        miss = self.policer(t, "punt", "", required=True)
        exception = self.policer(t, "punt", "exception_", default=miss)
        names = {r.name.lower(): r for r in PuntReason if r is not PuntReason.NONE}
        reasons = []
        overrides = t.get("reasons", {})
        if not isinstance(overrides, dict):
            raise self.error("punt.reasons", "must be a table")
        for name in overrides:
            if name not in names:
                raise self.error(f"punt.reasons.{name}",
                                 f"not a punt reason (known: {', '.join(names)})")
        for name, value in overrides.items():
            where = f"punt.reasons.{name}"
            if not isinstance(value, dict):
                raise self.error(where, "must be a table: { rate_pps = N, burst = B }")
            self.only(value, where, {"rate_pps", "burst"})
            reasons.append((names[name], self.policer(value, where, "", required=True)))
        return PuntConfig(miss, exception, tuple(reasons))

    def punt_channel(self, doc: dict[str, Any], ports: set[str]) -> PuntChannelConfig:
        t = doc.get("punt", {})
        channel = self.get(t, "punt", "channel", str, "p4runtime")
        if channel not in ("p4runtime", "netdev"):
            raise self.error("punt.channel", f"must be 'p4runtime' or 'netdev', not {channel!r}")
        device = self.get(t, "punt", "device", str, "")
        if channel == "netdev" and not device:
            raise self.error("punt.device", "the netdev channel needs the CPU port's device")
        if device and not _is_device_name(device):
            raise self.error("punt.device", f"not a device name: {device!r}")
        if device and channel != "netdev":
            raise self.error("punt.device", "only the netdev channel reads a device")
        if device in ports:
            raise self.error("punt.device", f"{device!r} is a data port's name")
        return PuntChannelConfig(channel, device)  # type: ignore[arg-type]

    def policer(self, t: dict[str, Any], where: str, prefix: str, *, required: bool = False,
                default: Policer | None = None) -> Policer:
        """``{prefix}rate_pps`` and ``{prefix}burst``: both ≥ 1 (a rate of 0 would cut the
        controller off from that reason entirely)."""
        rate = self.int_range(t, where, f"{prefix}rate_pps", default and default.rate_pps,
                              1, 2**31 - 1, required=required)
        burst = self.int_range(t, where, f"{prefix}burst", default and default.burst, 1,
                               2**31 - 1, required=required)
        return Policer(rate, burst)

    # -- value types ----------------------------------------------------------------------

    def mac(self, value: str, key: str) -> bytes:
        if not _MAC_RE.match(value):
            raise self.error(key, f"not a MAC address: {value!r}")
        mac = bytes.fromhex(value.replace(":", "").replace("-", ""))
        if mac[0] & 1:
            raise self.error(key, f"not a unicast MAC address: {value!r}")
        return mac

    def address(self, value: str, key: str) -> IPAddress:
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            raise self.error(key, f"not an IP address: {value!r}") from None

    def interface(self, value: object, key: str) -> IPInterface:
        if not isinstance(value, str) or "/" not in value:
            raise self.error(key, f"must be ADDRESS/PREFIXLEN, not {value!r}")
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            raise self.error(key, f"not an address with prefix length: {value!r}") from None
        if iface.ip.is_multicast or iface.ip.is_unspecified:
            raise self.error(key, f"not a unicast address: {value!r}")
        reserved = _subnet_reserved(iface)
        if reserved:
            raise self.error(key, f"{iface.ip} is {reserved} of {iface.network}, not a host "
                             "address")
        return iface

    def port_name(self, value: str, key: str, names: set[str]) -> str:
        if value not in names:
            raise self.error(key, f"no port named {value!r}")
        return value


def _is_device_name(name: str) -> bool:
    """A device name as ports, VLAN / PPPoE devices and the punt device check it: 1 to
    IFNAMSIZ - 1 (15) characters, no whitespace or slash (as ``dev_valid_name``)."""
    return bool(name) and len(name) <= 15 and not any(c.isspace() or c == "/" for c in name)


def _subnet_reserved(iface: IPInterface) -> str | None:
    """What ``iface``'s address is if its subnet reserves it, else None.

    Linux accepts these (``ip addr add 10.0.1.0/24`` works on 6.x, which since the IPv4
    unicast-extensions change no longer installs a broadcast route for the network address),
    but as a router's gateway they break its hosts: many stacks (older Linux, BSDs, Windows)
    still treat the IPv4 network address as a broadcast, the IPv4 broadcast address is the
    directed broadcast (RTN_BROADCAST, which the router's own ``is_directed_broadcast``
    drops), and the IPv6 address with an all-zero interface id is the Subnet-Router anycast
    address (RFC 4291 §2.6.1) that Linux joins itself on a forwarding interface
    (``addrconf_join_anycast``). Point-to-point prefixes (/31, RFC 3021; /127, RFC 6164) and
    single addresses have no reserved addresses.
    """
    net = iface.network
    if iface.version == 4 and net.prefixlen < 31:
        if iface.ip == net.network_address:
            return "the network address"
        if iface.ip == net.broadcast_address:
            return "the broadcast address"
    if iface.version == 6 and net.prefixlen < 127 and iface.ip == net.network_address:
        return "the Subnet-Router anycast address (RFC 4291 §2.6.1)"
    return None


_KIND_NAMES = {int: "an integer", str: "a string", list: "an array", dict: "a table"}
