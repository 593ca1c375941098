"""FlowRule ⇄ P4Runtime TableEntry, built straight into upb messages.

The hot path is REPLACE: a prepared template per family (ids, idle timeout, field layout) is
copied into the request with one ``CopyFrom`` and only the value bytes are set, so an update
costs a few µs instead of the ~30 µs of a generic entity layer. Values are sent in P4Runtime's
canonical form (no leading zero bytes); decoding accepts canonical and padded forms alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finsy.proto import p4r

from ndo.api import FlowMatch, FlowRule
from ndo.p4runtime.schema import FlowSchema, FlowTable

INSERT, MODIFY, DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE
ADDR_LEN = {4: 4, 6: 16}
_VALUE_NAMES = ("ingress_port", "src", "dst", "proto", "sport", "dport", "egress_port", "eth_src",
                "eth_dst", "nat_src", "nat_dst", "nat_sport", "nat_dport", "mtu")


class CodecError(ValueError):
    """A rule that the flow tables cannot hold as given (a value wider than its field)."""


def canonical_int(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def canonical_bytes(value: bytes) -> bytes:
    return value.lstrip(b"\0") or b"\0"


class FlowCodec:
    """Encodes rules for, and decodes entries of, the two flow tables of one schema."""

    def __init__(self, schema: FlowSchema, idle_timeout_ns: int = 0) -> None:
        self.schema = schema
        self._templates = {f: self._template(t, idle_timeout_ns) for f, t in schema.tables.items()}
        self._keys = {f: self._template(t, 0, with_action=False) for f, t in schema.tables.items()}
        self._by_table_id = {t.table_id: t for t in schema.tables.values()}

    def table_of(self, match: FlowMatch) -> FlowTable:
        try:
            return self.schema.tables[match.family]
        except KeyError:
            raise CodecError(f"no flow table for IPv{match.family}") from None

    def add_entry(self, updates: Any, kind: int, rule: FlowRule) -> None:
        """Append an INSERT or MODIFY of ``rule`` to a WriteRequest's ``updates``."""
        match, act = rule.match, rule.actions
        update = updates.add()
        update.CopyFrom(self._templates[self.table_of(match).family])
        update.type = kind
        entry = update.entity.table_entry
        _set_match(entry.match, match)
        params = entry.action.action.params
        params[0].value = canonical_int(act.egress_port)
        params[1].value = canonical_bytes(act.eth_src)
        params[2].value = canonical_bytes(act.eth_dst)
        params[3].value = canonical_bytes(act.nat_src if act.nat_src is not None else match.src)
        params[4].value = canonical_bytes(act.nat_dst if act.nat_dst is not None else match.dst)
        params[5].value = canonical_int(act.nat_sport if act.nat_sport is not None else match.sport)
        params[6].value = canonical_int(act.nat_dport if act.nat_dport is not None else match.dport)
        params[7].value = canonical_int(act.mtu)

    def add_delete(self, updates: Any, match: FlowMatch) -> None:
        """Append a DELETE of the entry keyed by ``match``."""
        update = updates.add()
        update.type = DELETE
        self.fill_key(update.entity.table_entry, match)

    def fill_key(self, entry: p4r.TableEntry, match: FlowMatch) -> None:
        """Make ``entry`` the key-only TableEntry of ``match`` (for DELETE and reads)."""
        entry.CopyFrom(self._keys[self.table_of(match).family].entity.table_entry)
        _set_match(entry.match, match)

    def check(self, rule: FlowRule) -> None:
        """Raise CodecError if the tables cannot hold ``rule``: a value too wide, or no TTL step."""
        table = self.table_of(rule.match)
        if not rule.actions.decrement_ttl:
            raise CodecError("forward_v4/v6 always decrement the TTL")
        values = (*_match_values(rule.match), *action_values(rule))
        widths = (*table.match_bits, *table.param_bits)
        for name, value, bits in zip(_VALUE_NAMES, values, widths, strict=True):
            if value < 0 or value.bit_length() > bits:
                raise CodecError(f"{name}={value} does not fit in {bits} bits")
        addr_len = ADDR_LEN[rule.match.family]
        act = rule.actions
        for name, addr in (("src", rule.match.src), ("dst", rule.match.dst),
                           ("nat_src", act.nat_src), ("nat_dst", act.nat_dst)):
            if addr is not None and len(addr) != addr_len:
                raise CodecError(f"{name} is {len(addr)} bytes, IPv{rule.match.family} needs "
                                 f"{addr_len}")
        for name, mac in (("eth_src", act.eth_src), ("eth_dst", act.eth_dst)):
            if len(mac) != 6:
                raise CodecError(f"{name} is {len(mac)} bytes, a MAC has 6")

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
        return FlowMatch(
            ingress_port=int.from_bytes(raw[0], "big"),
            family=table.family,
            src=raw[1].rjust(addr_len, b"\0"),
            dst=raw[2].rjust(addr_len, b"\0"),
            proto=int.from_bytes(raw[3], "big"),
            sport=int.from_bytes(raw[4], "big"),
            dport=int.from_bytes(raw[5], "big"),
        )

    def has_actions_of(self, entry: p4r.TableEntry, rule: FlowRule) -> bool:
        """Does ``entry`` already carry ``rule``'s action and parameter values?"""
        table = self.table_of(rule.match)
        action = entry.action.action
        if not entry.action.HasField("action") or action.action_id != table.action_id:
            return False
        by_id = {p.param_id: int.from_bytes(p.value, "big") for p in action.params}
        return [by_id.get(i) for i in table.param_ids] == list(action_values(rule))

    @staticmethod
    def _template(table: FlowTable, idle_timeout_ns: int, with_action: bool = True) -> p4r.Update:
        entry = p4r.TableEntry(table_id=table.table_id)
        for field_id in table.match_ids:
            entry.match.add(field_id=field_id).exact.value = b"\0"
        if with_action:
            action = entry.action.action
            action.action_id = table.action_id
            for param_id in table.param_ids:
                action.params.add(param_id=param_id, value=b"\0")
            if table.supports_timeout and idle_timeout_ns:
                entry.idle_timeout_ns = idle_timeout_ns
        return p4r.Update(entity=p4r.Entity(table_entry=entry))


def _set_match(fields: Any, match: FlowMatch) -> None:
    fields[0].exact.value = canonical_int(match.ingress_port)
    fields[1].exact.value = canonical_bytes(match.src)
    fields[2].exact.value = canonical_bytes(match.dst)
    fields[3].exact.value = canonical_int(match.proto)
    fields[4].exact.value = canonical_int(match.sport)
    fields[5].exact.value = canonical_int(match.dport)


def _match_values(match: FlowMatch) -> Sequence[int]:
    return (match.ingress_port, int.from_bytes(match.src, "big"), int.from_bytes(match.dst, "big"),
            match.proto, match.sport, match.dport)


def action_values(rule: FlowRule) -> tuple[int, ...]:
    """forward_v4/v6 parameter values of ``rule`` in ACTION_PARAMS order, NAT defaults resolved."""
    match, act = rule.match, rule.actions
    return (
        act.egress_port,
        int.from_bytes(act.eth_src, "big"),
        int.from_bytes(act.eth_dst, "big"),
        int.from_bytes(act.nat_src if act.nat_src is not None else match.src, "big"),
        int.from_bytes(act.nat_dst if act.nat_dst is not None else match.dst, "big"),
        act.nat_sport if act.nat_sport is not None else match.sport,
        act.nat_dport if act.nat_dport is not None else match.dport,
        act.mtu,
    )

