"""WebSocket connection life shared by every Lighter client in bog (the feed's market data,
the gateway's order session): one set of connection options and one reconnect back-off.

- ``connect_options(open_timeout_s)``: the ``websockets.asyncio.client.connect`` keyword
  arguments (protocol pings every ``PROTOCOL_PING_INTERVAL_S`` keep the venue's 2-minute rule,
  frame size cap, no compression).
- ``Backoff``: capped exponential delay with jitter (0.5-1x, no reconnect storms), reset after
  a stable session; a planned reconnect (a ``shutdown`` frame) asks for ``now()``.
"""

from __future__ import annotations

import random

from bog.venue import lighter as L

STABLE_SESSION_S = 10.0  # a session this long resets the reconnect back-off


def connect_options(open_timeout_s: float, max_queue: int = 4096) -> dict:
    return dict(open_timeout=open_timeout_s, ping_interval=L.PROTOCOL_PING_INTERVAL_S,
                ping_timeout=L.PROTOCOL_PING_TIMEOUT_S, close_timeout=1.0,
                max_size=L.MAX_FRAME_BYTES, max_queue=max_queue, compression=None)


class Backoff:
    """Reconnect delays: ``initial_s * 2**attempt`` capped at ``max_s``, times 0.5-1."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None):
        self.initial_s, self.max_s = initial_s, max_s
        self.attempt = 0
        self.rng = rng or random.Random()

    def session_ended(self, lived_s: float) -> None:
        """Call when a connection ends: a long enough session resets the back-off."""
        if lived_s >= STABLE_SESSION_S:
            self.attempt = 0

    def next(self) -> float:
        delay = min(self.max_s, self.initial_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return delay * self.rng.uniform(0.5, 1.0)
