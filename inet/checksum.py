"""Internet checksum arithmetic (RFC 1071) and incremental updates (RFC 1624).

The fast path rewrites addresses, ports and TTL in place; recomputing a whole segment's checksum
per packet would cost as much as the forwarding itself, so rewrites adjust the checksum with the
RFC 1624 formula instead, exactly as the kernel's ``inet_proto_csum_replace*`` helpers do.
"""

from __future__ import annotations


def _fold(total: int) -> int:
    """Fold carries until the sum fits in 16 bits (end-around carry)."""
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Folded 16-bit one's-complement sum of ``data`` (odd length padded with a zero byte).

    Summing the whole buffer as one big-endian integer and reducing it modulo 0xffff is the
    same as adding 16-bit words with end-around carry (2**16 ≡ 1 mod 0xffff), and it runs in C.
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    if total:
        # One's complement keeps a non-zero sum non-zero: a multiple of 0xffff sums to 0xffff.
        total = total % 0xFFFF or 0xFFFF
    return _fold(total + initial)


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Internet checksum of ``data``: the complement of the one's-complement sum."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header_sum(family: int, src: bytes, dst: bytes, proto: int, length: int) -> int:
    """One's-complement sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793 / RFC 8200 §8.1).

    ``length`` is the L4 length (header + payload); IPv6 uses it as a 32-bit field, which
    sums the same as the 16-bit form for any length below 65536.
    """
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family}")
    return _fold(ones_sum(src) + ones_sum(dst) + proto + (length >> 16) + (length & 0xFFFF))


def update16(check: int, old: int, new: int) -> int:
    """New checksum after one 16-bit word changes from ``old`` to ``new`` (RFC 1624 eqn 3).

    HC' = ~(~HC + ~m + m'), which never produces the -0 ambiguity of eqn 2.
    """
    total = (~check & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF)
    return ~_fold(total) & 0xFFFF


def update_bytes(check: int, old: bytes, new: bytes) -> int:
    """New checksum after an even-length field (an address) changes from ``old`` to ``new``."""
    if len(old) != len(new) or len(old) & 1:
        raise ValueError("old and new must have the same even length")
    return apply_delta(check, replace_delta(old, new))


def replace_delta(old: bytes, new: bytes) -> int:
    """The sum ``~old + new`` that one field change adds to every checksum covering it.

    Computed once, it updates the IPv4 header and the L4 checksum of one address change.
    """
    return (~ones_sum(old) & 0xFFFF) + ones_sum(new)


def apply_delta(check: int, delta: int) -> int:
    """RFC 1624 eqn 3 with a precomputed :func:`replace_delta`: ``~(~HC + delta)``."""
    return ~_fold((~check & 0xFFFF) + delta) & 0xFFFF
