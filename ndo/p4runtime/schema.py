"""flowtable.p4's P4Info reduced to the ids and widths the driver needs.

Every id comes from the P4Info (p4c assigns them by hashing names, so they change with the
program); names are the contract. A P4Info that lacks a name, or has a field of an unexpected
width, is a clear :class:`SchemaError` at start-up rather than a wrong write later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from finsy.proto import p4i
from google.protobuf import text_format
from google.protobuf.message import DecodeError

MATCH_FIELDS = ("ingress_port", "src_addr", "dst_addr", "protocol", "sport", "dport")
ACTION_PARAMS = ("port", "smac", "dmac", "src_addr", "dst_addr", "sport", "dport", "mtu")
# L2 encapsulation (flowtable.p4 since issue 17): appended keys and parameters. A program
# compiled before has none; the driver then refuses encapsulated flows (they stay in software).
ENCAP_MATCH_FIELDS = ("encap0_id", "encap0_proto", "encap1_id", "encap1_proto")
PUSH_PARAMS = ("push0_id", "push0_proto", "push1_id", "push1_proto")
TABLES = {4: "FtIngress.flow_v4", 6: "FtIngress.flow_v6"}
ACTIONS = {4: "FtIngress.forward_v4", 6: "FtIngress.forward_v6"}
COUNTERS = {4: "FtIngress.flow_v4_counter", 6: "FtIngress.flow_v6_counter"}
PACKET_IN, PACKET_OUT = "packet_in", "packet_out"
PUNT_METER, PUNT_DROPS = "FtIngress.punt_meter", "FtIngress.punt_drops"  # CoPP; optional

T = TypeVar("T")


class SchemaError(ValueError):
    """The P4Info does not describe the flowtable program the driver speaks to."""


@dataclass(frozen=True, slots=True)
class FlowTable:
    """One family's flow table: ids in P4Info order, bit widths alongside."""

    family: int
    table_id: int
    size: int
    supports_timeout: bool
    match_ids: tuple[int, ...]  # in MATCH_FIELDS (+ ENCAP_MATCH_FIELDS) order
    match_bits: tuple[int, ...]
    action_id: int
    param_ids: tuple[int, ...]  # in ACTION_PARAMS (+ PUSH_PARAMS) order
    param_bits: tuple[int, ...]
    counter_id: int | None
    encap: bool = False  # the table keys on, and its action pushes, L2 encapsulations


@dataclass(frozen=True, slots=True)
class PacketMetadata:
    """Controller header fields by name: (id, bitwidth)."""

    fields: dict[str, tuple[int, int]]

    def id_of(self, name: str) -> int:
        return self.fields[name][0]

    def bits_of(self, name: str) -> int:
        return self.fields[name][1]


@dataclass(frozen=True, slots=True)
class Indexed:
    """An indirect meter or counter: its id and number of cells."""

    id: int
    size: int


