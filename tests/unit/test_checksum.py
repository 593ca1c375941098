"""Checksum arithmetic against a word-by-word reference and RFC 1071/1624 examples."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from inet.checksum import (
    apply_delta,
    checksum,
    ones_sum,
    pseudo_header_sum,
    replace_delta,
    update16,
    update_bytes,
)


def reference_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def same_value(a: int, b: int) -> bool:
    """Equal in one's complement, where 0x0000 and 0xffff are both zero."""
    return a % 0xFFFF == b % 0xFFFF


def test_update16_never_changes_value_class_on_real_header() -> None:
    header = bytearray.fromhex("450000730000400040110000c0a80001c0a800c7")
    struct.pack_into("!H", header, 10, checksum(header))
    old = struct.unpack_from("!H", header, 8)[0]
    struct.pack_into("!H", header, 8, old - 0x100)  # TTL 64 -> 63
    assert update16(0xB861, old, old - 0x100) == checksum(header[:10] + b"\0\0" + header[12:])


def test_rfc1071_example() -> None:
    data = bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_empty_and_all_ones() -> None:
    assert ones_sum(b"") == 0
    assert ones_sum(b"\xff\xff\xff\xff") == 0xFFFF
    assert checksum(b"\x00\x00") == 0xFFFF


def test_odd_length_pads_with_zero() -> None:
    assert ones_sum(b"\x12\x34\x56") == 0x1234 + 0x5600


def test_ipv4_header_checksum_verifies_to_zero() -> None:
    header = bytearray.fromhex("450000730000400040110000c0a80001c0a800c7")
    struct.pack_into("!H", header, 10, checksum(header))
    assert header[10:12] == bytes.fromhex("b861")
    assert checksum(header) == 0


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_ones_sum_matches_reference(data: bytes, initial: int) -> None:
    expected = reference_sum(data) + initial
    while expected > 0xFFFF:
        expected = (expected & 0xFFFF) + (expected >> 16)
    assert ones_sum(data, initial) == expected


def test_pseudo_header_v4() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    expected = reference_sum(src + dst + struct.pack("!BBH", 0, 6, 20))
    assert pseudo_header_sum(4, src, dst, 6, 20) == expected


def test_pseudo_header_v6_uses_32bit_length() -> None:
    src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
    expected = reference_sum(src + dst + struct.pack("!I3xB", 70000, 17))
    assert pseudo_header_sum(6, src, dst, 17, 70000) == expected


@given(
    st.binary(min_size=20, max_size=80).filter(lambda b: len(b) % 2 == 0),
    st.integers(0, 9),
    st.integers(0, 0xFFFF),
)
def test_update16_equals_recompute(data: bytes, word: int, new: int) -> None:
    buf = bytearray(data)
    old_check = checksum(buf)
    old = struct.unpack_from("!H", buf, word * 2)[0]
    struct.pack_into("!H", buf, word * 2, new)
    assert same_value(update16(old_check, old, new), checksum(buf))


@given(
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=4, max_size=4),
)
def test_update_bytes_equals_recompute(rest: bytes, old: bytes, new: bytes) -> None:
    before = old + rest
    after = new + rest
    assert same_value(update_bytes(checksum(before), old, new), checksum(after))


def test_update_bytes_rejects_odd_or_unequal() -> None:
    import pytest

    with pytest.raises(ValueError):
        update_bytes(0, b"\x01", b"\x02")
    with pytest.raises(ValueError):
        update_bytes(0, b"\x01\x02", b"\x02\x03\x04\x05")


@given(
    st.integers(0, 0xFFFF),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
)
def test_delta_once_equals_update_bytes(check: int, old: bytes, new: bytes) -> None:
    assert apply_delta(check, replace_delta(old, new)) == update_bytes(check, old, new)


def test_buffers_of_any_kind() -> None:
    data = bytearray(b"\x12\x34\x56")
    assert ones_sum(memoryview(data)) == ones_sum(bytes(data)) == ones_sum(data) == 0x6834
