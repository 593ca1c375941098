"""Idle-timeout notification schedule, as BMv2's ageing sweeper does it.

BMv2 sweeps once a second; an idle entry is notified at the first sweep that finds it idle and then
again every 2 s while it stays idle, whatever its TTL (bmv2 issue #1071). A hit resets the cycle.
This object only decides *which* entries to notify at a sweep; the server builds the message.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

REPEAT_S = 2.0  # BMv2 re-notifies a still-idle entry every other 1 s sweep


class IdleSchedule:
    """Remembers when each idle entry was last notified, to re-notify at the BMv2 cadence."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        self.repeat_s = repeat_s
        self._notified: dict[Hashable, float] = {}

    def due(self, idle: Iterable[tuple[Hashable, float]], now: float) -> list[Hashable]:
        """The entries to notify now, given every currently idle entry as (id, last_hit).

        Entries not in ``idle`` (hit, deleted) are forgotten, so they notify afresh when idle
        again; an entry hit after its last notification also notifies afresh.
        """
        due, kept = [], {}
        for ident, last_hit in idle:
            sent = self._notified.get(ident)
            # 1 ms slack: sweeps run "every 2 s" on a timer that may fire a hair early.
            if sent is None or last_hit > sent or now - sent >= self.repeat_s - 1e-3:
                due.append(ident)
                sent = now
            kept[ident] = sent
        self._notified = kept
        return due

    def clear(self) -> None:
        self._notified.clear()
