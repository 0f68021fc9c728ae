"""The gateway's own hard limits, independent of the engine's [risk] checks.

Whatever the engine asks for, bog-gateway never sends a placement beyond ``[gateway]``:
max order size, max notional per order and per rolling minute, max open orders, and a request
token bucket. A refused intent is counted by reason (``bog_gateway_intents_refused_total``),
logged and answered to the engine as a rejection, so its order slot is freed. Cancels and
cancel-alls are never refused (they only reduce exposure); they take a token when there is
one and go out anyway when there is none (counted as ``rate_limited``).
"""

from __future__ import annotations

import collections
import time

from bog.config import GatewayConfig
from bog.shm.codes import GATEWAY_REFUSE
from bog.shm.layouts import FIXED

MINUTE_S = 60.0


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens = float(burst)
        self.t = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Limits:
    def __init__(self, g: GatewayConfig, now: float | None = None):
        now = time.monotonic() if now is None else now
        self.max_qty = int(round(g.max_order_size_btc * FIXED))
        self.max_notional = g.max_order_notional_usd
        self.max_minute = g.max_notional_per_minute_usd
        self.max_open = g.max_open_orders
        self.bucket = TokenBucket(g.requests_per_s, g.request_burst, now)
        self._placed: collections.deque[tuple[float, float]] = collections.deque()
        self.minute_notional = 0.0

    def _roll(self, now: float) -> None:
        while self._placed and now - self._placed[0][0] >= MINUTE_S:
            self.minute_notional -= self._placed.popleft()[1]
        if not self._placed:
            self.minute_notional = 0.0  # no float residue once the window is empty

    def check_place(self, price_fixed: int, qty_fixed: int, open_orders: int,
                    now: float) -> int | None:
        """None if the placement may go out (it is then counted in the minute's notional and
        took a token), else the GATEWAY_REFUSE code of the first limit it breaks."""
        if price_fixed <= 0 or qty_fixed <= 0:
            return GATEWAY_REFUSE.BAD_INTENT
        if qty_fixed > self.max_qty:
            return GATEWAY_REFUSE.ORDER_SIZE
        notional = price_fixed / FIXED * qty_fixed / FIXED
        if notional > self.max_notional:
            return GATEWAY_REFUSE.ORDER_NOTIONAL
        if open_orders >= self.max_open:
            return GATEWAY_REFUSE.OPEN_ORDERS
        self._roll(now)
        if self.minute_notional + notional > self.max_minute:
            return GATEWAY_REFUSE.MINUTE_NOTIONAL
        if not self.bucket.take(now):
            return GATEWAY_REFUSE.RATE
        self._placed.append((now, notional))
        self.minute_notional += notional
        return None

    def take_cancel(self, now: float) -> bool:
        """A cancel always goes out; False when it found no token (counted by the caller)."""
        return self.bucket.take(now)

    def minute(self, now: float) -> float:
        self._roll(now)
        return self.minute_notional
