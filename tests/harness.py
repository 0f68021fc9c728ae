"""Drive the compiled engine kernel directly: craft snapshots, run ticks, inspect state.

In-process numpy arrays stand in for the shared-memory mapping (the kernel only sees arrays);
the cross-process behaviour is covered by the end-to-end tests with real processes.
"""

from __future__ import annotations

import time

import numpy as np

from bog.config import build_config, to_dict
from bog.engine import kernel as K
from bog.shm.layouts import (
    DEPTH,
    ENGINE_METRICS,
    FILL,
    FILL_WORDS,
    FIXED,
    FLAG_FULL_SNAPSHOT,
    RING_CAPACITY,
    RING_CTRL_WORDS,
    RING_HEAD,
    RING_TAIL,
    TICK_SLOT,
    TICK_SLOT_WORDS,
)
from bog.shm.ring import fills_commit, fills_peek_into, ticks_publish

QUICK = {
    "execution": {"maker_latency_ms": 0.0},
    "risk": {"min_quote_interval_ms": 0.0},
}


def make_cfg(**sections):
    data = to_dict(build_config({}, env={}))
    for sec, kv in QUICK.items():
        data[sec].update(kv)
    for sec, kv in sections.items():
        data[sec].update(kv)
    return build_config(data, env={})


class KernelHarness:
    def __init__(self, fill_capacity: int = 64, ring_capacity: int = 1024, **sections):
        self.cfg = make_cfg(**sections)
        self.params = K.make_params(self.cfg)
        self.state = K.make_state()
        self.metrics = np.zeros(1, ENGINE_METRICS)
        self.buf = K.Buffers()
        self.quote = np.zeros(2, np.int64)
        self.tctrl = np.zeros(RING_CTRL_WORDS, np.int64)
        self.tctrl[RING_CAPACITY] = ring_capacity
        self.twords = np.zeros(ring_capacity * TICK_SLOT_WORDS, np.int64)
        self.fctrl = np.zeros(RING_CTRL_WORDS, np.int64)
        self.fctrl[RING_CAPACITY] = fill_capacity
        self.fwords = np.zeros(fill_capacity * FILL_WORDS, np.int64)
        self.staging = np.zeros(1, TICK_SLOT)
        self.rpos = np.zeros(1, np.int64)  # the engine's published read position
        self.ex = K.Exec()  # execution.mode dry-run/live: the tests give it rings
        self.seq = 0
        self.ev_seen = 0

    @property
    def st(self):
        return self.state[0]

    @property
    def m(self):
        return self.metrics[0]

    def publish(self, bid: float, ask: float, *, seq: int | None = None, full: bool = False,
                bid_sz: float = 1.0, ask_sz: float = 1.0, trade_px: float = 0.0,
                trade_side: int = 0, trade_sz: float = 0.0, exchange_ts_ns: int | None = None,
                levels: tuple | None = None, recv_ns: int | None = None) -> None:
        """Publish one snapshot; ``recv_ns`` (default: now) is its ``local_recv_ns``, the
        engine's "now" on an event-time ring (``event_time()``)."""
        self.seq = self.seq + 1 if seq is None else seq
        s = self.staging[0]
        now = time.time_ns()
        s["sequence"] = self.seq
        s["bid_px"] = round(bid * FIXED)
        s["ask_px"] = round(ask * FIXED)
        s["bid_sz"] = round(bid_sz * FIXED)
        s["ask_sz"] = round(ask_sz * FIXED)
        s["trade_px"] = round(trade_px * FIXED)
        s["trade_side"] = trade_side
        s["trade_sz"] = round(trade_sz * FIXED)
        s["exchange_ts_ns"] = now if exchange_ts_ns is None else exchange_ts_ns
        s["local_recv_ns"] = now if recv_ns is None else recv_ns
        s["local_publish_ns"] = now
        s["flags"] = FLAG_FULL_SNAPSHOT if full else 0
        if full:
            tick = 0.01
            for k in range(DEPTH):
                s["bid_px_l"][k] = round((bid - k * tick) * FIXED)
                s["ask_px_l"][k] = round((ask + k * tick) * FIXED)
                s["bid_sz_l"][k] = FIXED
                s["ask_sz_l"][k] = FIXED
            if levels is not None:
                bpx, bsz, apx, asz = levels
                s["bid_px_l"][: len(bpx)] = [round(x * FIXED) for x in bpx]
                s["bid_sz_l"][: len(bsz)] = [round(x * FIXED) for x in bsz]
                s["ask_px_l"][: len(apx)] = [round(x * FIXED) for x in apx]
                s["ask_sz_l"][: len(asz)] = [round(x * FIXED) for x in asz]
        ticks_publish(self.tctrl, self.twords, self.staging.view(np.int64))

    def run(self, idle_ns: int = 0) -> int:
        """Process every published tick (then idle for ``idle_ns``); returns ticks processed."""
        n = 0
        while self.st["next_pos"] < self.tctrl[RING_HEAD]:
            n += self._call(time.time_ns())
        if idle_ns:
            n += self._call(time.time_ns() + idle_ns)
        return n

    def _call(self, stop_ns: int) -> int:
        b = self.buf
        return K.engine_run(self.state, self.params, self.metrics, self.tctrl, self.twords,
                            b.snap, b.snap_words, b.orders, self.quote, b.fill, self.fctrl,
                            self.fwords, b.events, b.mailbox, self.rpos, stop_ns, self.ex.ictrl,
                            self.ex.iwords, b.intent, self.ex.vctrl, self.ex.vwords, b.vev,
                            b.trade_ids)

    def open_orders(self) -> list[dict]:
        o = self.buf.orders
        return [{"side": int(r["side"]), "price": r["price"] / FIXED, "qty": r["qty"] / FIXED,
                 "id": int(r["order_id"])} for r in o if r["state"] != K.ORDER_EMPTY]

    def quotes(self) -> tuple[float | None, float | None]:
        bid = ask = None
        for o in self.open_orders():
            if o["side"] > 0:
                bid = o["price"]
            else:
                ask = o["price"]
        return bid, ask

    def take_fills(self) -> list:
        out = np.zeros((self.fctrl[RING_CAPACITY], FILL_WORDS), np.int64)
        n = fills_peek_into(self.fctrl, self.fwords, out)
        fills_commit(self.fctrl, n)
        return list(out[:n].view(FILL).reshape(-1))

    def fill_depth(self) -> int:
        return int(self.fctrl[RING_HEAD] - self.fctrl[RING_TAIL])

    def events(self, typ: int | None = None) -> list[tuple]:
        """Consume the kernel's events (as the engine's Python thread does)."""
        ev = self.buf.events
        rows = ev.reshape(-1, K.EV_WORDS)[1:]
        head, tail = int(ev[K.EVC_HEAD]), int(ev[K.EVC_TAIL])
        out = [tuple(int(x) for x in rows[i % rows.shape[0]]) for i in range(tail, head)]
        ev[K.EVC_TAIL] = head
        return [e for e in out if typ is None or e[0] == typ]

    def set_position(self, btc: float) -> None:
        """Tracked position and the executor's ledger, as after a journal recovery."""
        v = round(btc * FIXED)
        self.st["ledger_fixed"] = v
        self.st["position_fixed"] = v
        self.buf.mailbox[K.MB_POSITION] = v

    def event_time(self) -> None:
        """Read the ring as an event-time ring (a replay), as the engine does at attach. The
        event buffer still drops when full: nobody drains it concurrently here."""
        self.st["event_time"] = 1

    def mail(self, word: int, value: int) -> None:
        self.buf.mailbox[word] = value


# Compile (or load) the kernel before any test publishes timestamped snapshots: a first
# compile takes seconds, which would age the first snapshot past validation's max age.
KernelHarness().run(idle_ns=1)
