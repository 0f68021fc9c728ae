"""Position and PnL tracking: one implementation for live fills and journal recovery.

Quantities are fixed point (int x 1e9, exact); prices and PnL are floats in USD. Replaying the
same fills in the same order gives bit-identical results, which is what makes recovery from the
journal exact. Weighted-average entry; a flip through zero resets the entry to the fill price.
Fees are subtracted from realized and daily PnL on every fill. Daily PnL covers fills since
00:00 UTC of the day of the last fill (``roll_day`` resets it at midnight).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bog.shm.layouts import FIXED

NS_PER_DAY = 86_400 * 1_000_000_000


def utc_day(ts_ns: int) -> int:
    """Days since the Unix epoch (UTC) of a ns timestamp."""
    return ts_ns // NS_PER_DAY


@dataclass
class PositionTracker:
    position_fixed: int = 0  # +long / -short, x1e9
    entry_price: float = 0.0
    realized_pnl: float = 0.0
    daily_pnl: float = 0.0
    day: int = -1
    trades: int = 0
    volume_usd: float = 0.0
    fees_usd: float = 0.0

    @property
    def position(self) -> float:
        return self.position_fixed / FIXED

    def roll_day(self, now_ns: int | None = None) -> bool:
        """Start a new daily PnL if ``now_ns`` is on a later UTC day. True if it rolled."""
        d = utc_day(time.time_ns() if now_ns is None else now_ns)
        if d != self.day:
            rolled = self.day != -1
            self.day = d
            self.daily_pnl = 0.0
            return rolled
        return False

    def apply_fill(self, side: int, qty_fixed: int, price: float, fee_usd: float,
                   ts_ns: int) -> float:
        """Apply one fill (side +1 buy / -1 sell); returns the PnL it realized (before fee)."""
        if side not in (1, -1) or qty_fixed <= 0:
            raise ValueError(f"invalid fill: side={side} qty_fixed={qty_fixed}")
        self.roll_day(ts_ns)
        pos = self.position_fixed
        pnl = 0.0
        if pos == 0 or (pos > 0) == (side > 0):
            held = abs(pos)
            self.entry_price = (self.entry_price * held + price * qty_fixed) / (held + qty_fixed)
            self.position_fixed = pos + side * qty_fixed
        else:
            closing = min(qty_fixed, abs(pos))
            direction = 1 if pos > 0 else -1
            pnl = (price - self.entry_price) * direction * closing / FIXED
            self.position_fixed = pos + side * qty_fixed
            if qty_fixed > closing:
                self.entry_price = price  # flipped: the remainder opened at the fill price
            elif self.position_fixed == 0:
                self.entry_price = 0.0
        self.realized_pnl += pnl - fee_usd
        self.daily_pnl += pnl - fee_usd
        self.trades += 1
        self.volume_usd += price * qty_fixed / FIXED
        self.fees_usd += fee_usd
        return pnl

    def correct(self, new_position_fixed: int) -> int:
        """Set the position to the executor's ledger (reconciliation); returns the delta.

        The entry price is kept (it is unknown for fills that never reached tracking); a
        correction to flat clears it.
        """
        delta = new_position_fixed - self.position_fixed
        self.position_fixed = new_position_fixed
        if new_position_fixed == 0:
            self.entry_price = 0.0
        return delta

    def unrealized(self, mid: float) -> float:
        if self.position_fixed == 0 or mid <= 0:
            return 0.0
        return (mid - self.entry_price) * self.position_fixed / FIXED
