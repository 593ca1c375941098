"""Where a punted packet's time goes: per-stage totals cheap enough for the hot path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Stage:
    """Count, total and worst duration (seconds) of one stage of the punt path."""

    count: int = 0
    seconds: float = 0.0
    max: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        if seconds > self.max:
            self.max = seconds

    def as_dict(self) -> dict[str, float]:
        mean = self.seconds / self.count if self.count else 0.0
        return {"count": self.count, "seconds": round(self.seconds, 6),
                "mean_us": round(mean * 1e6, 1), "max_us": round(self.max * 1e6, 1)}
