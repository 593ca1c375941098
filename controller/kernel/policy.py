"""Which eligible connections kernel mode offloads: ``[kernel] offload`` and ``match``.

Eligibility itself is the mirror's admission rules (:func:`~controller.netfilter.admission.refusal`:
TCP ESTABLISHED+ASSURED, UDP confirmed, no helper, ...), run on the kernel's entry. On top, the
config names the protocols (``offload = ["tcp", "udp"]``) and optional selectors: nft match
expressions (``"ip daddr 10.0.2.0/24 tcp dport 5001"``, ``"iifname eth0"``) parsed and run by
the project's nft parser and evaluator, against the connection's original tuple and the devices
it enters and leaves by. A connection is offloaded when any selector matches (or none is set).
"""

from __future__ import annotations

from controller.netfilter.ct import IPPROTO_TCP, IPPROTO_UDP, CtInfo, CtTuple
from controller.netfilter.ruleset import Evaluator, Hook, RuleContext, RulesetError, loads

PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


class PolicyError(ValueError):
    """A selector that does not parse as an nft match."""


class OffloadPolicy:
    def __init__(self, protocols: tuple[str, ...] = ("tcp", "udp"),
                 selectors: tuple[str, ...] = ()) -> None:
        unknown = [p for p in protocols if p not in PROTOCOLS]
        if unknown:
            raise PolicyError(f"offload: unknown protocol(s) {unknown}; use tcp and/or udp")
        self.protocols = frozenset(PROTOCOLS[p] for p in protocols)
        self.selectors = selectors
        self._evaluator: Evaluator | None = None
        if selectors:
            rules = "\n".join(f"        {s} accept" for s in selectors)
            text = ("table inet p4ft_offload {\n    chain select {\n"
                    "        type filter hook forward priority 0; policy drop;\n"
                    f"{rules}\n    }}\n}}\n")
            try:
                self._evaluator = Evaluator(loads(text, "[kernel] match"))
            except RulesetError as exc:
                raise PolicyError(f"match: {exc}") from None

    def wants_protocol(self, proto: int) -> bool:
        return proto in self.protocols

    def selects(self, orig: CtTuple, iifname: str, oifname: str) -> bool:
        """Do the selectors take this connection (entering on ``iifname``, leaving on
        ``oifname`` in its original direction)?"""
        if self._evaluator is None:
            return True
        ctx = RuleContext(orig.family, orig.proto, orig.src, orig.dst, orig.sport, orig.dport,
                          iifname, oifname, CtInfo.ESTABLISHED, False, 0)
        return self._evaluator.run(Hook.FORWARD, orig.family, ctx).accept
