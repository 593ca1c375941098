"""Stateful externs: indirect counter arrays, register arrays and (always-green) meters.

Indices come from packet data, so out-of-range accesses never raise: they are ignored (reads
give 0) and counted in ``out_of_range`` so a misbehaving program is visible.
"""

from __future__ import annotations

GREEN = 0


class CounterArray:
    """Packets and bytes per index (BMv2 counters always count both)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.packets = [0] * size
        self.bytes = [0] * size
        self.out_of_range = 0

    def count(self, index: int, nbytes: int) -> None:
        if 0 <= index < self.size:
            self.packets[index] += 1
            self.bytes[index] += nbytes
        else:
            self.out_of_range += 1

    def read(self, index: int) -> tuple[int, int]:
        """(packets, bytes); IndexError for a control-plane index out of range."""
        self._check(index)
        return self.packets[index], self.bytes[index]

    def write(self, index: int, packets: int, nbytes: int) -> None:
        self._check(index)
        self.packets[index] = packets
        self.bytes[index] = nbytes

    def reset(self) -> None:
        self.packets = [0] * self.size
        self.bytes = [0] * self.size

    def _check(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"counter {self.name}: index {index} not in [0, {self.size})")


class RegisterArray:
    def __init__(self, name: str, size: int, bitwidth: int) -> None:
        self.name = name
        self.size = size
        self.bitwidth = bitwidth
        self._mask = (1 << bitwidth) - 1
        self.values = [0] * size
        self.out_of_range = 0

    def read(self, index: int) -> int:
        if 0 <= index < self.size:
            return self.values[index]
        self.out_of_range += 1
        return 0

    def write(self, index: int, value: int) -> None:
        if 0 <= index < self.size:
            self.values[index] = value & self._mask
        else:
            self.out_of_range += 1

    def reset(self) -> None:
        self.values = [0] * self.size


class MeterArray:
    """Meters are accepted but not rate-limited: every packet is GREEN (documented limitation)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size

    def execute(self, index: int) -> int:
        return GREEN
