"""Stateful externs: indirect counter arrays, register arrays and meters.

Indices come from packet data, so out-of-range accesses never raise: they are ignored (reads
give 0) and counted in ``out_of_range`` so a misbehaving program is visible.
"""

from __future__ import annotations

GREEN, YELLOW, RED = 0, 1, 2


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
    """Two-rate three-color meters (RFC 2698, as BMv2's) driven by the packet's time.

    An index without a configuration marks every packet GREEN, as BMv2 does. Rates are per
    second, in packets or bytes according to ``unit``; bursts in the same unit.
    """

    def __init__(self, name: str, size: int, unit: str = "bytes") -> None:
        self.name = name
        self.size = size
        self.unit = unit
        self._config: dict[int, tuple[float, float, float, float]] = {}
        self._state: dict[int, list[float]] = {}  # index -> [tokens_c, tokens_p, last_time]
        self.out_of_range = 0

    def configure(self, index: int, cir: float, cburst: float, pir: float, pburst: float) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"meter {self.name}: index {index} not in [0, {self.size})")
        self._config[index] = (cir, cburst, pir, pburst)
        self._state[index] = [cburst, pburst, -1.0]

    def unconfigure(self, index: int) -> None:
        self._config.pop(index, None)
        self._state.pop(index, None)

    def execute(self, index: int, nbytes: int = 1, now: float = 0.0) -> int:
        cfg = self._config.get(index)
        if cfg is None:
            if not 0 <= index < self.size:
                self.out_of_range += 1
            return GREEN
        cir, cburst, pir, pburst = cfg
        st = self._state[index]
        if st[2] >= 0:
            elapsed = max(0.0, now - st[2])
            st[0] = min(cburst, st[0] + elapsed * cir)
            st[1] = min(pburst, st[1] + elapsed * pir)
        st[2] = now
        amount = nbytes if self.unit == "bytes" else 1
        if st[1] < amount:
            return RED
        st[1] -= amount
        if st[0] < amount:
            return YELLOW
        st[0] -= amount
        return GREEN
