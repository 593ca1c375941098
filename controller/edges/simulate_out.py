"""What ``p4ft simulate`` writes as it goes: the per-packet log and one pcap per output port.

Both stream: a record or a frame is written when it is produced and then dropped, so a replay
of any length holds none of them. The per-packet record is the DESIGN §4.1 object
``{"in_port", "time", "path", "events"}``, serialised once and written twice: ``packets.jsonl``
(one object per line, for ``jq``, ``grep``, ``head`` on a long run) and ``report.json`` (the
documented list, streamed as a JSON array with one element per line). A run that ends early
(Ctrl-C, a bad record) still closes both as valid files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from controller.edges.pcap import PcapWriter
from controller.router import Event

PACKETS_JSONL = "packets.jsonl"
REPORT_JSON = "report.json"


class PacketLog:
    """An :class:`controller.edges.simulate.Observer` writing every packet's record."""

    def __init__(self, out_dir: Path) -> None:
        self._jsonl: TextIO = open(out_dir / PACKETS_JSONL, "w", encoding="utf-8")  # noqa: SIM115
        self._json: TextIO = open(out_dir / REPORT_JSON, "w", encoding="utf-8")  # noqa: SIM115
        self._json.write("[")
        self._sep = "\n"
        self._dumps = json.JSONEncoder(separators=(", ", ": ")).encode

    def packet(
        self, port: int, when: float, frame: bytes, path: str, reason: str, events: list[Event]
    ) -> None:
        line = self._dumps({"in_port": port, "time": when, "path": path, "events": events})
        self._jsonl.write(line + "\n")
        self._json.write(self._sep + line)
        self._sep = ",\n"

    def event(self, now: float, event: Event) -> None:
        return None

    def tick(self, now: float, occupancy: dict[str, int]) -> None:
        return None

    def close(self) -> None:
        if not self._json.closed:
            self._json.write("\n]\n")
            self._json.close()
            self._jsonl.close()


class PortPcaps:
    """``DIR/<port>.pcap`` for every port that sends something, opened at its first frame."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._writers: dict[int, PcapWriter] = {}

    def send(self, port: int, when: float, frame: bytes) -> None:
        writer = self._writers.get(port)
        if writer is None:
            writer = self._writers[port] = PcapWriter(self.out_dir / f"{port}.pcap")
        writer.write(when, frame)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
