"""Header copies and header-union primitives with bm_sim's validity rules.

A header that belongs to a union is one of its members: making it valid invalidates the other
members (bm_sim ``Header::mark_valid`` -> ``HeaderUnion::make_header_valid``), and a union is
valid while one member is. Union stacks move whole unions (``HeaderUnion::swap_values``).
"""

from __future__ import annotations

from collections.abc import Callable

from softswitch.expressions import Expr, Params
from softswitch.json_model import Layout, UnionStackInfo
from softswitch.state import PacketState

Prim = Callable[[PacketState, Params], None]
HeaderCopy = Callable[[PacketState, int, int], None]


def header_copier(layout: Layout) -> HeaderCopy:
    """``copy(s, dst, src)`` as bm_sim's core ``assign_header``: an invalid source makes the
    destination invalid (its fields stay); a valid one makes it valid (invalidating the other
    members of its union) and copies every field, a varbit field at its current width."""
    spans = [(h.base, h.base + len(h.fields)) for h in layout.headers]
    siblings = [layout.siblings.get(h.index, ()) for h in layout.headers]

    def copy(s: PacketState, d: int, r: int) -> None:
        valid = s.valid
        if not valid[r]:
            valid[d] = False
            return
        valid[d] = True
        for o in siblings[d]:
            valid[o] = False
        (db, de), (rb, re_) = spans[d], spans[r]
        s.f[db:de] = s.f[rb:re_]
        if r in s.vlen:
            s.vlen[d] = s.vlen[r]
        else:
            s.vlen.pop(d, None)

    return copy


def assign_union(layout: Layout, dst: Expr, src: Expr) -> Prim:
    """bm_sim core ``assign_union``: ``assign_header`` member by member."""
    members = [u.members for u in layout.unions]
    copy = header_copier(layout)

    def assign(s: PacketState, p: Params) -> None:
        for d, r in zip(members[dst(s, p)], members[src(s, p)], strict=True):
            copy(s, d, r)

    return assign


def assign_union_stack(layout: Layout, dst: UnionStackInfo, src: UnionStackInfo) -> Prim:
    """bm_sim core ``assign_union_stack``: the cursor, then ``assign_union`` per element."""
    pairs = [
        (d, r)
        for du, ru in zip(dst.unions, src.unions, strict=True)
        for d, r in zip(layout.unions[du].members, layout.unions[ru].members, strict=True)
    ]
    copy = header_copier(layout)

    def assign(s: PacketState, p: Params) -> None:
        s.stack_next[dst.cursor] = s.stack_next[src.cursor]
        for d, r in pairs:
            copy(s, d, r)

    return assign


def shift_union_stack(layout: Layout, us: UnionStackInfo, count: Expr, push: bool) -> Prim:
    """``push_front``/``pop_front`` on a union stack as bm_sim's ``StackP4_16`` does it: the
    elements move by swapping whole unions, and the vacated ones are then "marked invalid" with
    ``HeaderUnion::mark_invalid``, which is a no-op on purpose in bm_sim: a vacated union keeps
    what the swaps left in it."""
    unions = [layout.unions[u].members for u in us.unions]
    spans = [(h.base, h.base + len(h.fields)) for h in layout.headers]
    size, cursor = len(unions), us.cursor

    def swap(s: PacketState, a: int, b: int) -> None:
        f, valid, vlen = s.f, s.valid, s.vlen
        for x, y in zip(unions[a], unions[b], strict=True):
            (xb, xe), (yb, ye) = spans[x], spans[y]
            f[xb:xe], f[yb:ye] = f[yb:ye], f[xb:xe]
            valid[x], valid[y] = valid[y], valid[x]
            vx, vy = vlen.pop(x, None), vlen.pop(y, None)
            if vy is not None:
                vlen[x] = vy
            if vx is not None:
                vlen[y] = vx

    def pop_front(s: PacketState, p: Params) -> None:
        n = max(0, int(count(s, p)))
        if n == 0:
            return
        s.stack_next[cursor] -= min(s.stack_next[cursor], n)
        for i in range(size - n):
            swap(s, i, i + n)

    def push_front(s: PacketState, p: Params) -> None:
        n = max(0, int(count(s, p)))
        if n == 0:
            return
        s.stack_next[cursor] = min(size, s.stack_next[cursor] + n)
        for i in range(size - 1, n - 1, -1):
            swap(s, i, i - n)

    return push_front if push else pop_front
