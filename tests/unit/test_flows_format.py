"""``p4ft flows`` lines: conntrack -L style with the offload state, flowtable and shares."""

from __future__ import annotations

from controller.commands.flows import format_entry

ENTRY = {
    "proto": "tcp", "protonum": 6, "timeout": None, "state": None, "expires_in": 27.5,
    "original": {"src": "10.0.1.1", "dst": "10.0.2.1", "sport": 40000, "dport": 80,
                 "packets": 12, "bytes": 900},
    "reply": {"src": "10.0.2.1", "dst": "10.0.1.1", "sport": 80, "dport": 40000,
              "packets": 10, "bytes": 700},
    "status": ["SEEN_REPLY", "ASSURED", "OFFLOAD", "HW_OFFLOAD"], "mark": 0,
    "flowtable": "ft", "sw_packets": 2, "sw_bytes": 150, "hw_directions": 2,
    "offload": "HW_OFFLOAD",
}


def test_offloaded_entry_shows_both_tuples_state_flowtable_and_expiry():
    line = format_entry(ENTRY)
    assert line.startswith("tcp      6 27 src=10.0.1.1 dst=10.0.2.1 sport=40000 dport=80 "
                           "packets=12 bytes=900 src=10.0.2.1")
    assert "[HW_OFFLOAD] flowtable=ft sw=2/150 hw_dirs=2" in line
    assert "[UNREPLIED]" not in line


def test_unreplied_unoffloaded_entry():
    entry = {**ENTRY, "status": [], "offload": None, "flowtable": None, "state": "SYN_SENT"}
    line = format_entry(entry)
    assert "SYN_SENT" in line and "[UNREPLIED]" in line
    assert "OFFLOAD" not in line and "flowtable=" not in line


def test_encapsulated_directions_are_shown_untagged_ones_as_a_dash():
    assert "encap=" not in format_entry({**ENTRY, "encap": ["", ""]})
    line = format_entry({**ENTRY, "encap": ["vlan:100/802.1ad+vlan:10", ""]})
    assert line.endswith("hw_dirs=2 encap=vlan:100/802.1ad+vlan:10,- mark=0")
