"""P4Info schema and the P4Runtime value codec of the softswitch server.

P4Runtime names everything by numeric id and carries every value as a byte string; the interpreter
names things as the BMv2 JSON does and works with ints. This module is the translation between the
two, with the checks the spec asks for (unknown ids, values wider than their field, LPM/ternary
values with bits outside their mask). Every check raises :class:`P4RTError` with a canonical code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from finsy.proto import p4i, p4r, rpc_code

from softswitch.externs import MeterConfig

Code = int  # a google.rpc.Code value

EXACT, LPM, TERNARY, RANGE, OPTIONAL = "exact", "lpm", "ternary", "range", "optional"
_MATCH_TYPES = {
    p4i.MatchField.EXACT: EXACT,
    p4i.MatchField.LPM: LPM,
    p4i.MatchField.TERNARY: TERNARY,
    p4i.MatchField.RANGE: RANGE,
    p4i.MatchField.OPTIONAL: OPTIONAL,
}


class P4RTError(Exception):
    """A request the server refuses, with the google.rpc canonical code to report."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{rpc_code.Code.Name(self.code)}: {self.message}"


def invalid(message: str) -> P4RTError:
    return P4RTError(rpc_code.INVALID_ARGUMENT, message)


# --- values --------------------------------------------------------------------------------------


def out_of_range(message: str) -> P4RTError:
    return P4RTError(rpc_code.OUT_OF_RANGE, message)


def decode_value(data: bytes, bitwidth: int, what: str) -> int:
    """A P4Runtime byte string as an int; canonical and zero-padded forms are both accepted.

    An empty string or a value wider than ``bitwidth`` is OUT_OF_RANGE, as the spec's
    Bytestrings section (§8.3 of v1.3) says; BMv2 (PI ``bytestring_p4rt_to_pi``) answers
    INVALID_ARGUMENT for the one and takes the other as 0 (softswitch/INTERPRETER.md).
    """
    if not data:
        raise out_of_range(f"{what}: empty byte string")
    value = int.from_bytes(data, "big")
    if value >> bitwidth:
        raise out_of_range(f"{what}: value 0x{data.hex()} does not fit in {bitwidth} bits")
    return value


def encode_value(value: int) -> bytes:
    """The canonical byte string of a non-negative int (shortest form, at least one byte)."""
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


# --- schema --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSchema:
    """A match field, an action parameter or a controller-header field: id, name and width."""

    id: int
    name: str
    bitwidth: int
    match_type: str = EXACT


@dataclass(frozen=True, slots=True)
class ActionSchema:
    id: int
    name: str
    params: tuple[FieldSchema, ...]


@dataclass(frozen=True, slots=True)
class TableSchema:
    id: int
    name: str
    match_fields: tuple[FieldSchema, ...]
    action_scopes: dict[int, int]  # action id -> p4i.ActionRef scope
    const_default_action_id: int
    size: int
    supports_timeout: bool
    direct_counter_id: int | None
    direct_meter_id: int | None = None
    is_const: bool = False  # `const entries`: only the default entry and direct resources change
    # Tables with ternary, range or optional fields order entries by priority (known once: every
    # written entry asks)
    needs_priority: bool = dataclasses.field(init=False)
    all_exact: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs_priority", any(
            f.match_type in (TERNARY, RANGE, OPTIONAL) for f in self.match_fields))
        object.__setattr__(self, "all_exact", all(f.match_type == EXACT
                                                  for f in self.match_fields))


@dataclass(frozen=True, slots=True)
class ArraySchema:
    """An indexed extern instance: a counter, a meter or a register."""

    id: int
    name: str
    size: int


