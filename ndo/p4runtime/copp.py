"""Control-plane policing on the switch: flowtable.p4's punt meter and its drop counter.

``FtIngress.punt_meter`` (indirect, packets, one cell per punt reason) colours every frame on
its way to the CPU port; RED frames are dropped in the switch and counted in
``FtIngress.punt_drops`` (same index). A cell never configured is GREEN (BMv2's meters start
unconfigured), so policing starts when a MeterConfig is written, and the switch forgets it with
its pipeline: the driver writes it at every connect. Each cell is a trTCM with cir = pir = rate
and cburst = pburst = burst (packets), so a frame is RED exactly when it exceeds rate + burst.

A pipeline compiled before CoPP has neither name: policing is *unavailable*, said once in the
log and in the stats, and nothing else changes.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from finsy.proto import p4r

from ndo.api import PuntReason
from ndo.p4runtime.client import P4RuntimeClient, P4RuntimeError
from ndo.p4runtime.punt_queue import reason_name
from ndo.p4runtime.schema import PUNT_DROPS, PUNT_METER, FlowSchema

log = logging.getLogger(__name__)

Rates = Mapping[int, tuple[int, int]]  # punt reason → (packets/s, burst in packets)


class PuntPolicing:
    """Writes the punt meter's cells and reads what the switch dropped, per reason."""

    def __init__(self, client: P4RuntimeClient, schema: FlowSchema, rates: Rates | None,
                 counters: Counter[str]) -> None:
        self._client = client
        self._meter = schema.punt_meter
        self._drops = schema.punt_drops
        self._counters = counters
        self.rates = dict(rates or {})
        self.drops: dict[str, dict[str, int]] = {}  # reason → packets, bytes (last read)
        self.error: str | None = None
        if not self.available:
            log.warning("CoPP unavailable: the pipeline has no %s/%s (compiled before the punt "
                        "meter); punts are not policed in the switch%s", PUNT_METER, PUNT_DROPS,
                        " although [punt] is configured" if self.rates else "")
        elif self._meter is not None:
            too_big = [r for r in self.rates if r >= self._meter.size]
            if too_big:
                raise ValueError(f"{PUNT_METER} has {self._meter.size} cells: no cell for punt "
                                 f"reason(s) {too_big}")

    @property
    def available(self) -> bool:
        return self._meter is not None and self._drops is not None

    @property
    def status(self) -> str:
        if not self.available:
            return "unavailable (pipeline without a punt meter)"
        if self.error is not None:
            return f"error: {self.error}"
        return "policing" if self.rates else "off (no [punt] section)"

    async def configure(self) -> None:
        """Write every configured cell's MeterConfig (after each connect: the switch may have
        lost them with its pipeline). A refusal is logged and shown, never raised."""
        if not self.available or not self.rates:
            return
        assert self._meter is not None
        request = self._client.new_write()
        for reason, (rate, burst) in sorted(self.rates.items()):
            update = request.updates.add(type=p4r.Update.MODIFY)
            entry = update.entity.meter_entry
            entry.meter_id = self._meter.id
            entry.index.index = reason
            entry.config.cir, entry.config.cburst = rate, burst
            entry.config.pir, entry.config.pburst = rate, burst
        try:
            errors = await self._client.write(request)
        except (P4RuntimeError, ConnectionError) as exc:
            errors, message = [], str(exc)
        else:
            message = "; ".join(e.message for e in errors if e.canonical_code) if errors else ""
        if message:
            self.error = message
            self._counters["punt_meter_write_errors"] += 1
            log.warning("CoPP: the switch refused the punt meter's configuration: %s", message)
            return
        self.error = None
        self._counters["punt_meter_writes"] += 1

    async def read_drops(self) -> None:
        """Read the drop counter's cells into ``drops``."""
        if not self.available:
            return
        assert self._drops is not None
        entity = p4r.Entity()
        entity.counter_entry.counter_id = self._drops.id  # no index: every cell
        drops = {}
        async for found in self._client.read([entity]):
            cell = found.counter_entry
            if cell.data.packet_count:
                name = reason_name(_reason(cell.index.index))
                drops[name] = {"packets": cell.data.packet_count,
                               "bytes": cell.data.byte_count}
        self.drops = drops

    def stats(self) -> dict[str, Any]:
        return {"status": self.status,
                "rates": {reason_name(_reason(r)): {"rate_pps": rate, "burst": burst}
                          for r, (rate, burst) in sorted(self.rates.items())},
                "drops": {name: cell["packets"] for name, cell in self.drops.items()},
                "drop_bytes": {name: cell["bytes"] for name, cell in self.drops.items()}}


def _reason(index: int) -> PuntReason | int:
    try:
        return PuntReason(index)
    except ValueError:
        return index
