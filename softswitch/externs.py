"""Stateful externs: indirect counter arrays, register arrays and meters.

Indices come from packet data, so out-of-range accesses never raise: they are ignored (reads
give 0) and counted in ``out_of_range`` so a misbehaving program is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class MeterConfig:
    """A cell's rates as P4Runtime's MeterConfig: per second, bursts in the meter's unit."""

    cir: int
    cburst: int
    pir: int
    pburst: int


class _Rate:
    """One token bucket of a BMv2 ``Meter``: rate per microsecond, integer tokens."""

    __slots__ = ("burst", "color", "info_rate", "last", "tokens")

    def __init__(self, per_second: int, burst: int, color: int) -> None:
        self.info_rate = per_second / 1e6  # PI's convert_from_meter_spec: r / 1000000.
        self.burst = burst
        self.tokens = burst  # Meter::set_rate: a configured bucket starts full
        self.last = 0
        self.color = color


class MeterArray:
    """Indirect two-rate three-color meters, exactly as BMv2's ``Meter::execute``
    (bm_sim/meters.cpp), so a run colors packet for packet as simple_switch does.

    A cell holds its peak bucket then its committed one. On each packet, every bucket gains the
    whole tokens earned since the time origin (``int(micros * rate)``, micros truncated, as
    BMv2's ``tokens_since_init``) less those already credited, capped at its burst; the peak
    bucket short of the packet's size (1 for packets meters, the frame's ingress length for
    bytes meters) makes it RED, else it pays and the committed bucket short makes it YELLOW,
    else both paid and it is GREEN. A cell never configured (or reset) is GREEN, as BMv2's
    ``if (!configured) return 0``. The origin is ``now == 0`` rather than BMv2's switch start:
    the same buckets, whole-token steps at a different phase.
    """

    def __init__(self, name: str, size: int, unit: str = "bytes") -> None:
        self.name = name
        self.size = size
        self.unit = unit
        self._per_packet = unit == "packets"
        self._cells: list[tuple[_Rate, _Rate] | None] = [None] * size
        self._configs: list[MeterConfig | None] = [None] * size
        self.out_of_range = 0

    def configure(self, index: int, config: MeterConfig) -> None:
        """Set one cell's rates (BMv2 ``set_rates`` with [CIR, PIR]): its buckets start full."""
        self._check(index)
        if config.cir > config.pir:  # Meter::set_rate: INVALID_INFO_RATE_VALUE
            raise ValueError(f"meter {self.name}: CIR {config.cir} above PIR {config.pir}")
        self._cells[index] = (_Rate(config.pir, config.pburst, RED),
                              _Rate(config.cir, config.cburst, YELLOW))
        self._configs[index] = config

    def reset(self, index: int) -> None:
        """Back to unconfigured (BMv2 ``reset_rates``): every packet GREEN."""
        self._check(index)
        self._cells[index] = None
        self._configs[index] = None

    def config(self, index: int) -> MeterConfig | None:
        self._check(index)
        return self._configs[index]

    def execute(self, index: int, nbytes: int, now: float) -> int:
        if not 0 <= index < self.size:
            self.out_of_range += 1
            return GREEN
        cell = self._cells[index]
        if cell is None:
            return GREEN
        micros = int(now * 1e6)
        amount = 1 if self._per_packet else nbytes
        for rate in cell:
            since = int(micros * rate.info_rate)
            if since > rate.last:
                rate.tokens = min(rate.tokens + since - rate.last, rate.burst)
                rate.last = since
            if rate.tokens < amount:
                return rate.color
            rate.tokens -= amount
        return GREEN

    def _check(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"meter {self.name}: index {index} not in [0, {self.size})")
