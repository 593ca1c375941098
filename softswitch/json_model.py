"""Load and validate a BMv2 JSON document into the typed layout the interpreter compiles against.

The packet state is flat: every field of every header instance (metadata included) gets one slot
in a list of ints, and every header instance one validity flag. This module assigns those slots
once per program, so per-packet code only indexes lists. Errors name the JSON path at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# p4c's assignment of the core library errors, used when a document omits `errors`.
CORE_ERRORS = {
    "NoError": 0,
    "PacketTooShort": 1,
    "NoMatch": 2,
    "StackOutOfBounds": 3,
    "HeaderTooShort": 4,
    "ParserTimeout": 5,
    "ParserInvalidArgument": 6,
}


class PipelineError(Exception):
    """The JSON cannot be executed; the message names the offending JSON path."""


def fail(path: str, message: str) -> PipelineError:
    return PipelineError(f"{path}: {message}")


def get(obj: Any, key: str, path: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[key]`` with an error naming ``path`` when it is missing or of the wrong kind."""
    if not isinstance(obj, dict) or key not in obj:
        raise fail(path, f"missing attribute {key!r}")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        raise fail(f"{path}.{key}", f"expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def parse_hexstr(text: Any, path: str) -> int:
    """BMv2 ``hexstr``: big-endian hex, optionally with a leading minus sign."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise fail(path, f"expected a hex string, got {text!r}")
    try:
        neg = text.startswith("-")
        body = text[1:] if neg else text
        value = int(body, 16) if body.lower().startswith("0x") else int(body, 0)
    except ValueError as exc:
        raise fail(path, f"bad hex string {text!r}") from exc
    return -value if neg else value


@dataclass(slots=True)
class FieldInfo:
    name: str
    width: int  # 0 for a variable-length field
    signed: bool
    slot: int


@dataclass(slots=True)
class HeaderInfo:
    """One header instance (or metadata instance) and where its fields live in the state."""

    name: str
    index: int
    type_name: str
    metadata: bool
    fields: list[FieldInfo]
    base: int  # slot of the first field; field k of the type is at base + k
    fixed_bits: int  # sum of the fixed-width fields
    varbit: FieldInfo | None = None
    max_bytes: int = 0  # header_types.max_length for varbit headers
    by_name: dict[str, FieldInfo] = field(default_factory=dict)


@dataclass(slots=True)
class StackInfo:
    name: str
    index: int
    headers: list[int]  # header indices, stack[0] first


@dataclass(slots=True)
class UnionInfo:
    """A header union: its member header instances, in declaration order."""

    name: str
    index: int
    members: tuple[int, ...]  # header indices
    member_names: tuple[str, ...]  # the P4 names of the members ("h1", "h2")


@dataclass(slots=True)
class UnionStackInfo:
    """A stack of header unions; ``cursor`` indexes ``PacketState.stack_next`` (after the
    header stacks' cursors)."""

    name: str
    cursor: int
    unions: list[int]  # union indices, stack[0] first
    member_names: tuple[str, ...]


@dataclass(slots=True)
class Layout:
    """Slot assignment for a whole program."""

    headers: list[HeaderInfo]
    header_by_name: dict[str, HeaderInfo]
    stacks: list[StackInfo]
    stack_by_name: dict[str, StackInfo]
    stack_of_header: dict[int, StackInfo]
    n_slots: int
    errors: dict[str, int]
    unions: list[UnionInfo] = field(default_factory=list)
    union_by_name: dict[str, UnionInfo] = field(default_factory=dict)
    union_stacks: list[UnionStackInfo] = field(default_factory=list)
    union_stack_by_name: dict[str, UnionStackInfo] = field(default_factory=dict)
    # header index -> the other members of its union (bm_sim HeaderUnion::make_header_valid)
    siblings: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def n_cursors(self) -> int:
        """Stack cursors per packet: one per header stack, then one per union stack."""
        return len(self.stacks) + len(self.union_stacks)

    def header(self, name: Any, path: str) -> HeaderInfo:
        return _named(self.header_by_name, name, "header instance", path)

    def stack(self, name: Any, path: str) -> StackInfo:
        return _named(self.stack_by_name, name, "header stack", path)

    def union(self, name: Any, path: str) -> UnionInfo:
        return _named(self.union_by_name, name, "header union", path)

    def union_stack(self, name: Any, path: str) -> UnionStackInfo:
        return _named(self.union_stack_by_name, name, "header union stack", path)

    def p4c_kind(self, kind: str, name: Any) -> str:
        """The kind of a type/value reference as p4c means it: p4c names a constant-index
        union-stack element ("us[0]") with type "header" and types every stack "header_stack"."""
        if kind == "header" and name not in self.header_by_name and name in self.union_by_name:
            return "header_union"
        if (kind == "header_stack" and name not in self.stack_by_name
                and name in self.union_stack_by_name):
            return "header_union_stack"
        return kind

    def union_stack_member(
        self, stack: Any, member: Any, path: str
    ) -> tuple[UnionStackInfo, list[HeaderInfo]]:
        """A union stack and the header instances of one member, one per union, stack[0] first."""
        us = self.union_stack(stack, path)
        if member not in us.member_names:
            raise fail(path, f"union stack {us.name!r} has no member {member!r}")
        k = us.member_names.index(member)
        return us, [self.headers[self.unions[u].members[k]] for u in us.unions]

    def field(self, ref: Any, path: str) -> tuple[HeaderInfo, FieldInfo | None]:
        """Resolve ``[header, field]``; the field is None for the hidden ``$valid$`` field."""
        if not (isinstance(ref, list) and len(ref) == 2):
            raise fail(path, f"expected [header, field], got {ref!r}")
        hdr = self.header(ref[0], path)
        if ref[1] == "$valid$":
            return hdr, None
        info = hdr.by_name.get(ref[1])
        if info is None:
            raise fail(path, f"header {hdr.name!r} has no field {ref[1]!r}")
        return hdr, info

    def error_code(self, name: str) -> int:
        return self.errors.get(name, CORE_ERRORS[name])


def _named(by_name: dict[str, T], name: Any, kind: str, path: str) -> T:
    info = by_name.get(name) if isinstance(name, str) else None
    if info is None:
        raise fail(path, f"unknown {kind} {name!r}")
    return info


def _indices(obj: dict, key: str, by_id: dict[int, Any], path: str) -> list[int]:
    """``obj[key]``, a list of JSON ids, as the indices of the objects they name."""
    out = []
    for j, oid in enumerate(get(obj, key, path, list)):
        if oid not in by_id:
            raise fail(f"{path}.{key}[{j}]", f"unknown id {oid!r}")
        out.append(by_id[oid].index)
    return out


def build_layout(doc: dict) -> Layout:
    """Assign slots to every header instance of ``doc`` (validated as we go)."""
    if not isinstance(doc, dict):
        raise PipelineError("$: the BMv2 JSON must be an object")
    types: dict[str, dict] = {}
    for i, ht in enumerate(get(doc, "header_types", "$", list)):
        types[get(ht, "name", f"$.header_types[{i}]", str)] = ht
    headers: list[HeaderInfo] = []
    by_name: dict[str, HeaderInfo] = {}
    by_id: dict[int, HeaderInfo] = {}
    slot = 0
    for i, h in enumerate(get(doc, "headers", "$", list)):
        path = f"$.headers[{i}]"
        name = get(h, "name", path, str)
        type_name = get(h, "header_type", path, str)
        ht = types.get(type_name)
        if ht is None:
            raise fail(f"{path}.header_type", f"unknown header type {type_name!r}")
        info = _header_info(name, len(headers), type_name, ht, bool(h.get("metadata")), slot)
        slot += len(info.fields)
        headers.append(info)
        by_name[name] = info
        by_id[h.get("id", i)] = info
    stacks: list[StackInfo] = []
    stack_of_header: dict[int, StackInfo] = {}
    for i, st in enumerate(doc.get("header_stacks") or []):
        path = f"$.header_stacks[{i}]"
        members = _indices(st, "header_ids", by_id, path)
        info = StackInfo(get(st, "name", path, str), len(stacks), members)
        stacks.append(info)
        for m in members:
            stack_of_header[m] = info
    errors = dict(CORE_ERRORS)
    for i, e in enumerate(doc.get("errors") or []):
        if not (isinstance(e, list) and len(e) == 2 and isinstance(e[1], int)):
            raise fail(f"$.errors[{i}]", "expected [name, value]")
        errors[e[0]] = e[1]
    layout = Layout(
        headers, by_name, stacks, {s.name: s for s in stacks}, stack_of_header, slot, errors
    )
    _add_unions(doc, layout, by_id)
    return layout


def _add_unions(doc: dict, layout: Layout, headers_by_id: dict[int, HeaderInfo]) -> None:
    """``header_union_types``, ``header_unions`` and ``header_union_stacks`` as bm_sim's
    P4Objects::init_header_unions / init_header_union_stacks read them: a union lists the ids
    of its member header instances, a union stack the ids of its unions."""
    member_names: dict[str, tuple[str, ...]] = {}
    for i, ut in enumerate(doc.get("header_union_types") or []):
        path = f"$.header_union_types[{i}]"
        members = get(ut, "headers", path, list)
        if not all(isinstance(m, list) and len(m) == 2 for m in members):
            raise fail(f"{path}.headers", "expected [member name, header type] pairs")
        member_names[get(ut, "name", path, str)] = tuple(m[0] for m in members)
    by_id: dict[int, UnionInfo] = {}
    for i, u in enumerate(doc.get("header_unions") or []):
        path = f"$.header_unions[{i}]"
        members = _indices(u, "header_ids", headers_by_id, path)
        names = member_names.get(u.get("union_type"), ())
        if len(names) != len(members):
            raise fail(f"{path}.union_type", f"unknown or mismatched union type "
                       f"{u.get('union_type')!r}")
        info = UnionInfo(get(u, "name", path, str), len(layout.unions), tuple(members), names)
        layout.unions.append(info)
        layout.union_by_name[info.name] = info
        by_id[u.get("id", i)] = info
        for m in members:
            layout.siblings[m] = tuple(o for o in members if o != m)
    for i, us in enumerate(doc.get("header_union_stacks") or []):
        path = f"$.header_union_stacks[{i}]"
        unions = _indices(us, "header_union_ids", by_id, path)
        if not unions:
            raise fail(f"{path}.header_union_ids", "a union stack needs at least one union")
        info_s = UnionStackInfo(get(us, "name", path, str), layout.n_cursors, unions,
                                layout.unions[unions[0]].member_names)
        layout.union_stacks.append(info_s)
        layout.union_stack_by_name[info_s.name] = info_s


def _header_info(
    name: str, index: int, type_name: str, ht: dict, metadata: bool, base: int
) -> HeaderInfo:
    path = f"$.header_types[{type_name}]"
    fields: list[FieldInfo] = []
    varbit = None
    fixed = 0
    for k, f in enumerate(get(ht, "fields", path, list)):
        if not (isinstance(f, list) and len(f) in (2, 3) and isinstance(f[0], str)):
            raise fail(f"{path}.fields[{k}]", f"expected [name, width(, signed)], got {f!r}")
        if f[1] == "*":
            info = FieldInfo(f[0], 0, False, base + k)
            varbit = info
        elif isinstance(f[1], int) and f[1] > 0:
            info = FieldInfo(f[0], f[1], len(f) == 3 and bool(f[2]), base + k)
            fixed += f[1]
        else:
            raise fail(f"{path}.fields[{k}]", f"bad width {f[1]!r}")
        fields.append(info)
    if not metadata and (fixed % 8) and varbit is None:
        raise fail(path, f"header type is {fixed} bits, not a whole number of bytes")
    info = HeaderInfo(name, index, type_name, metadata, fields, base, fixed, varbit)
    info.max_bytes = int(ht.get("max_length") or 0)
    info.by_name = {f.name: f for f in fields}
    return info