class P4Schema:
    """The id maps of one P4Info, built once per pipeline."""

    def __init__(self, p4info: p4i.P4Info) -> None:
        self.p4info = p4info
        self.actions: dict[int, ActionSchema] = {
            a.preamble.id: ActionSchema(
                a.preamble.id,
                a.preamble.name,
                tuple(FieldSchema(p.id, p.name, p.bitwidth) for p in a.params),
            )
            for a in p4info.actions
        }
        self.action_names = {a.name: a for a in self.actions.values()}
        direct = {c.direct_table_id: c.preamble.id for c in p4info.direct_counters}
        direct_meters = {m.direct_table_id: m.preamble.id for m in p4info.direct_meters}
        self.direct_counters: dict[int, int] = {c.preamble.id: c.direct_table_id
                                                for c in p4info.direct_counters}
        self.tables: dict[int, TableSchema] = {}
        for t in p4info.tables:
            fields = []
            for f in t.match_fields:
                if f.match_type not in _MATCH_TYPES:
                    raise invalid(f"table {t.preamble.name}: unsupported match type of {f.name}")
                fields.append(FieldSchema(f.id, f.name, f.bitwidth, _MATCH_TYPES[f.match_type]))
            self.tables[t.preamble.id] = TableSchema(
                id=t.preamble.id,
                name=t.preamble.name,
                match_fields=tuple(fields),
                action_scopes={r.id: r.scope for r in t.action_refs},
                const_default_action_id=t.const_default_action_id,
                size=t.size,
                supports_timeout=t.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL,
                direct_counter_id=direct.get(t.preamble.id),
                direct_meter_id=direct_meters.get(t.preamble.id),
                is_const=t.is_const_table,
            )
        self.counters = {c.preamble.id: ArraySchema(c.preamble.id, c.preamble.name, c.size)
                         for c in p4info.counters}
        self.registers = {r.preamble.id: ArraySchema(r.preamble.id, r.preamble.name, r.size)
                          for r in p4info.registers}
        self.meters = {m.preamble.id: ArraySchema(m.preamble.id, m.preamble.name, m.size)
                       for m in p4info.meters}
        headers = {h.preamble.name: tuple(FieldSchema(m.id, m.name, m.bitwidth) for m in h.metadata)
                   for h in p4info.controller_packet_metadata}
        self.packet_in: tuple[FieldSchema, ...] = headers.get("packet_in", ())
        self.packet_out: tuple[FieldSchema, ...] = headers.get("packet_out", ())

    def table(self, table_id: int) -> TableSchema:
        try:
            return self.tables[table_id]
        except KeyError:
            raise invalid(f"unknown table id {table_id}") from None


# --- table entries -------------------------------------------------------------------------------

MatchKey = tuple[object, ...]  # the interpreter's key: one int or pair per match field


def decode_match(table: TableSchema, matches: Sequence[p4r.FieldMatch]) -> MatchKey:
    """P4Runtime field matches as the interpreter's key, in match-field order.

    Omitted fields are don't-care (exact fields may not be omitted); don't-care values that are
    spelled out (mask 0, prefix 0, full range) are refused as the spec requires.
    """
    if table.all_exact:  # m.exact.value is b"" unless an exact match
        key = _in_order(table.match_fields, [(m.field_id, m.exact.value) for m in matches])
        if key is not None:
            return key
    given: dict[int, p4r.FieldMatch] = {}
    for m in matches:
        if m.field_id in given:
            raise invalid(f"table {table.name}: field id {m.field_id} given twice")
        given[m.field_id] = m
    unknown = set(given) - {f.id for f in table.match_fields}
    if unknown:
        raise invalid(f"table {table.name}: unknown match field id {min(unknown)}")
    return tuple(_decode_field(table, f, given.get(f.id)) for f in table.match_fields)


def _in_order(schemas: Sequence[FieldSchema], given: Sequence[tuple[int, bytes]]
              ) -> tuple[int, ...] | None:
    """The values of a batch's usual entry or action: every (id, bytes) given once, in P4Info
    order, non-empty and fitting. None for anything else, which the general path of
    decode_match or decode_action judges (and names the error of), so both paths accept and
    refuse the same writes."""
    if len(given) != len(schemas):
        return None
    values = []
    for schema, (given_id, data) in zip(schemas, given, strict=True):
        if given_id != schema.id or not data:
            return None
        value = int.from_bytes(data, "big")
        if value >> schema.bitwidth:
            return None
        values.append(value)
    return tuple(values)


