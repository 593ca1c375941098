"""Header unions and header-union stacks, in the JSON shapes p4c-bm2-ss emits for them: members
are header instances named ``<union>.<member>``, union-stack elements unions named
``<stack>[i]``; behaviour as bm_sim (HeaderUnion, StackP4_16, core assign_union*)."""

from __future__ import annotations

from softswitch.pipeline import Pipeline
from tests.softswitch.p4json import (
    action,
    assign,
    bare,
    conditional,
    extract,
    fld,
    header_union,
    hexstr,
    op,
    pipeline,
    prim,
    program,
    state,
    table,
    trans,
    union_stack,
    union_type,
)

B = [["v", 8, False]]
H1 = [["a", 8, False]]
H2 = [["x", 16, False]]
OUT1 = assign(fld("standard_metadata", "egress_spec"), hexstr(1, 2))
# header ids: b 2, u.h1 3, u.h2 4, w.h1 5, w.h2 6, us[0].h1 7 ... us[1].h2 10, vs[0].h1 11 ...
HEADERS = [("b", "b_t", False), ("u.h1", "h1_t", False), ("u.h2", "h2_t", False),
           ("w.h1", "h1_t", False), ("w.h2", "h2_t", False),
           ("us[0].h1", "h1_t", False), ("us[0].h2", "h2_t", False),
           ("us[1].h1", "h1_t", False), ("us[1].h2", "h2_t", False),
           ("vs[0].h1", "h1_t", False), ("vs[0].h2", "h2_t", False),
           ("vs[1].h1", "h1_t", False), ("vs[1].h2", "h2_t", False)]
UNIONS = [header_union("u", "U", [3, 4], 0), header_union("w", "U", [5, 6], 1),
          header_union("us[0]", "U", [7, 8], 2), header_union("us[1]", "U", [9, 10], 3),
          header_union("vs[0]", "U", [11, 12], 4), header_union("vs[1]", "U", [13, 14], 5)]
U = {"type": "header_union", "value": "u"}
W = {"type": "header_union", "value": "w"}
US = {"type": "header_union_stack", "value": "us"}
VS = {"type": "header_union_stack", "value": "vs"}


def build(states: list[dict], prims: list[dict], *, conditionals: list | None = None) -> Pipeline:
    acts = [action(0, "ingress.act", [], [*prims, OUT1])]
    tbl = table(0, "tbl_act", [], [(0, "ingress.act")], (0, []), const_default=True)
    init = conditionals[0]["name"] if conditionals else "tbl_act"
    return Pipeline.from_json(program(
        header_types=[("b_t", B), ("h1_t", H1), ("h2_t", H2)], headers=HEADERS,
        states=states, ingress=pipeline("ingress", 0, init, [tbl], conditionals),
        actions=acts, deparse=[h for h, _, _ in HEADERS],
        header_union_types=[union_type("U", [("h1", "h1_t"), ("h2", "h2_t")])],
        header_unions=UNIONS, header_union_stacks=[union_stack("us", "U", [2, 3], 0),
                             union_stack("vs", "U", [4, 5], 1)]))


def out(p: Pipeline, data: bytes) -> bytes:
    [(port, frame)] = p.process(0, data)
    assert port == 1
    return frame


def next_member(member: str) -> dict:
    """``packet.extract(hdr.us.next.<member>)`` as p4c's ParserConverter writes it."""
    return {"op": "extract", "parameters": [{"type": "union_stack", "value": ["us", member]}]}


def test_extracting_a_member_invalidates_the_other_member() -> None:
    p = build([state("start", [extract("b"), extract("u.h1"), extract("u.h2")])], [])
    # u.h1 then u.h2 extracted: only u.h2 stays valid, so only it is emitted
    assert out(p, b"\x00\xaa\x12\x34tail") == b"\x00\x12\x34tail"


def test_union_is_valid_when_one_member_is() -> None:
    states = [state("start", [extract("b")], [fld("b", "v")],
                    [trans("0x01", "h1"), trans(None, None)]),
              state("h1", [extract("u.h1")])]
    valid_u = {"type": "expression", "value": bare("valid_union", None, U)}
    p = build(states, [assign(fld("b", "v"), hexstr(0x77))], conditionals=[
        conditional(0, "node_1", valid_u, "tbl_act", None)])
    assert out(p, b"\x01\x05") == b"\x77\x05"  # u valid: the action ran
    assert p.process(0, b"\x00\x05") == [(0, b"\x00\x05")]  # u invalid: it did not


def test_set_valid_on_a_member_invalidates_the_other_member() -> None:
    states = [state("start", [extract("b"), extract("u.h1")])]
    p = build(states, [prim("add_header", {"type": "header", "value": "u.h2"}),
                       assign(fld("u.h2", "x"), hexstr(0xBEEF, 2))])
    assert out(p, b"\x00\xaatail") == b"\x00\xbe\xeftail"


def test_union_assignment_copies_validity_and_fields() -> None:
    states = [state("start", [extract("b"), extract("u.h2"), extract("w.h1")])]
    p = build(states, [prim("assign_union", W, U)])
    # w had h1 valid; after w = u it has exactly u's valid member h2 with u's field
    assert out(p, b"\x00\x12\x34\xaatail") == b"\x00\x12\x34\x12\x34tail"


