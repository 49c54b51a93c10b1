"""uvicorn's server with one change to its graceful shutdown: requests already delivered are answered.

On SIGTERM uvicorn stops accepting connections and at once closes every keep-alive connection that has no
request in flight. A request whose bytes already sit in such a connection's socket buffer (sent before the
signal, not yet read because the event loop was busy answering others) was dropped with its connection: the
client saw the connection close without an answer. :class:`DrainingServer` first gives the event loop a few
turns, which read those requests and accept connections waiting in the backlog; they are then in flight, and
uvicorn answers them before it closes their connections.

A request still on the wire when the connections close can be lost still: that is HTTP/1.1 keep-alive's own race
(the client sees its connection close unanswered and can retry elsewhere), and it needs no server to be slow.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

__all__ = ["DrainingServer"]

#: Event loop turns before the shutdown: one to read pending requests and accept waiting connections, one for an
#: accepted connection to be set up, one to read its request, one spare.
LOOP_TURNS = 4


class DrainingServer(uvicorn.Server):
    """:class:`uvicorn.Server`, reading what was already delivered before it closes idle connections."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for _ in range(LOOP_TURNS):
            await asyncio.sleep(0)
        await super().shutdown(sockets)