def _decode_field(table: TableSchema, field: FieldSchema, m: p4r.FieldMatch | None) -> object:
    what = f"{table.name}.{field.name}"
    full = (1 << field.bitwidth) - 1
    if m is None:
        if field.match_type == EXACT:
            raise invalid(f"{what}: exact match field missing")
        return {LPM: (0, 0), TERNARY: (0, 0), RANGE: (0, full), OPTIONAL: (0, True)}[
            field.match_type]
    kind = m.WhichOneof("field_match_type")
    if kind != field.match_type:
        raise invalid(f"{what}: {kind} given for a {field.match_type} field")
    if kind == EXACT:
        return decode_value(m.exact.value, field.bitwidth, what)
    if kind == LPM:
        value = decode_value(m.lpm.value, field.bitwidth, what)
        plen = m.lpm.prefix_len
        if not 0 < plen <= field.bitwidth:
            raise invalid(f"{what}: prefix length {plen} out of 1..{field.bitwidth}")
        if value & (full >> plen):
            raise invalid(f"{what}: LPM value has bits set beyond the prefix length")
        return (value, plen)
    if kind == TERNARY:
        value = decode_value(m.ternary.value, field.bitwidth, what)
        mask = decode_value(m.ternary.mask, field.bitwidth, what)
        if mask == 0:
            raise invalid(f"{what}: a ternary mask of 0 must be omitted")
        if value & ~mask:
            raise invalid(f"{what}: ternary value has bits set outside the mask")
        return (value, mask)
    if kind == RANGE:
        low = decode_value(m.range.low, field.bitwidth, what)
        high = decode_value(m.range.high, field.bitwidth, what)
        if low > high:
            raise invalid(f"{what}: range low > high")
        if (low, high) == (0, full):
            raise invalid(f"{what}: a full range must be omitted")
        return (low, high)
    return (decode_value(m.optional.value, field.bitwidth, what), False)


def encode_match(table: TableSchema, key: MatchKey, out: p4r.TableEntry) -> p4r.TableEntry:
    """Add the interpreter's key to ``out`` as P4Runtime field matches, don't-care fields
    omitted. Fills the message in place (no intermediate messages: reads and idle sweeps encode
    tens of thousands of keys)."""
    for field, k in zip(table.match_fields, key, strict=True):
        t = field.match_type
        if t == EXACT:
            out.match.add(field_id=field.id).exact.value = encode_value(k)
        elif t == LPM:
            if k[1]:
                lpm = out.match.add(field_id=field.id).lpm
                lpm.value, lpm.prefix_len = encode_value(k[0]), k[1]
        elif t == TERNARY:
            if k[1]:
                ternary = out.match.add(field_id=field.id).ternary
                ternary.value, ternary.mask = encode_value(k[0]), encode_value(k[1])
        elif t == RANGE:
            if tuple(k) != (0, (1 << field.bitwidth) - 1):
                span = out.match.add(field_id=field.id).range
                span.low, span.high = encode_value(k[0]), encode_value(k[1])
        elif not k[1]:
            out.match.add(field_id=field.id).optional.value = encode_value(k[0])
    return out


def decode_action(table: TableSchema, actions: dict[int, ActionSchema], action: p4r.Action,
                  *, default: bool) -> tuple[str, tuple[int, ...]]:
    """A table action as (action name, params in declaration order), checked against the table."""
    scope = table.action_scopes.get(action.action_id)
    if scope is None or action.action_id not in actions:
        raise invalid(f"table {table.name}: action id {action.action_id} is not one of its actions")
    if scope == (p4i.ActionRef.TABLE_ONLY if default else p4i.ActionRef.DEFAULT_ONLY):
        # The spec (TableEntry, "Action Specification") and PI: PERMISSION_DENIED.
        where = "the default entry" if default else "an entry"
        raise P4RTError(rpc_code.PERMISSION_DENIED,
                        f"table {table.name}: action id {action.action_id} not allowed for {where}")
    schema = actions[action.action_id]
    params = _in_order(schema.params, [(p.param_id, p.value) for p in action.params])
    if params is not None:
        return schema.name, params
    given: dict[int, bytes] = {}
    for p in action.params:
        if p.param_id in given:
            raise invalid(f"action {schema.name}: param id {p.param_id} given twice")
        given[p.param_id] = p.value
    unknown = set(given) - {p.id for p in schema.params}
    if unknown:
        raise invalid(f"action {schema.name}: unknown param id {min(unknown)}")
    missing = [p.name for p in schema.params if p.id not in given]
    if missing:
        raise invalid(f"action {schema.name}: missing param {missing[0]}")
    params = tuple(decode_value(given[p.id], p.bitwidth, f"{schema.name}.{p.name}")
                   for p in schema.params)
    return schema.name, params