@dataclass(frozen=True, slots=True)
class FlowSchema:
    tables: dict[int, FlowTable]  # by family (4, 6)
    packet_in: PacketMetadata
    packet_out: PacketMetadata
    punt_meter: Indexed | None = None  # None: a pipeline from before CoPP
    punt_drops: Indexed | None = None

    def table_by_id(self, table_id: int) -> FlowTable | None:
        for table in self.tables.values():
            if table.table_id == table_id:
                return table
        return None

    @property
    def capacity(self) -> int:
        return sum(table.size for table in self.tables.values())

    @classmethod
    def from_p4info(cls, info: p4i.P4Info) -> FlowSchema:
        tables = {name: t for t in info.tables for name in _names(t.preamble)}
        actions = {name: a for a in info.actions for name in _names(a.preamble)}
        counters = {name: c for c in info.direct_counters for name in _names(c.preamble)}
        headers = {name: h for h in info.controller_packet_metadata for name in _names(h.preamble)}
        flow_tables = {}
        for family, table_name in TABLES.items():
            table = _lookup(tables, table_name, "table")
            action = _lookup(actions, ACTIONS[family], "action")
            fields = {f.name: f for f in table.match_fields}
            params = {p.name: p for p in action.params}
            missing = [n for n in MATCH_FIELDS if n not in fields]
            missing += [n for n in ACTION_PARAMS if n not in params]
            if missing:
                raise SchemaError(f"{table_name}/{ACTIONS[family]} lack {', '.join(missing)}")
            encap = _has_encap(table_name, fields, params)
            match_names = MATCH_FIELDS + (ENCAP_MATCH_FIELDS if encap else ())
            param_names = ACTION_PARAMS + (PUSH_PARAMS if encap else ())
            inexact = [n for n in match_names if fields[n].match_type != p4i.MatchField.EXACT]
            if inexact:
                raise SchemaError(f"{table_name}: {', '.join(inexact)} must be exact matches")
            counter = counters.get(COUNTERS[family])
            flow_tables[family] = FlowTable(
                family=family,
                table_id=table.preamble.id,
                size=table.size or 1024,  # p4c-bm2-ss's default size
                supports_timeout=table.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL,
                match_ids=tuple(fields[n].id for n in match_names),
                match_bits=tuple(fields[n].bitwidth for n in match_names),
                action_id=action.preamble.id,
                param_ids=tuple(params[n].id for n in param_names),
                param_bits=tuple(params[n].bitwidth for n in param_names),
                counter_id=counter.preamble.id if counter else None,
                encap=encap,
            )
        meters = {name: m for m in info.meters for name in _names(m.preamble)}
        indirect = {name: c for c in info.counters for name in _names(c.preamble)}
        meter, drops = meters.get(PUNT_METER), indirect.get(PUNT_DROPS)
        return cls(
            tables=flow_tables,
            packet_in=_metadata(_lookup(headers, PACKET_IN, "controller header")),
            packet_out=_metadata(_lookup(headers, PACKET_OUT, "controller header")),
            punt_meter=Indexed(meter.preamble.id, meter.size) if meter else None,
            punt_drops=Indexed(drops.preamble.id, drops.size) if drops else None,
        )


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What SetForwardingPipelineConfig pushes; the cookie names this exact pair of files."""

    p4info: p4i.P4Info
    device_config: bytes

    @property
    def cookie(self) -> int:
        digest = hashlib.sha256(self.p4info.SerializeToString(deterministic=True))
        digest.update(self.device_config)
        return int.from_bytes(digest.digest()[:8], "big")

    @classmethod
    def load(cls, p4info_path: str | Path, device_config_path: str | Path) -> Pipeline:
        return cls(load_p4info(p4info_path), Path(device_config_path).read_bytes())


REPO = Path(__file__).resolve().parents[2]


def load_p4info(path: str | Path) -> p4i.P4Info:
    """Read a P4Info in text (.txt, .txtpb) or binary (.bin, .pb) form."""
    path = Path(path)
    data = path.read_bytes()
    info = p4i.P4Info()
    try:
        if path.suffix in (".bin", ".pb"):
            info.ParseFromString(data)
        else:
            text_format.Parse(data.decode(), info, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError, DecodeError) as exc:
        raise SchemaError(f"{path}: not a P4Info: {exc}") from exc
    return info


def _names(preamble: p4i.Preamble) -> tuple[str, ...]:
    """A name is found by its full name or its alias (p4c's shortest unique suffix)."""
    return (preamble.name, preamble.alias) if preamble.alias else (preamble.name,)


def _lookup(by_name: dict[str, T], name: str, kind: str) -> T:
    try:
        return by_name[name]
    except KeyError:
        raise SchemaError(f"P4Info has no {kind} named {name!r}") from None


def _has_encap(table_name: str, fields: dict[str, object], params: dict[str, object]) -> bool:
    """Whether the program keys on encapsulations, from its match fields and parameters (not
    from a version number): all of them present, or none; anything between is a SchemaError."""
    present = [n for n in ENCAP_MATCH_FIELDS if n in fields]
    present += [n for n in PUSH_PARAMS if n in params]
    if not present:
        return False
    missing = [n for n in ENCAP_MATCH_FIELDS if n not in fields]
    missing += [n for n in PUSH_PARAMS if n not in params]
    if missing:
        raise SchemaError(f"{table_name}: L2 encapsulation half there, lacks {', '.join(missing)}")
    return True


def _metadata(header: p4i.ControllerPacketMetadata) -> PacketMetadata:
    return PacketMetadata({m.name: (m.id, m.bitwidth) for m in header.metadata})
