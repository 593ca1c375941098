"""FlowRule ⇄ P4Runtime TableEntry.

The hot path is REPLACE: updates are written straight in protobuf wire format from bytes
precomputed per table, field and value length (see ``wire``), so an update costs a few µs
instead of ~10 µs filling upb messages or ~30 µs in a generic entity layer. Reads and
reconcile decode with upb. Values are sent in P4Runtime's canonical form (no leading zero
bytes); decoding accepts canonical and padded forms alike.
"""

from __future__ import annotations

from typing import Any

from finsy.proto import p4r

from inet import encap as l2
from ndo.api import Encap, Encaps, FlowMatch, FlowRule
from ndo.p4runtime import wire
from ndo.p4runtime.schema import ACTION_PARAMS, MATCH_FIELDS, FlowSchema, FlowTable

INSERT, MODIFY, DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE
ADDR_LEN = {4: 4, 6: 16}
_INT_NAMES = ("ingress_port", "proto", "sport", "dport", "egress_port", "nat_sport", "nat_dport",
              "mtu")


class CodecError(ValueError):
    """A rule that the flow tables cannot hold as given (a value wider than its field)."""


def canonical_int(value: int) -> bytes:
    if value < 0x10000:
        return _U16[value]
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


_U16 = [v.to_bytes((v.bit_length() + 7) // 8 or 1, "big") for v in range(0x10000)]
"""Every int field of a flow entry (ports, protocol, MTU) fits 16 bits: encode by lookup."""


def canonical_bytes(value: bytes) -> bytes:
    return value.lstrip(b"\0") or b"\0"


class FlowCodec:
    """Encodes rules for, and decodes entries of, the two flow tables of one schema."""

    def __init__(self, schema: FlowSchema, idle_timeout_ns: int = 0) -> None:
        self.schema = schema
        self._wire = {f: _TableWire(t, idle_timeout_ns) for f, t in schema.tables.items()}
        self._keys = {f: _key_template(t) for f, t in schema.tables.items()}
        self._by_table_id = {t.table_id: t for t in schema.tables.values()}

    def table_of(self, match: FlowMatch) -> FlowTable:
        try:
            return self.schema.tables[match.family]
        except KeyError:
            raise CodecError(f"no flow table for IPv{match.family}") from None

    def encode_entry(self, kind: int, rule: FlowRule) -> bytes:
        """An INSERT or MODIFY of ``rule`` as a WriteRequest ``updates`` field, on the wire.

        ``rule`` must have passed ``check``: values are not checked again here.
        """
        match, act = rule.match, rule.actions
        tw = self._wire[match.family]
        p0, p1, p2, p3, p4, p5, p6, p7 = tw.params
        v0 = canonical_int(act.egress_port)
        v1 = canonical_bytes(act.eth_src)
        v2 = canonical_bytes(act.eth_dst)
        v3 = canonical_bytes(match.src if act.nat_src is None else act.nat_src)
        v4 = canonical_bytes(match.dst if act.nat_dst is None else act.nat_dst)
        v5 = canonical_int(match.sport if act.nat_sport is None else act.nat_sport)
        v6 = canonical_int(match.dport if act.nat_dport is None else act.nat_dport)
        v7 = canonical_int(act.mtu)
        action = b"".join((tw.action_head, p0[len(v0)], v0, p1[len(v1)], v1, p2[len(v2)], v2,
                           p3[len(v3)], v3, p4[len(v4)], v4, p5[len(v5)], v5, p6[len(v6)], v6,
                           p7[len(v7)], v7))
        if tw.encap:
            action += _encap_fields(tw.push_params, act.push)
        table_action = tw.table_action_tag + wire.varint(len(action)) + action
        entry = b"".join((tw.match_bytes(match), tw.action_tag, wire.varint(len(table_action)),
                          table_action, tw.idle))
        return tw.update(kind, entry)

    def encode_delete(self, match: FlowMatch) -> bytes:
        """A DELETE of the entry keyed by ``match``, on the wire."""
        tw = self._wire[self.table_of(match).family]
        return tw.update(DELETE, tw.match_bytes(match))

    def fill_key(self, entry: p4r.TableEntry, match: FlowMatch) -> None:
        """Make ``entry`` the key-only TableEntry of ``match`` (for DELETE and reads)."""
        entry.CopyFrom(self._keys[self.table_of(match).family])
        _set_match(entry.match, match)

    def check(self, rule: FlowRule) -> None:
        """Raise CodecError if the tables cannot hold ``rule``: a value too wide, no TTL step,
        or an L2 encapsulation the program has no keys for (one compiled before issue 17)."""
        match, act = rule.match, rule.actions
        table = self.table_of(match)
        if match.encap or act.push:
            if not table.encap:
                raise CodecError("the pipeline's flow tables have no L2 encapsulation keys "
                                 "(flowtable.p4 compiled before VLAN/PPPoE support): "
                                 f"{_show(match.encap)} -> {_show(act.push)} stays in software")
            bad = l2.problem(match.encap) or l2.problem(act.push)
            if bad:
                raise CodecError(bad)
        n, mb, pb = ADDR_LEN[match.family], table.match_bits, table.param_bits
        if (act.decrement_ttl and len(match.src) == n and len(match.dst) == n
                and (act.nat_src is None or len(act.nat_src) == n)
                and (act.nat_dst is None or len(act.nat_dst) == n)
                and len(act.eth_src) == 6 and len(act.eth_dst) == 6
                and not (match.ingress_port >> mb[0] or match.proto >> mb[3]
                         or match.sport >> mb[4] or match.dport >> mb[5]
                         or act.egress_port >> pb[0] or act.mtu >> pb[7]
                         or (act.nat_sport or 0) >> pb[5] or (act.nat_dport or 0) >> pb[6])):
            return  # the common case, in one expression; below finds what is wrong
        if not act.decrement_ttl:
            raise CodecError("forward_v4/v6 always decrement the TTL")
        addr_len = ADDR_LEN[match.family]
        for name, addr in (("src", match.src), ("dst", match.dst), ("nat_src", act.nat_src),
                           ("nat_dst", act.nat_dst)):
            if addr is not None and len(addr) != addr_len:
                raise CodecError(f"{name} is {len(addr)} bytes, IPv{match.family} needs "
                                 f"{addr_len}")
        for name, mac in (("eth_src", act.eth_src), ("eth_dst", act.eth_dst)):
            if len(mac) != 6:
                raise CodecError(f"{name} is {len(mac)} bytes, a MAC has 6")
        ints = ((match.ingress_port, table.match_bits[0]), (match.proto, table.match_bits[3]),
                (match.sport, table.match_bits[4]), (match.dport, table.match_bits[5]),
                (act.egress_port, table.param_bits[0]), (act.nat_sport, table.param_bits[5]),
                (act.nat_dport, table.param_bits[6]), (act.mtu, table.param_bits[7]))
        for (value, bits), name in zip(ints, _INT_NAMES, strict=True):
            if value is not None and (value < 0 or value >> bits):
                raise CodecError(f"{name}={value} does not fit in {bits} bits")

    def match_of(self, entry: p4r.TableEntry) -> FlowMatch | None:
        """The FlowMatch of a flow-table entry; None for other tables or malformed keys."""
        table = self._by_table_id.get(entry.table_id)
        if table is None:
            return None
        by_id = {fm.field_id: fm.exact.value for fm in entry.match}
        try:
            raw = [by_id[field_id] for field_id in table.match_ids]
        except KeyError:
            return None
        addr_len = ADDR_LEN[table.family]
        if len(raw[1]) > addr_len or len(raw[2]) > addr_len:
            return None
        encaps: Encaps = ()
        if table.encap:
            i0, p0, i1, p1 = (int.from_bytes(v, "big") for v in raw[6:10])
            encaps = tuple(Encap(i, p) for i, p in ((i0, p0), (i1, p1)) if p)
        return FlowMatch(
            ingress_port=int.from_bytes(raw[0], "big"),
            family=table.family,
            src=raw[1].rjust(addr_len, b"\0"),
            dst=raw[2].rjust(addr_len, b"\0"),
            proto=int.from_bytes(raw[3], "big"),
            sport=int.from_bytes(raw[4], "big"),
            dport=int.from_bytes(raw[5], "big"),
            encap=encaps,
        )

    def has_actions_of(self, entry: p4r.TableEntry, rule: FlowRule) -> bool:
        """Does ``entry`` already carry ``rule``'s action and parameter values?"""
        table = self.table_of(rule.match)
        action = entry.action.action
        if not entry.action.HasField("action") or action.action_id != table.action_id:
            return False
        by_id = {p.param_id: int.from_bytes(p.value, "big") for p in action.params}
        return [by_id.get(i) for i in table.param_ids] == list(action_values(rule, table.encap))


def _set_match(fields: Any, match: FlowMatch) -> None:
    fields[0].exact.value = canonical_int(match.ingress_port)
    fields[1].exact.value = canonical_bytes(match.src)
    fields[2].exact.value = canonical_bytes(match.dst)
    fields[3].exact.value = canonical_int(match.proto)
    fields[4].exact.value = canonical_int(match.sport)
    fields[5].exact.value = canonical_int(match.dport)
    if len(fields) > 6:
        for i, value in enumerate(encap_ints(match.encap), 6):
            fields[i].exact.value = canonical_int(value)


def encap_ints(encaps: Encaps) -> tuple[int, int, int, int]:
    """encap0_id, encap0_proto, encap1_id, encap1_proto (or push*): zero where absent."""
    (i0, p0), (i1, p1) = (*encaps, (0, 0), (0, 0))[:2]
    return i0, p0, i1, p1


def _encap_fields(prefixes: list[list[bytes]], encaps: Encaps) -> bytes:
    """The four encapsulation fields (keys or push parameters) of ``encaps`` on the wire."""
    return b"".join(prefix[len(v)] + v for prefix, v in zip(
        prefixes, map(canonical_int, encap_ints(encaps)), strict=True))


def _show(encaps: Encaps) -> str:
    return "+".join(map(str, encaps)) or "untagged"


def action_values(rule: FlowRule, encap: bool = False) -> tuple[int, ...]:
    """forward_v4/v6 parameter values of ``rule`` in ACTION_PARAMS (+ PUSH_PARAMS when the
    program has ``encap``) order, NAT defaults resolved."""
    match, act = rule.match, rule.actions
    pushed = encap_ints(act.push) if encap else ()
    return (
        act.egress_port,
        int.from_bytes(act.eth_src, "big"),
        int.from_bytes(act.eth_dst, "big"),
        int.from_bytes(act.nat_src if act.nat_src is not None else match.src, "big"),
        int.from_bytes(act.nat_dst if act.nat_dst is not None else match.dst, "big"),
        act.nat_sport if act.nat_sport is not None else match.sport,
        act.nat_dport if act.nat_dport is not None else match.dport,
        act.mtu,
        *pushed,
    )



def _key_template(table: FlowTable) -> p4r.TableEntry:
    entry = p4r.TableEntry(table_id=table.table_id)
    for field_id in table.match_ids:
        entry.match.add(field_id=field_id).exact.value = b"\0"
    return entry


class _TableWire:
    """The constant bytes of one flow table's updates, per field and value length."""

    def __init__(self, table: FlowTable, idle_timeout_ns: int) -> None:
        self.matches = [_field_prefixes(p4r.FieldMatch, "field_id", field_id, bits, exact=True)
                        for field_id, bits in zip(table.match_ids, table.match_bits, strict=True)]
        params = [_field_prefixes(p4r.Action.Param, "param_id", param_id, bits)
                  for param_id, bits in zip(table.param_ids, table.param_bits, strict=True)]
        split = len(ACTION_PARAMS)
        self.params, self.push_params = params[:split], params[split:]
        self.encap_matches = self.matches[len(MATCH_FIELDS):]
        self.encap = table.encap
        self.table_id = wire.key(p4r.TableEntry, "table_id", wire.VARINT) + wire.varint(
            table.table_id)
        self.action_head = wire.key(p4r.Action, "action_id", wire.VARINT) + wire.varint(
            table.action_id)
        self.action_tag = wire.key(p4r.TableEntry, "action", wire.LEN)
        self.table_action_tag = wire.key(p4r.TableAction, "action", wire.LEN)
        ttl = idle_timeout_ns if table.supports_timeout else 0
        self.idle = (wire.key(p4r.TableEntry, "idle_timeout_ns", wire.VARINT) + wire.varint(ttl)
                     if ttl else b"")
        self.entry_tag = wire.key(p4r.Entity, "table_entry", wire.LEN)
        self.entity_tag = wire.key(p4r.Update, "entity", wire.LEN)
        self.update_tag = wire.key(p4r.WriteRequest, "updates", wire.LEN)
        self.types = {kind: wire.key(p4r.Update, "type", wire.VARINT) + wire.varint(kind)
                      for kind in (INSERT, MODIFY, DELETE)}

    def match_bytes(self, match: FlowMatch) -> bytes:
        m0, m1, m2, m3, m4, m5 = self.matches[: len(MATCH_FIELDS)]
        v0 = canonical_int(match.ingress_port)
        v1 = canonical_bytes(match.src)
        v2 = canonical_bytes(match.dst)
        v3 = canonical_int(match.proto)
        v4 = canonical_int(match.sport)
        v5 = canonical_int(match.dport)
        out = b"".join((self.table_id, m0[len(v0)], v0, m1[len(v1)], v1, m2[len(v2)], v2,
                        m3[len(v3)], v3, m4[len(v4)], v4, m5[len(v5)], v5))
        if self.encap:
            out += _encap_fields(self.encap_matches, match.encap)
        return out

    def update(self, kind: int, entry: bytes) -> bytes:
        varint = wire.varint
        entity_len = len(entry) + len(self.entry_tag) + len(varint(len(entry)))
        head = b"".join((self.types[kind], self.entity_tag, varint(entity_len), self.entry_tag,
                         varint(len(entry))))
        return b"".join((self.update_tag, varint(len(head) + len(entry)), head, entry))


def _field_prefixes(message: type, id_field: str, field_id: int, bits: int,
                    exact: bool = False) -> list[bytes]:
    """For each value length, the bytes before the value of a FieldMatch.exact or Action.Param.

    The prefix holds the field's own tag and length in its parent (TableEntry.match or
    Action.params), its id, and the value's tag and length.
    """
    parent = (p4r.TableEntry, "match") if exact else (p4r.Action, "params")
    prefixes = []
    for length in range((bits + 7) // 8 + 1):
        if exact:
            inner = wire.key(p4r.FieldMatch.Exact, "value", wire.LEN) + wire.varint(length)
            value_part = (wire.key(p4r.FieldMatch, "exact", wire.LEN)
                          + wire.varint(len(inner) + length) + inner)
        else:
            value_part = wire.key(p4r.Action.Param, "value", wire.LEN) + wire.varint(length)
        head = wire.key(message, id_field, wire.VARINT) + wire.varint(field_id) + value_part
        prefixes.append(wire.key(*parent, wire.LEN) + wire.varint(len(head) + length) + head)
    return prefixes
