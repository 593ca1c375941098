"""Primary election among StreamChannel connections, as PI's pi_server.cpp does it.

The highest election id is primary; a duplicate id is refused; at most 16 connections. When the
primary changes, every connection learns it (a MasterArbitrationUpdate each); otherwise only the
connection that spoke does. Role names are ignored, as in PI. Sans-IO: methods return the
connections to notify and the server writes the messages.
"""

from __future__ import annotations

from finsy.proto import rpc_code

from softswitch.p4rt_codec import P4RTError

MAX_CONNECTIONS = 16


class Arbitration:
    """Connections (any hashable handle) and their election ids, as 128-bit ints."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections
        self._ids: dict[object, int] = {}

    @property
    def primary(self) -> object | None:
        return max(self._ids, key=self._ids.__getitem__) if self._ids else None

    @property
    def primary_election_id(self) -> int | None:
        return self._ids[self.primary] if self._ids else None

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, conn: object) -> bool:
        return conn in self._ids

    def connections(self) -> list[object]:
        return list(self._ids)

    def is_primary_id(self, election_id: int) -> bool:
        return bool(self._ids) and self.primary_election_id == election_id

    def arbitrate(self, conn: object, election_id: int) -> list[object]:
        """Add a connection or change its id; returns the connections to send an update to."""
        if conn not in self._ids and len(self._ids) >= self.max_connections:
            raise P4RTError(rpc_code.RESOURCE_EXHAUSTED, "Too many connections")
        if any(c is not conn and i == election_id for c, i in self._ids.items()):
            raise P4RTError(rpc_code.INVALID_ARGUMENT, "Election id already exists")
        before = self.primary
        self._ids[conn] = election_id
        return self.connections() if self.primary is not before else [conn]

    def remove(self, conn: object) -> list[object]:
        """Forget a closed connection; everyone is told if it was the primary."""
        was_primary = conn is self.primary
        self._ids.pop(conn, None)
        return self.connections() if was_primary else []
