"""The lab's target choice: what only the softswitch has is refused on BMv2, clearly."""

from __future__ import annotations

import pytest

pytest.importorskip("mininet.node")


def test_table_size_on_bmv2_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.lab.lab import Lab

    monkeypatch.setenv("BMV2_SWITCH", "/bin/true")
    with pytest.raises(ValueError, match="only on the softswitch; BMv2's table sizes come from"):
        Lab("router", "bmv2", table_size=1)


def test_an_unknown_target_is_refused() -> None:
    from controller.lab.lab import Lab

    with pytest.raises(ValueError, match="unknown target 'tofino'"):
        Lab("router", "tofino")