def encode_action(schema: ActionSchema, params: Iterable[int]) -> p4r.Action:
    return p4r.Action(
        action_id=schema.id,
        params=[p4r.Action.Param(param_id=p.id, value=encode_value(v))
                for p, v in zip(schema.params, params, strict=True)],
    )


# --- meter configs -------------------------------------------------------------------------------

UINT32_MAX, UINT64_MAX = (1 << 32) - 1, (1 << 64) - 1


def decode_meter_config(config: p4r.MeterConfig, what: str) -> MeterConfig | None:
    """A MeterConfig as a cell's rates, checked as PI's ``validate_meter_spec``; None for the
    default config (all four -1), which resets the cell as PI's ``meter_write`` does. A lone -1
    is PI's cast to the unsigned maximum: a rate or burst without limit."""
    rates = (config.cir, config.cburst, config.pir, config.pburst)
    if rates == (-1, -1, -1, -1):
        return None
    for name, value in zip(("CIR", "CBurst", "PIR", "PBurst"), rates, strict=True):
        if value < -1:
            raise invalid(f"{what}: negative meter {name}")
        if name.endswith("Burst") and value > UINT32_MAX:
            raise P4RTError(rpc_code.UNIMPLEMENTED, f"{what}: {name} too large")
    cir, pir = (UINT64_MAX if r == -1 else r for r in (config.cir, config.pir))
    cburst, pburst = (UINT32_MAX if b == -1 else b for b in (config.cburst, config.pburst))
    if cir > pir:  # BMv2's Meter::set_rate refuses it (INVALID_INFO_RATE_VALUE)
        raise invalid(f"{what}: CIR {config.cir} above PIR {config.pir}")
    return MeterConfig(cir, cburst, pir, pburst)


def encode_meter_config(config: MeterConfig, out: p4r.MeterConfig) -> None:
    """A cell's rates into ``out`` as PI reads them back: unsigned values as int64, so an
    unlimited rate reads -1 and an unlimited burst 4294967295."""
    out.cir, out.pir = (r - (1 << 64) if r >> 63 else r for r in (config.cir, config.pir))
    out.cburst, out.pburst = config.cburst, config.pburst


# --- controller headers --------------------------------------------------------------------------


def header_length(fields: Sequence[FieldSchema]) -> int:
    """Bytes a controller header takes at the front of a frame (its fields packed MSB first)."""
    return (sum(f.bitwidth for f in fields) + 7) // 8


def pack_header(fields: Sequence[FieldSchema], metadata: Iterable[p4r.PacketMetadata]) -> bytes:
    """The packet_out header bytes; fields not given are zero, as BMv2 does."""
    values: dict[int, int] = {}
    by_id = {f.id: f for f in fields}
    for m in metadata:
        field = by_id.get(m.metadata_id)
        if field is None:
            raise invalid(f"packet_out: unknown metadata id {m.metadata_id}")
        values[m.metadata_id] = decode_value(m.value, field.bitwidth, f"packet_out.{field.name}")
    bits, width = 0, 0
    for f in fields:
        bits = (bits << f.bitwidth) | values.get(f.id, 0)
        width += f.bitwidth
    pad = header_length(fields) * 8 - width
    return (bits << pad).to_bytes(header_length(fields), "big")


def unpack_header(fields: Sequence[FieldSchema], frame: bytes, metadata: Any) -> int:
    """Add the packet_in metadata carried by the first bytes of a frame to ``metadata`` (a
    repeated PacketMetadata field, filled in place); returns the header's length in bytes."""
    n = header_length(fields)
    if len(frame) < n:
        raise invalid(f"frame of {len(frame)} bytes is shorter than the packet_in header")
    bits = int.from_bytes(frame[:n], "big")
    shift = n * 8
    for f in fields:
        shift -= f.bitwidth
        value = (bits >> shift) & ((1 << f.bitwidth) - 1)
        metadata.add(metadata_id=f.id, value=encode_value(value))
    return n
