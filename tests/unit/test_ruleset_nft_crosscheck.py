"""Cross-check accept/refuse decisions against the real ``nft -f`` in a scratch network
namespace (applied there, since ``nft -c`` skips the kernel's hook validation), where this
machine has nft and may create one (root); skipped otherwise. The decisions themselves are
asserted by the other ruleset tests, never only here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.netfilter.ruleset import RulesetError, load_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fw4" / "ruleset.nft"

pytestmark = pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs nft, unshare and root for a scratch network namespace",
)

RULES = [
    "dnat to 1.2.3.4",
    "dnat ip to 1.2.3.4:80",
    "meta l4proto udp tcp dport 22",
    "ip protocol udp tcp dport 22",
    'iifname "*"',
    'iifname "eth*" accept',
    'iifname "dummy\\*" accept',
    "tcp flags & (fin | syn | rst | ack) == syn accept",
    "ct state untracked drop",
    "meta nfproto ipv4 tcp dport 8080 dnat 192.168.1.10:80",
    "meta nfproto ipv4 tcp dport 26 redirect to 26",
    "meta l4proto { tcp, udp } dnat ip to 1.2.3.4:80",
    "tcp dport 80 dnat ip to 10.0.0.1-10.0.0.9:8080-8090 persistent,random",
    "meta nfproto ipv6 tcp dport 25 dnat [2001:db8::1234]:25",
    "ct status dnat accept",
    "icmpv6 type . icmpv6 code { 130 . 0, 131 . 0 } accept",
    "masquerade",
]


def nft_accepts(path: Path) -> bool:
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         "ip link add eth0 type veth peer name eth1 2>/dev/null; nft -f " + str(path)],
        capture_output=True, timeout=60, check=False,
    )
    return result.returncode == 0


def ours_accepts(path: Path) -> bool:
    try:
        load_file(path)
    except RulesetError:
        return False
    return True


@pytest.mark.parametrize("rule", RULES)
def test_rule_decision_matches_nft(rule: str, tmp_path: Path) -> None:
    path = tmp_path / "r.nft"
    path.write_text(
        f"table inet t {{\n chain c {{ type nat hook prerouting priority -100;\n {rule}\n }}\n}}\n"
    )
    assert ours_accepts(path) == nft_accepts(path)


def test_fw4_example_is_accepted_by_nft(tmp_path: Path) -> None:
    """This kernel may lack NF_FLOW_TABLE: the flowtable is left out of nft's copy."""
    text = EXAMPLE.read_text().replace('include "/etc/nftables.d/*.nft"', "")
    text = re.sub(r"\tflowtable ft \{.*?\n\t\}\n", "", text, flags=re.S)
    text = text.replace("meta l4proto { tcp, udp } flow offload @ft;\n", "")
    path = tmp_path / "fw4.nft"
    path.write_text(text)
    assert ours_accepts(path) and nft_accepts(path)