def test_extract_into_union_stack_next_and_overflow() -> None:
    # lookahead 0x0a: next union's h1 (1 byte), 0x0b: next union's h2 (2 bytes)
    loop = state("loop", [], [{"type": "lookahead", "value": [0, 8]}],
                 [trans("0x0a", "one"), trans("0x0b", "two"), trans(None, None)])
    states = [state("start", [extract("b")], [], [trans(None, "loop")]), loop,
              state("one", [next_member("h1")], [], [trans(None, "loop")]),
              state("two", [next_member("h2")], [], [trans(None, "loop")])]
    save_err = assign(fld("b", "v"), fld("standard_metadata", "parser_error"))
    p = build(states, [save_err])
    assert out(p, b"\x00\x0b\x01\x0a\xff") == b"\x00\x0b\x01\x0a\xff"
    # a third element: StackOutOfBounds (3), the first two stay extracted
    assert out(p, b"\x00\x0a\x0b\x02\x0a") == b"\x03\x0a\x0b\x02\x0a"


def test_union_stack_field_in_a_select() -> None:
    last_a = {"type": "union_stack_field", "value": ["us", "h1", "a"]}
    states = [state("start", [extract("b"), next_member("h1")], [last_a],
                    [trans("0x01", "again"), trans(None, None)]),
              state("again", [next_member("h1")])]
    p = build(states, [])
    assert out(p, b"\x00\x01\x09rest") == b"\x00\x01\x09rest"
    assert out(p, b"\x00\x02\x09rest") == b"\x00\x02\x09rest"  # second byte left unparsed
    assert p.layout.union_stacks[0].cursor == 0


def test_union_stack_push_front_and_pop_front_swap_whole_unions() -> None:
    """bm_sim StackP4_16 moves unions with HeaderUnion::swap_values and then "invalidates" the
    vacated ones with HeaderUnion::mark_invalid, a no-op: they keep what the swaps left."""
    one = [state("start", [extract("b"), next_member("h2")])]
    two = [state("start", [extract("b"), next_member("h2"), next_member("h1")])]
    size = assign(fld("b", "v"), op("size_stack", None, US))
    # one element: push_front(1) moves it to us[1]; us[0] gets the old, invalid us[1]
    p = build(one, [prim("push", US, hexstr(1)), size])
    assert out(p, b"\x00\x12\x34") == b"\x02\x12\x34"
    # full stack: push_front(1) swaps the two elements, both still valid
    p = build(two, [prim("push", US, hexstr(1)), size])
    assert out(p, b"\x00\x12\x34\xaa") == b"\x02\xaa\x12\x34"
    # pop_front(1): us[0] = old us[1] (h1); us[1] keeps old us[0] (h2), still valid
    p = build(two, [prim("pop", US, hexstr(1)), size])
    assert out(p, b"\x00\x12\x34\xaa") == b"\x01\xaa\x12\x34"
    # pop_front(2) on a stack of 2: nothing is swapped and nothing made invalid
    p = build(two, [prim("pop", US, hexstr(2)), size])
    assert out(p, b"\x00\x12\x34\xaa") == b"\x00\x12\x34\xaa"


def test_union_stack_assignment_and_dynamic_index() -> None:
    states = [state("start", [extract("b"), next_member("h1")])]
    us1_h2 = {"type": "expression", "value": {"type": "expression", "value": bare(
        "access_field", op("access_union_header",
                           op("dereference_union_stack", US, fld("b", "v")), 1), 0)}}
    p = build(states, [prim("add_header", op("access_union_header", op(
        "dereference_union_stack", US, fld("b", "v")), 1)), assign(us1_h2, hexstr(0xCAFE, 2))])
    # b.v = 1: us[1].h2 made valid and written; us[0].h1 untouched
    assert out(p, b"\x01\x0a") == b"\x01\x0a\xca\xfe"
    # b.v = 0: us[0].h2 made valid, which invalidates us[0].h1
    assert out(p, b"\x00\x0a") == b"\x00\xca\xfe"


def test_union_stack_assignment_copies_elements_and_cursor() -> None:
    states = [state("start", [extract("b"), next_member("h1")])]
    size_vs = op("size_stack", None, VS)
    p = build(states, [prim("assign_union_stack", VS, US), assign(fld("b", "v"), size_vs)])
    # vs = us: vs[0].h1 is a copy of us[0].h1, one element counted
    assert out(p, b"\x05\x0a") == b"\x01\x0a\x0a"


def test_union_stack_named_as_a_header_stack() -> None:
    """p4c's ExpressionConverter types every stack reference "header_stack", union stacks too."""
    as_stack = {"type": "header_stack", "value": "us"}
    states = [state("start", [extract("b"), next_member("h2")])]
    p = build(states, [prim("push", as_stack, hexstr(1)),
                       assign(fld("b", "v"), op("size_stack", None, as_stack))])
    assert out(p, b"\x00\x12\x34") == b"\x02\x12\x34"


def test_union_stack_element_named_as_a_header() -> None:
    """p4c's ArrayIndex conversion names a constant-index element ``us[0]`` with type "header"."""
    us0 = {"type": "header", "value": "us[0]"}
    valid_us0 = {"type": "expression", "value": bare("valid_union", None, us0)}
    states = [state("start", [extract("b")], [fld("b", "v")],
                    [trans("0x01", "one"), trans(None, None)]),
              state("one", [next_member("h1")])]
    p = build(states, [assign(fld("b", "v"), hexstr(0x77))], conditionals=[
        conditional(0, "node_1", valid_us0, "tbl_act", None)])
    assert out(p, b"\x01\x05") == b"\x77\x05"
    assert p.process(0, b"\x00\x05") == [(0, b"\x00\x05")]
