"""Prometheus text exposition of the controller's counters (``--metrics 127.0.0.1:9100``).

Every numeric leaf of each switch's stats becomes ``p4ft_<path>{switch="NAME"} VALUE``; nested
keys join with ``_`` and a dictionary of counts keyed by a reason becomes one label. No client
library: the format is a few lines of text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def render(stats_by_switch: Mapping[str, Mapping[str, Any]]) -> bytes:
    lines: list[str] = []
    for switch, stats in stats_by_switch.items():
        for name, labels, value in _leaves("p4ft", stats):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in
                                  (("switch", switch), *labels))
            lines.append(f"{name}{{{label_text}}} {value}")
    return ("\n".join(sorted(lines)) + "\n").encode()


def _leaves(prefix: str, node: Any, labels: tuple[tuple[str, str], ...] = ()):
    if isinstance(node, bool):
        yield prefix, labels, int(node)
    elif isinstance(node, int | float):
        yield prefix, labels, node
    elif isinstance(node, Mapping):
        counts = all(isinstance(v, int | float) and not isinstance(v, bool) for v in node.values())
        if counts and node and prefix.endswith(("by_reason", "punts", "drops")):
            for key, value in node.items():
                yield prefix, (*labels, ("reason", str(key))), value
            return
        for key, value in node.items():
            yield from _leaves(f"{prefix}_{_NAME.sub('_', str(key))}", value, labels)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
