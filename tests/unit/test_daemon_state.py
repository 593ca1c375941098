"""What the daemon records of the hardware across a restart, and its metrics text."""

from __future__ import annotations

import json

from controller.edges.daemon import ADOPTED_BASE, RecordingDriver, rules_from_json, rules_to_json
from controller.edges.metrics import render
from ndo.api import Command, FlowActions, FlowCommand, FlowMatch, FlowRule
from ndo.memory import MemoryDriver


def _rule(sport: int, nat: bool = False) -> FlowRule:
    match = FlowMatch(1, 4, bytes([10, 0, 1, 1]), bytes([10, 0, 2, 1]), 6, sport, 80)
    actions = FlowActions(2, bytes(6), bytes([0, 0, 0, 0, 2, 1]), 1500,
                          nat_src=bytes([192, 0, 2, 254]) if nat else None,
                          nat_sport=61000 if nat else None)
    return FlowRule(match, actions)


def test_rules_survive_the_state_file_as_adopted_cookies():
    rules = {4: _rule(1000), 5: _rule(1001, nat=True)}
    text = json.dumps(rules_to_json(rules))
    adopted = rules_from_json(json.loads(text))
    assert sorted(adopted.values(), key=lambda r: r.match.sport) == list(rules.values())
    assert all(c >= ADOPTED_BASE for c in adopted)


async def test_recording_driver_keeps_what_the_hardware_holds():
    inner = MemoryDriver(capacity=2)
    driver = RecordingDriver(inner)
    results = await driver.execute([FlowCommand(Command.REPLACE, 2, _rule(1)),
                                    FlowCommand(Command.REPLACE, 3, _rule(2)),
                                    FlowCommand(Command.REPLACE, 4, _rule(3))])
    assert [r.ok for r in results] == [True, True, False]  # the third did not fit
    assert set(driver.rules) == {2, 3}
    await driver.execute([FlowCommand(Command.DESTROY, 2)])
    assert set(driver.rules) == {3}


async def test_the_router_reinstalling_an_adopted_match_takes_it_over():
    driver = RecordingDriver(MemoryDriver())
    driver.adopt({ADOPTED_BASE: _rule(7)})
    await driver.execute([FlowCommand(Command.REPLACE, 10, _rule(7))])
    assert driver.rules == {10: _rule(7)}


def test_metrics_render_counters_with_switch_and_reason_labels():
    text = render({"r1": {"punts": {"miss": 3, "tcp_fin_rst": 1}, "hw_entries": 4,
                          "connected": True, "offload": {"replace_done": 2}}}).decode()
    lines = set(text.splitlines())
    assert 'p4ft_punts{switch="r1",reason="miss"} 3' in lines
    assert 'p4ft_hw_entries{switch="r1"} 4' in lines
    assert 'p4ft_connected{switch="r1"} 1' in lines
    assert 'p4ft_offload_replace_done{switch="r1"} 2' in lines
