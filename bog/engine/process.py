"""bog-engine: strategy and paper execution on every tick of the ticks ring.

Two threads, so the hot path never waits for Python:
- the **hot thread**, pinned to the engine core (optionally SCHED_FIFO), runs the numba kernel
  ``engine_run`` with the GIL released: it busy-polls the ticks ring and never returns while
  running;
- the **main thread**, pinned to the housekeeping core, drains the fill queue into the journal
  and position tracking every millisecond, turns kernel events into log lines and journal
  entries, and does housekeeping (heartbeat, watchdog, bogctl control, reconciliation, daily
  reset, feed re-attachment). It talks to the kernel only through lock-free single-producer
  structures: the fill queue (shm), the event buffer and the mailbox.

Lifecycle: ``startup`` (rebuild position and PnL from the journal, including fills a crashed
engine left in its fill queue; create the fill queue, metrics and control blocks; write an
``EngineStart`` record; compile the kernel; attach the ticks ring; start the hot thread) ->
``main_loop`` -> ``shutdown`` (stop the hot thread, cancel quotes, drain, close, unlink; never
raises).

Nothing reaches position tracking before the journal has it, and a fill leaves the fill queue
only once its journal line is completely written. When the journal cannot be written (full
disk, I/O error) the engine does not exit: it latches the breaker (risk trip "journal write
failed": quotes cancelled, none placed), logs "CRITICAL journal write failed", keeps the fills
in the queue, retries every housekeeping pass, journals them in order once it can, and refuses
``bogctl breaker reset`` until then (see ``_journal_failed``).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from bog.engine import kernel as K
from bog.engine.journal import Journal, JournalWriteError, recover
from bog.engine.pause import PauseFlag
from bog.engine.position import PositionTracker, utc_day
from bog.log import RateLimiter
from bog.process import Service, freeze_startup_objects, pin_to_core, set_realtime
from bog.schedstat import SchedPublisher
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.codes import (
    BREAKER_CAUSE,
    CANCEL_ALL_WHY,
    EXEC_MODE,
    GATEWAY_REFUSE,
    INTENT,
    SIGNAL,
    VENUE_EVENT,
    signal_log_name,
)
from bog.shm.layouts import (
    BREAKER_STATES,
    CONTROL,
    ENGINE_METRICS,
    ENGINE_READ_POS_WORD,
    FEED_STATES,
    FILL,
    FILL_WORDS,
    FIXED,
    JOURNAL_ROTATE,
    JOURNAL_WRITE,
    KIND_CONTROL,
    REJECT_REASONS,
    RING_CAPACITY,
    RING_CTRL_WORDS,
    RING_EVENT_TIME,
    RING_HEAD,
    RING_MIN_SIZE_FIXED,
    RING_TICK_FIXED,
    TICK_SLOT_WORDS,
    VOLUME_USD_EDGES,
)
from bog.shm.metrics import ENGINE, GATEWAY, MetricsBlock
from bog.shm.ring import (
    FillQueue,
    IntentRing,
    VenueEventRing,
    TicksRing,
    fills_commit,
    fills_max_id,
    fills_peek_into,
    fills_pending_position,
    fills_push,
)

log = logging.getLogger("bog.engine")

SIGNAL_LOG_NAMES = tuple(signal_log_name(code) for code in range(len(SIGNAL)))


class _NoFeed:
    """Stands in for the ticks ring while no feed is attached (head stays 0)."""

    def __init__(self):
        self.ctrl = np.zeros(RING_CTRL_WORDS, np.int64)
        self.ctrl[RING_CAPACITY] = 2
        self.words = np.zeros(2 * TICK_SLOT_WORDS, np.int64)
        self.segment = None
        self.epoch = 0


GATEWAY_STALE_S = 2.0  # gateway heartbeat older than this: down (no quoting, dry-run/live)
DRAIN_PERIOD_S = 0.001  # main thread: fill queue and event buffer polling
RING_DRAIN_STUCK_S = 1.0  # a closed feed ring is read to its end unless no progress this long
FOREVER_NS = 1 << 62


def reject_reason(code: int) -> str:
    """What a rejection code of a venue event means, when bog knows: the gateway's own refusals
    (-(1 + GATEWAY_REFUSE)), bog's codes for the venue's refusal statuses (<= -200, e.g. -201
    post-only); "" for the venue's own numeric codes and the venue client's (-100 + code)."""
    from bog.venue import lighter as L

    for status, c in L.STATUS_REJECT_CODES.items():
        if c == code:
            return status
    if code == L.STATUS_REJECT_OTHER:
        return "canceled by the venue"
    if -len(GATEWAY_REFUSE) <= code <= -1:
        return f"gateway: {GATEWAY_REFUSE[-code - 1]}"
    return ""


def journal_path(cfg, instance: str) -> str:
    base = os.environ.get("BOG_STATE_DIR") or cfg.execution.journal_dir
    return os.path.join(base, instance, "journal.jsonl")


class EngineService(Service):
    name = "engine"
    # wall clock of housekeeping (heartbeat, UTC day rollover: daily PnL reset, loss-trip
    # re-arm, journal rotation); tests replace it to cross midnight without waiting for it
    clock_ns = staticmethod(time.time_ns)

    # -- startup ----------------------------------------------------------------------------
    def startup(self) -> None:
        cfg = self.cfg
        self.names = SegmentNames(self.instance)
        self.metrics = self.fills = self.control = self.journal = None
        self.hot = None
        self._sched = None
        self.params = K.make_params(cfg)
        self.state = K.make_state()
        self.buf = K.Buffers()
        self.quote = np.zeros(2, np.int64)
        self.fill_out = np.zeros((256, FILL_WORDS), np.int64)  # drain batch (loops until empty)
        self.limiter = RateLimiter(burst=5, period_s=10.0)
        self._say_levels: dict[str, int] = {}
        self._loss_tripped = False  # daily loss trip requested (until reset or a new day)
        self._day = utc_day(self.clock_ns())  # UTC day of the daily PnL and of the journal
        self.mb = self.buf.mailbox
        self.ev = self.buf.events
        self.ex = K.Exec()  # the gateway's rings (dry-run/live); empty stand-ins on paper
        self.mode = EXEC_MODE.index(cfg.execution.mode)
        self.paper = self.mode == EXEC_MODE.PAPER
        self.intents = self.vring = self.gw = None
        self._trade_ids: dict[int, None] = {}  # venue trade ids applied (Python-side dedupe)
        self._gateway_up = False
        self._gateway_why = "not started"
        self._hot_returns = 0
        self._hot_stop = False
        self._hot_error: BaseException | None = None
        self._hot_pinned = threading.Event()
        self._last_drift = 0
        self._journal_error: str | None = None  # set while journal writes fail
        self._journal_failed_at = 0.0
        self.event_time = False  # reading an event-time ring (a replay): "now" is the data's

        # The metrics block first: it is how a live engine is detected (create() refuses).
        self.metrics = MetricsBlock.create(self.names.engine_metrics, ENGINE)
        # the kernel's published read position (replay back-pressure, docs/replay.md): one
        # word of this engine's own metrics block, so no other segment is ever written by it
        self._read_pos = self.metrics.segment.words(0, ENGINE_METRICS.itemsize // 8)[
            ENGINE_READ_POS_WORD:ENGINE_READ_POS_WORD + 1]
        self.tracker, carried = self._recover()
        # The new fill queue replaces the dead engine's. Fills of the old queue the journal
        # could not take now (full disk) are carried over into the new one, first in line:
        # they stay in shared memory, and are journaled as soon as the journal is writable.
        cap = cfg.execution.fill_queue_size
        if len(carried) > cap:
            log.warning("fill queue enlarged from %d to %d to carry over the %d unjournaled "
                        "fills of the old queue", cap, len(carried), len(carried))
            cap = len(carried)
        self.fills = FillQueue.create(self.names.fills, cap)
        carried_pos = 0
        for r in carried:
            fills_push(self.fills.ctrl, self.fills.words, np.ascontiguousarray(r).view(np.int64))
            carried_pos += int(r["side"]) * int(r["qty"])
        if not self.paper:
            # dry-run/live: orders become intents for bog-gateway; no quoting until it is up
            self.intents = IntentRing.create(self.names.intents, cfg.execution.intent_ring_size)
            self.ex.ictrl, self.ex.iwords = self.intents.ctrl, self.intents.words
            self.mb[K.MB_GATEWAY_DOWN] = 1
            for tid in self._trade_ids:
                K.trade_id_seen(self.buf.trade_ids, tid)
            log.info("execution mode %s: orders go to bog-gateway through %s (capacity %d); "
                     "%d venue trade ids known from the journal", cfg.execution.mode,
                     self.names.intents, self.intents.capacity, len(self._trade_ids))
        ctl = seg_mod.create(self.names.control, KIND_CONTROL, CONTROL.itemsize)
        self.control = ctl
        self.ctl = ctl.view(CONTROL)
        self._start_paused_if_persisted()

        st = self.state[0]
        st["position_fixed"] = self.tracker.position_fixed
        # the executor's ledger: tracked position plus the fills still queued
        st["ledger_fixed"] = self.tracker.position_fixed + carried_pos
        # the kernel's daily loss limit continues the recovered day
        st["pnl_entry"] = self.tracker.entry_price
        st["daily_pnl"] = self.tracker.daily_pnl
        st["pnl_day"] = self.tracker.day
        self.mb[K.MB_POSITION] = self.tracker.position_fixed
        m = self.metrics.m[0]
        m["pid"] = os.getpid()
        m["start_ns"] = self.started_ns
        m["core"] = -1
        m["fill_queue_capacity"] = cap
        m["max_position_btc"] = cfg.risk.max_position_btc
        m["max_daily_loss_usd"] = cfg.risk.max_daily_loss_usd
        m["exec_mode"] = self.mode
        self._publish_position()
        if self.tracker.daily_pnl <= -cfg.risk.max_daily_loss_usd:
            # a restart must not clear a daily-loss halt: start latched
            log.critical("daily PnL %.2f USD is beyond the daily loss limit %.2f USD at start",
                         self.tracker.daily_pnl, cfg.risk.max_daily_loss_usd)
            self._loss_tripped = True
            st["loss_tripped"] = 1
            self._request_trip(K.TRIP_DAILY_LOSS)
        # Written before the kernel first runs: with an unwritable journal the breaker is
        # latched before the first tick, so the engine never quotes (see _journal_failed).
        if self._journal_error is None:
            self._journal_write(lambda: self.journal.engine_start(
                time.time_ns(), os.getpid(), self._last_fill_id, int(st["next_fill_id"])),
                "at start")
        if (self._journal_error is None
                and self.journal.size() > cfg.execution.journal_rotate_mb * 1e6):
            self._rotate_journal("larger than journal_rotate_mb")

        self.ring = _NoFeed()
        self.feed_epoch = 0
        self._ring_drain = None  # (read position, since) while reading a closed ring to its end
        # compile (or load from numba's cache) before attaching and declaring ready
        self._run_kernel(0)
        # the full collection now, not on the feed's core once ticks flow, and before the
        # ring is attached (ticks published during it would wait); the base class's freeze
        # after startup then finds almost nothing to do
        freeze_startup_objects()
        self._attach_feed(first=True)
        self._last_reconcile = time.monotonic()
        self._seen_reset = int(self.ctl[0]["breaker_reset_requests"])
        self._seen_reconcile = int(self.ctl[0]["reconcile_requests"])
        self._reset_pending: tuple[int, int] | None = None  # (mailbox seq, request) to ack
        self.hot = threading.Thread(target=self._hot_loop, name="bog-engine-hot", daemon=True)
        self.hot.start()
        self._hot_pinned.wait(10)  # until the hot thread has pinned itself
        hot_core = self.core
        # the hot thread's run-queue wait and preemptions, read by housekeeping (not the
        # hot thread) about once a second: another task on the engine core shows there
        self._sched = SchedPublisher(m, int(m["hot_tid"])) if int(m["hot_tid"]) > 0 else None
        # then this (main) thread moves to the housekeeping core; threads pin individually
        pin_to_core(cfg.process.engine_housekeeping_core)
        self.core = hot_core
        m["heartbeat_ns"] = time.time_ns()
        m["running"] = 1
        for seg in (self.metrics.segment, self.fills.segment, self.control):
            seg.mark_ready()
        if self.intents is not None:
            self.intents.segment.mark_ready()
            self._check_gateway()

    # -- hot thread -------------------------------------------------------------------------
    def _hot_loop(self) -> None:
        """The engine's hot thread: pinned, the kernel runs until the mailbox says stop."""
        try:
            core = pin_to_core(self.cfg.process.engine_core)  # this thread only
            # it polls whenever ticks flow (engine_idle_sleep_us only applies when idle)
            set_realtime(self.cfg.process.engine_realtime_priority, busy_poll=True)
            self.core = core
            self.metrics.m[0]["core"] = core
            self.metrics.m[0]["hot_tid"] = threading.get_native_id()
            self._hot_pinned.set()
            while not self._hot_stop:
                self._run_kernel(FOREVER_NS)
                self._hot_returns += 1
                while self.mb[K.MB_STOP] and not self._hot_stop:
                    time.sleep(0.0002)  # parked while the main thread swaps the feed ring
        except BaseException as e:  # reported by the main thread
            self._hot_error = e
            self.should_exit = True
            self._hot_pinned.set()

    def _park_hot(self) -> None:
        """Stop the kernel and wait until the hot thread is parked (not touching the ring)."""
        if self.hot is None or not self.hot.is_alive():
            return
        seen = self._hot_returns
        self.mb[K.MB_STOP] = 1
        while self._hot_returns == seen and self.hot.is_alive():
            if self.event_time:
                self.drain_events()  # the kernel may be waiting for room (event time)
            time.sleep(0.0002)

    def _unpark_hot(self) -> None:
        self.mb[K.MB_STOP] = 0

    def _recover(self) -> tuple[PositionTracker, list]:
        """Rebuild position/PnL from the journal plus fills stranded in a dead engine's queue.

        The journal is repaired first (``recover(repair=True)``: a torn last line is moved to a
        side file and cut off). Stranded fills (ids above the last journaled one) are then
        journaled and applied in order; those the journal cannot take (full disk) are returned,
        to be carried over into the new fill queue. The next fill id is above every id seen:
        the journal's (torn and malformed lines included) and every slot of the old queue.
        """
        path = journal_path(self.cfg, self.instance)
        rec = recover(path, repair=True)
        self.journal = Journal(path)
        if rec.missing_newline:
            self.journal.start_new_line()
        stranded, old_max_id = self._stranded_fills(rec.last_fill_id)
        self._last_fill_id = rec.last_fill_id
        self._trade_ids = rec.trade_ids
        if rec.duplicate_trades:
            log.warning("journal %s: %d fills repeat a venue trade id already applied: skipped",
                        path, rec.duplicate_trades)
        carried: list = []
        for i, f in enumerate(stranded):
            rec.last_order_id = max(rec.last_order_id, int(f["order_id"]))
            if carried or self._journal_error is not None:
                carried.append(f)
                continue
            if not self._journal_write(lambda f=f: self._journal_and_apply(rec.tracker, f),
                                       "at start, journaling the old fill queue"):
                carried.append(f)
        st = self.state[0]
        st["next_order_id"] = rec.last_order_id + 1
        st["next_fill_id"] = max(rec.max_fill_id, old_max_id, self._last_fill_id) + 1
        t = rec.tracker
        if rec.fills or stranded:
            log.info("recovered from journal %s: %d fills (+%d from the old fill queue%s), "
                     "position %.9f BTC, entry %.2f, realized PnL %.2f USD, daily PnL %.2f USD",
                     path, rec.fills, len(stranded) - len(carried),
                     f", {len(carried)} more carried over unjournaled" if carried else "",
                     t.position, t.entry_price, t.realized_pnl, t.daily_pnl)
        if rec.malformed:
            log.error("journal %s: %d malformed lines skipped (lines %s)", path,
                      len(rec.malformed), ", ".join(map(str, rec.malformed[:10])))
        if rec.torn_fill_id and not any(int(f["fill_id"]) == rec.torn_fill_id for f in stranded):
            log.error("journal %s: the torn last line was fill %d, which is not in the old fill "
                      "queue: it is lost to position tracking until reconciled (bytes kept in "
                      "%s)", path, rec.torn_fill_id, rec.torn_saved or "the log")
        return t, carried

    def _stranded_fills(self, last_fill_id: int) -> tuple[list, int]:
        """Fills a crashed engine produced but never journaled (still in its shm queue), and
        the highest fill id anywhere in that queue."""
        try:
            old = FillQueue.attach(self.names.fills)
        except seg_mod.SegmentError:
            return [], 0
        try:
            h = old.segment.header[0]
            if seg_mod.owner_alive(int(h["owner_pid"]), int(h["owner_start_ticks"])):
                return [], 0
            out = np.zeros((old.capacity, FILL_WORDS), np.int64)
            n = fills_peek_into(old.ctrl, old.words, out)
            recs = out[:n].copy().view(FILL).reshape(-1)
            max_id = int(fills_max_id(old.ctrl, old.words))
            return [r for r in recs if int(r["fill_id"]) > last_fill_id], max_id
        finally:
            old.close(unlink=False)

    # -- main loop --------------------------------------------------------------------------
    def main_loop(self) -> None:
        period_ns = int(self.cfg.process.housekeeping_ms * 1e6)
        next_hk = time.time_ns() + period_ns
        stop_drain = self.cfg.execution.fault_stop_fill_drain
        while not self.should_exit:
            time.sleep(DRAIN_PERIOD_S)
            if not stop_drain and self._journal_error is None and not self.event_time:
                self.drain_fills()  # while the journal fails, housekeeping retries
            # (event time: drain_events journals each fill at its place among the events)
            self.drain_events()
            now = time.time_ns()
            if now >= next_hk:
                self.housekeeping()
                next_hk = now + period_ns
        if self._hot_error is not None:
            raise RuntimeError(f"engine hot thread failed: {self._hot_error!r}")

    def _run_kernel(self, stop_ns: int) -> int:
        b = self.buf
        return K.engine_run(self.state, self.params, self.metrics.m, self.ring.ctrl,
                            self.ring.words, b.snap, b.snap_words, b.orders, self.quote,
                            b.fill, self.fills.ctrl, self.fills.words, b.events, b.mailbox,
                            self._read_pos, stop_ns, self.ex.ictrl, self.ex.iwords, b.intent,
                            self.ex.vctrl, self.ex.vwords, b.vev, b.trade_ids)

    # -- fills ------------------------------------------------------------------------------
    def drain_fills(self, upto: int | None = None) -> int:
        """Journal then apply every queued fill (with ``upto``: those with an id up to it), in
        order; each leaves the queue only once its journal line is completely written. On a
        journal failure the fill (and every one after it) stays in the queue and
        ``_journal_failed`` halts trading.

        The daily loss limit is the kernel's, at the fill (``K._daily_pnl``); on the wall
        clock this thread also checks it after each fill (a second line of defence). Not in
        event time: a trip requested here would land on whichever tick is running when the
        drain happens, which depends on the machine."""
        total = 0
        ctrl, words = self.fills.ctrl, self.fills.words
        limit = -self.cfg.risk.max_daily_loss_usd
        check_loss = not self.event_time
        while True:
            n = fills_peek_into(ctrl, words, self.fill_out)
            if n == 0:
                break
            recs = self.fill_out[:n].view(FILL).reshape(-1)
            for r in recs:
                if upto is not None and int(r["fill_id"]) > upto:
                    n = -1
                    break
                if not self._journal_write(lambda r=r: self._journal_and_apply(self.tracker, r),
                                           "draining the fill queue"):
                    n = -1
                    break
                fills_commit(ctrl, 1)  # journaled: now it may leave the queue
                total += 1
                # the limit applies at every fill, not to the net of a batch
                if check_loss and self.tracker.daily_pnl <= limit and not self._loss_tripped:
                    self._loss_tripped = True
                    self._request_trip(K.TRIP_DAILY_LOSS)
            if n < 0:
                break
        if total:
            self._publish_position()
        return total

    def _request_trip(self, reason: int) -> None:
        self.mb[K.MB_TRIP_REASON] = reason
        self.mb[K.MB_TRIP_SEQ] += 1  # after the reason: the kernel reads seq, then reason

    def _journal_and_apply(self, tracker: PositionTracker, r) -> None:
        """Journal one fill (raises JournalWriteError, nothing applied) and apply it."""
        side, qty, price_fixed = int(r["side"]), int(r["qty"]), int(r["price"])
        fee_fixed, ts = int(r["fee_usd"]), int(r["ts_ns"])
        tid = int(r["trade_id"])
        if tid and tid in self._trade_ids:
            # a venue trade applied already (redelivered): never twice. The kernel's table
            # catches redeliveries first; this guards fills carried over from a dead engine
            self._last_fill_id = int(r["fill_id"])
            if self.metrics is not None:
                self.metrics.m[0]["venue_fills_duplicate_total"] += 1
            log.warning("duplicate venue fill ignored: trade %d (fill %d, order %d) is already "
                        "in the journal", tid, int(r["fill_id"]), int(r["order_id"]))
            return
        self.journal.fill(int(r["fill_id"]), int(r["order_id"]), side, price_fixed, qty,
                          fee_fixed, int(r["liquidity"]), ts, trade_id=tid)
        if tid:
            self._trade_ids[tid] = None
        self._last_fill_id = int(r["fill_id"])
        tracker.apply_fill(side, qty, price_fixed / FIXED, fee_fixed / FIXED, ts)
        if self.metrics is not None:
            m = self.metrics.m[0]
            m["fills_received_total"][0 if side > 0 else 1] += 1
            notional = price_fixed / FIXED * qty / FIXED
            m["volume_usd_bucket"][int(np.searchsorted(VOLUME_USD_EDGES, notional, "left"))] += 1
            m["volume_usd_sum"] += notional

    # -- journal failures -------------------------------------------------------------------
    def _journal_write(self, write, what: str) -> bool:
        """Run one journal write; False (and ``_journal_failed``) if it did not complete."""
        try:
            write()
        except JournalWriteError as e:
            self._journal_failed(e, what)
            return False
        return True

    def _journal_failed(self, e: JournalWriteError, what: str) -> None:
        """A journal write did not complete (full disk, I/O error): stop trading, keep state.

        Counted in ``bog_journal_errors_total{op="write"}``. The first failure of an episode
        latches the breaker through the mailbox (risk trip "journal write failed": the kernel
        cancels every quote and places none) and logs one CRITICAL line; later retries log
        rate-limited ERROR lines. Nothing is lost: unwritten fills stay in the fill queue,
        unwritten order events and corrections in the journal's pending list, and
        housekeeping retries every pass (``_retry_journal``). The process does not exit.
        """
        m = self.metrics.m[0]
        m["journal_errors_total"][JOURNAL_WRITE] += 1
        m["journal_write_failing"] = 1
        queued = self.fills.depth if self.fills is not None else 0
        if self._journal_error is None:
            self._journal_error = str(e)
            self._journal_failed_at = time.monotonic()
            self._request_trip(K.TRIP_JOURNAL_FAILURE)
            log.critical("CRITICAL journal write failed (%s): %s (errno %d). Trading halted: "
                         "breaker latched, quotes cancelled; %d fills wait in the fill queue "
                         "and %d events in memory, nothing is applied before it is journaled; "
                         "retrying every housekeeping pass", what, e, e.errno, queued,
                         self.journal.pending)
            return
        self._journal_error = str(e)
        if int(m["circuit_breaker_latched"]) == 0:
            self._request_trip(K.TRIP_JOURNAL_FAILURE)  # keep it latched (a reset slipped by)
        self._say("journal", logging.ERROR, "journal write still failing for %.0f s: %s "
                  "(%d fills waiting in the fill queue)",
                  time.monotonic() - self._journal_failed_at, e, queued)

    def _flush_journal(self) -> bool:
        """Write pending order events (not while failing: housekeeping retries)."""
        if self._journal_error is not None:
            return False
        return self._journal_write(self.journal.flush, "writing order events")

    def _retry_journal(self) -> None:
        """Housekeeping while the journal fails: flush events, drain fills, in that order."""
        errors = self.metrics.m[0]["journal_errors_total"]
        before = int(errors[JOURNAL_WRITE])
        if not self._journal_write(self.journal.flush, "retrying"):
            return
        n = 0
        if not self.cfg.execution.fault_stop_fill_drain:
            n = self.drain_fills()
            if int(errors[JOURNAL_WRITE]) != before:
                return  # failed again (counted and logged by _journal_failed)
        self._journal_error = None
        self.metrics.m[0]["journal_write_failing"] = 0
        log.warning("journal writable again after %.1f s (%s): %d queued fills journaled in "
                    "order; the breaker stays latched until 'bogctl breaker reset'",
                    time.monotonic() - self._journal_failed_at, self.journal.path, n)

    def _publish_position(self) -> None:
        t = self.tracker
        self.mb[K.MB_POSITION] = t.position_fixed
        m = self.metrics.m[0]
        m["position_btc"] = t.position
        m["entry_price_usd"] = t.entry_price
        m["realized_pnl_usd"] = t.realized_pnl
        m["daily_pnl_usd"] = t.daily_pnl
        m["trades_total"] = t.trades
        m["volume_usd_total"] = t.volume_usd
        m["fees_usd_total"] = t.fees_usd
        m["unrealized_pnl_usd"] = t.unrealized(float(self.state[0]["mid"]))

    # -- events -> logs and journal -----------------------------------------------------------
    def drain_events(self) -> None:
        ev = self.ev
        head, tail = int(ev[K.EVC_HEAD]), int(ev[K.EVC_TAIL])
        if head == tail:
            return
        rows = ev.reshape(-1, K.EV_WORDS)[1:]
        cap = rows.shape[0]
        for i in range(tail, head):
            self._handle_event(rows[i % cap])
        ev[K.EVC_TAIL] = head  # hands the slots back to the kernel
        self._flush_journal()  # order events reach the file within a millisecond too

    def _say(self, key: str, level: int, msg: str, *args) -> None:
        self._say_levels[key] = level  # the summary of suppressed lines keeps their level
        ok, suppressed = self.limiter.allow(key)
        if ok:
            if suppressed:
                msg += f" (suppressed {suppressed} similar)"
            log.log(level, msg, *args)

    def _handle_event(self, e) -> None:
        typ, ts, a, b, c, d = (int(x) for x in e[:6])
        if typ == K.EV_ORDER_SUBMIT:
            side = "buy" if b > 0 else "sell"
            base = {"ts_ms": ts // 1_000_000, "ts_ns": ts, "order_id": a, "side": side,
                    "price": c / FIXED, "qty": d / FIXED}
            self.journal.event({"type": "OrderSubmit", **base})
            if self.paper:
                self.journal.event({"type": "OrderAck", **base})  # paper: acknowledged at once
        elif typ == K.EV_VENUE:
            self._venue_event(ts, a, b, c, d)
        elif typ == K.EV_CANCEL_ALL:
            self.journal.event({"type": "CancelAll", "ts_ms": ts // 1_000_000, "ts_ns": ts,
                                "reason": CANCEL_ALL_WHY[a], "orders": b})
            log.warning("Cancel-all sent to bog-gateway (%s): %d orders at the venue",
                        CANCEL_ALL_WHY[a], b)
        elif typ == K.EV_INTENT_DROPPED:
            self._say("intent-dropped", logging.ERROR,
                      "order intent dropped: intent ring %s full (capacity %d; is bog-gateway "
                      "reading it?): %s of order %d not sent", self.names.intents, d,
                      INTENT[a], b)
        elif typ == K.EV_FILL_DUPLICATE:
            log.warning("duplicate venue fill ignored: trade %d (order %d, %.9f @ %.2f) was "
                        "applied already", a, b, c / FIXED, d / FIXED)
        elif typ == K.EV_TRADE_IDS_RESET:
            log.info("venue trade id table full (%d ids): cleared, only new trades are tracked "
                     "from now on (the journal keeps every id)", a)
        elif typ == K.EV_ORDER_CANCEL:
            self.journal.event({"type": "OrderCancel", "ts_ms": ts // 1_000_000, "ts_ns": ts,
                                "order_id": a, "side": "buy" if b > 0 else "sell",
                                "remaining_qty": d / FIXED})
        elif typ == K.EV_FILL:
            # event time: fill ``a`` was queued here among the events; journaled here, so the
            # journal keeps the kernel's order (while the journal fails, housekeeping's retry
            # journals the queue instead)
            if self._journal_error is None:
                self.drain_fills(upto=a)
        elif typ == K.EV_SIGNAL:
            self._say("signal", logging.INFO, "Signal::%s bid=%.2f ask=%.2f mid=%.2f seq=%d",
                      SIGNAL_LOG_NAMES[a], b / FIXED, c / FIXED, float(self.state[0]["mid"]), d)
        elif typ == K.EV_GAP:
            self._say("gap", logging.WARNING,
                      "Sequence gap: expected %d, got %d (%d updates missing)", a + 1, b, c)
        elif typ == K.EV_BACKWARDS:
            self._say("backwards", logging.WARNING,
                      "Sequence gap: sequence went backwards %d -> %d without a feed restart "
                      "(anomaly counted, resynced)", a, b)
        elif typ == K.EV_REJECT:
            self._say(f"reject{a}", logging.WARNING,
                      "Rejected snapshot seq %d: %s (bid %.2f ask %.2f)", d, REJECT_REASONS[a],
                      b / FIXED, c / FIXED)
        elif typ == K.EV_BREAKER and c == K.CAUSE_MANUAL:
            self._journal_breaker(ts, a, b, c, d)
            log.warning("Circuit breaker reset by bogctl (was %s%s)", BREAKER_STATES[a],
                        ", latched" if d else "")
        elif typ == K.EV_BREAKER:
            self._journal_breaker(ts, a, b, c, d)
            level = logging.CRITICAL if b == K.BREAKER_OPEN else logging.WARNING
            log.log(level, "Circuit breaker %s -> %s (%s)%s", BREAKER_STATES[a],
                    BREAKER_STATES[b], BREAKER_CAUSE[c],
                    " - latched until 'bogctl breaker reset'" if d else "")
        elif typ == K.EV_RISK_TRIP:
            log.critical("Circuit breaker tripped by risk: %s - trading halted until "
                         "'bogctl breaker reset'", K.TRIP_NAMES[a])
        elif typ == K.EV_STALE:
            log.warning("Stale data: no market update for %.1f ms (feed STALE), quotes cancelled",
                        a / 1000)
        elif typ == K.EV_OFFLINE:
            log.error("Stale data: feed OFFLINE, no market update for %.1f ms", a / 1000)
        elif typ == K.EV_FRESH:
            log.info("Stale data cleared: feed fresh again after %.1f ms (was %s)", a / 1000,
                     FEED_STATES[b])
        elif typ == K.EV_FILL_DROPPED:
            self._say("dropped", logging.CRITICAL,
                      "CRITICAL fills dropped: fill queue full (capacity %d), order %d %s %.9f @ "
                      "%.2f lost to position tracking until reconciled",
                      self.fills.capacity, a, "buy" if b > 0 else "sell", c / FIXED, d / FIXED)
        elif typ == K.EV_OVERRUN:
            self._say("overrun", logging.ERROR,
                      "Ring overrun: engine fell behind the ticks ring, %d ticks lost, resynced "
                      "to the newest snapshot", a)

    # -- execution gateway (dry-run / live) ---------------------------------------------------
    _VENUE_JOURNAL = {VENUE_EVENT.ACKED: "OrderAck", VENUE_EVENT.REJECTED: "OrderReject",
                      VENUE_EVENT.CANCELLED: "OrderCancelled", VENUE_EVENT.EXPIRED: "OrderExpired",
                      VENUE_EVENT.RESET: "VenueReset"}

    def _venue_event(self, ts: int, kind: int, coi: int, code: int, order_index: int) -> None:
        doc = {"type": self._VENUE_JOURNAL.get(kind, VENUE_EVENT[kind]), "ts_ms": ts // 1_000_000,
               "ts_ns": ts}
        if kind != VENUE_EVENT.RESET:
            doc["order_id"] = coi
        if kind == VENUE_EVENT.REJECTED:
            doc["code"] = code
            why = reject_reason(code)
            if why:
                doc["reason"] = why
            self._say("venue-reject", logging.WARNING,
                      "Order rejected by the venue: order %d, code %d%s", coi, code,
                      f" ({why})" if why else "")
        elif kind == VENUE_EVENT.ACKED and order_index:
            doc["venue_order_index"] = order_index
        elif kind == VENUE_EVENT.RESET:
            log.warning("bog-gateway (re)started and cancelled every order at the venue: the "
                        "order table is cleared")
        self.journal.event(doc)

    def _check_gateway(self) -> None:
        """dry-run/live: attach the gateway's venue-event ring and metrics block (again after
        a gateway restart) and tell the kernel whether the gateway is up (else no quoting)."""
        if self.intents is None:
            return
        if self.gw is not None and self.gw.segment.replaced_or_closed():
            self.gw.close(unlink=False)
            self.gw = None
        m = self.metrics.m[0]
        if self.gw is None:
            self.gw = seg_mod.try_attach(
                lambda: MetricsBlock.attach(self.names.gateway_metrics, GATEWAY), m, log)
        if self.vring is None or (self.vring.segment.replaced_or_closed()
                                  and self.vring.depth == 0):
            ring = seg_mod.try_attach(
                lambda: VenueEventRing.attach(self.names.venue_events, writable=True), m, log,
                held=self.vring)
            if ring is not None:
                self._park_hot()
                old = self.vring
                self.vring = ring
                self.ex.vctrl, self.ex.vwords = ring.ctrl, ring.words
                self._unpark_hot()
                if old is not None:
                    old.close(unlink=False)
                log.info("attached to the gateway's venue-event ring %s (%d events waiting)",
                         self.names.venue_events, ring.depth)
        up, why = False, "not running"
        if self.gw is not None:
            g = self.gw.m[0]
            age = (time.time_ns() - int(g["heartbeat_ns"])) / 1e9
            alive = seg_mod.owner_alive(int(self.gw.segment.header[0]["owner_pid"]),
                                        int(self.gw.segment.header[0]["owner_start_ticks"]))
            if not alive or int(g["running"]) != 1:
                why = "not running"
            elif age > GATEWAY_STALE_S:
                why = f"heartbeat {age:.1f} s old"
            elif int(g["connected"]) != 1:
                why = "not connected to the venue"
            elif self.vring is None:
                why = "no venue-event ring"
            else:
                up = True
            if int(g["venue_position_ns"]):
                self.metrics.m[0]["venue_position_btc"] = int(g["venue_position_fixed"]) / FIXED
        if up != self._gateway_up or (not up and why != self._gateway_why):
            if up:
                log.warning("Gateway up: bog-gateway connected, quoting through it")
            else:
                log.error("Gateway down: bog-gateway %s; no quoting (orders at the venue are "
                          "the gateway's to cancel)", why)
        self._gateway_up, self._gateway_why = up, why
        self.mb[K.MB_GATEWAY_DOWN] = 0 if up else 1
        st, m = self.state[0], self.metrics.m[0]
        m["orders_pending"] = sum(1 for o in self.buf.orders if int(o["state"]) == K.ORDER_PENDING)
        m["orders_cancel_pending"] = int(st["cancel_pending"])

    def _journal_breaker(self, ts: int, old: int, new: int, cause: int, latched: int) -> None:
        """A ``Breaker`` record per transition (and per manual reset): the report's time in
        each breaker state comes from these."""
        self.journal.event({"type": "Breaker", "ts_ms": ts // 1_000_000, "ts_ns": ts,
                            "from": BREAKER_STATES[old], "to": BREAKER_STATES[new],
                            "cause": BREAKER_CAUSE.names[cause].lower(),
                            "latched": bool(latched)})

    def trading_now(self) -> int:
        """The engine's time for what acts on trading: the wall clock, or on an event-time
        ring (a replay) the kernel's event clock (the newest tick's time; 0 before the
        first)."""
        if self.event_time:
            return int(self.state[0]["event_ns"])
        return self.clock_ns()

    # -- housekeeping -----------------------------------------------------------------------
    def housekeeping(self) -> None:
        now = self.clock_ns()
        m = self.metrics.m[0]
        m["heartbeat_ns"] = now
        m["shm_untrusted_total"] = seg_mod.untrusted_total()
        if self._sched is not None:
            self._sched.poll()
        self.watchdog()
        if self._journal_error is not None:
            self._retry_journal()
        self._check_control()
        if self.event_time:
            # event time: the daily PnL follows the data's UTC day (the kernel's limit rolls at
            # the fills); the journal is not rotated by day (a replay keeps one journal)
            ev = self.trading_now()
            if ev and self.tracker.roll_day(ev):
                log.info("new UTC day in the replayed data: daily PnL reset")
                self._publish_position()
            else:
                m["unrealized_pnl_usd"] = self.tracker.unrealized(float(self.state[0]["mid"]))
        else:
            self.tracker.roll_day(now)  # (a fill after midnight may already have rolled it)
            if utc_day(now) != self._day:
                self._day = utc_day(now)
                self._loss_tripped = False
                log.info("new UTC day: daily PnL reset")
                self._rotate_journal("new UTC day")
                self._publish_position()
            else:
                m["unrealized_pnl_usd"] = self.tracker.unrealized(float(self.state[0]["mid"]))
        period = self.cfg.execution.reconcile_every_s
        if time.monotonic() - self._last_reconcile >= period:
            self._last_reconcile = time.monotonic()
            self.reconcile()
        self._check_feed()
        self._check_gateway()
        self._flush_journal()
        for key, n in self.limiter.flush():
            log.log(self._say_levels.get(key, logging.WARNING),
                    "%s: suppressed %d similar lines in the last %.0f s", key, n,
                    self.limiter.period_s)

    def _rotate_journal(self, why: str) -> None:
        """Archive the journal and continue from a checkpoint (keeps recovery fast).

        A failed rotation is harmless (``Journal.rotate`` leaves the journal and its descriptor
        as they were): counted in ``bog_journal_errors_total{op="rotate"}``, logged, and
        the engine keeps journaling to the same file. Not attempted while writes fail."""
        if self._journal_error is not None:
            log.error("journal rotation (%s) skipped: journal writes are failing", why)
            return
        try:
            archive = self.journal.rotate(self.tracker, self._last_fill_id,
                                          int(self.state[0]["next_order_id"]) - 1,
                                          tuple(self._trade_ids))
        except JournalWriteError as e:  # pending events could not be written first
            self._journal_failed(e, f"before rotating the journal ({why})")
            return
        except OSError as e:  # keep journaling to the current file
            self.metrics.m[0]["journal_errors_total"][JOURNAL_ROTATE] += 1
            log.error("journal rotation (%s) failed: %s; continuing in the same file", why, e)
            return
        log.info("journal rotated (%s): archived as %s; the new journal starts with a "
                 "checkpoint", why, archive)

    def reconcile(self) -> None:
        """Compare tracked position (+ fills still queued) with the executor's ledger (paper,
        dry-run) or the venue's position (live), and correct the tracked position to it. Live,
        the kernel's ledger is corrected by the same delta (mailbox ``MB_CORRECT_*``): the
        strategy and the position limit use it. ``executor_position_btc``: the kernel's ledger.

        The hot thread may be between updating its ledger and queueing a fill while this
        reads, so a drift is corrected only when two consecutive checks find the same one.
        """
        st = self.state[0]
        ledger = int(st["ledger_fixed"])
        self.metrics.m[0]["executor_position_btc"] = ledger / FIXED
        what = "executor ledger"
        snap_ns = 0
        if self.mode == EXEC_MODE.LIVE:
            # live: the venue's account is the truth (the gateway reads it every
            # gateway.reconcile_every_s); a drift counts only when two different venue
            # snapshots agree on it (fills in flight between venue and journal are not drift)
            g = self.gw.m[0] if self.gw is not None else None
            if g is None or not int(g["venue_position_ns"]):
                return
            snap_ns = int(g["venue_position_ns"])
            if snap_ns == getattr(self, "_last_venue_snap", 0):
                return
            self._last_venue_snap = snap_ns
            if (int(self.metrics.m[0]["last_fill_ns"]) >= snap_ns
                    or (self.vring is not None and self.vring.depth > 0)):
                # a fill applied after the venue's account was read, or events still in the
                # ring: tracked and venue are not of the same moment; wait for the next read
                return
            ledger = int(g["venue_position_fixed"])
            what = "venue position"
        # every queued fill, however deep the queue (no fixed-size copy)
        pending, queued = fills_pending_position(self.fills.ctrl, self.fills.words)
        pending = int(pending)
        drift = ledger - (self.tracker.position_fixed + pending)
        confirmed = drift != 0 and drift == self._last_drift
        self._last_drift = drift
        m = self.metrics.m[0]
        m["position_drift_btc"] = drift / FIXED
        if not confirmed:
            return
        self._last_drift = 0
        before = self.tracker.position_fixed
        self.tracker.correct(before + drift)
        if self.mode == EXEC_MODE.LIVE:
            # the venue is the truth: the kernel's ledger (strategy skew, position limit)
            # moves by the same delta (paper: the ledger is the truth the tracker follows)
            self.mb[K.MB_CORRECT_FIXED] += drift
            self.mb[K.MB_CORRECT_SEQ] += 1  # after the sum: the kernel reads seq, then sum
        # journaled in order with the fills; kept pending (not lost) if the journal fails
        written = self._journal_write(lambda: self.journal.correction(
            drift, self.tracker.position_fixed,
            self.trading_now() if self.event_time else time.time_ns(),
            f"{what} differs from tracked position",
            flush=self._journal_error is None), "writing a position correction")
        m["position_corrections_total"] += 1
        self._publish_position()
        log.warning("Position correction: tracked %.9f BTC, %s %.9f BTC "
                    "(%.9f queued in %d fills), corrected by %+.9f BTC%s", before / FIXED, what,
                    ledger / FIXED, pending / FIXED, int(queued), drift / FIXED,
                    "" if written and self._journal_error is None
                    else " (journal write pending)")

    def _start_paused_if_persisted(self) -> None:
        """A paused engine stays paused across restarts: the flag is in the state directory."""
        self.pause_flag = PauseFlag(os.path.dirname(journal_path(self.cfg, self.instance)))
        if self.pause_flag.is_set():
            c = self.ctl[0]
            c["pause_requested"] = c["pause_persisted"] = 1
            self.mb[K.MB_PAUSED] = 1  # before the kernel first runs: no order is placed
            log.warning("Trading paused (persisted): paused by bogctl before this start (%s); "
                        "'bogctl resume' quotes again", self.pause_flag.path)

    def _check_control(self) -> None:
        """Apply bogctl's requests, then acknowledge each once it took effect."""
        c = self.ctl[0]
        st = self.state[0]
        req = int(c["breaker_reset_requests"])
        if req != self._seen_reset:
            self._seen_reset = req
            if self._journal_error is not None:
                # quoting while fills cannot be journaled would trade blind: refused
                log.error("Circuit breaker reset by bogctl refused: journal writes are failing "
                          "(%s); free the journal's disk, then reset again", self._journal_error)
                c["breaker_reset_refused"] = req
            else:
                self._loss_tripped = False  # re-armed: the next fill beyond the limit trips again
                self.mb[K.MB_RESET_SEQ] += 1  # the kernel closes the breaker and logs it
                self._reset_pending = (int(self.mb[K.MB_RESET_SEQ]), req)
        if self._reset_pending is not None and int(st["reset_seen"]) >= self._reset_pending[0]:
            c["breaker_reset_applied"] = self._reset_pending[1]
            self._reset_pending = None
        paused = 1 if int(c["pause_requested"]) else 0
        if paused != int(self.mb[K.MB_PAUSED]):
            try:
                self.pause_flag.save(bool(paused))  # first: a pause must survive a crash
            except OSError as e:
                log.error("Trading %s: cannot %s the pause flag %s: %s", "pause" if paused
                          else "resume", "save" if paused else "remove", self.pause_flag.path, e)
            c["pause_persisted"] = 1 if self.pause_flag.is_set() else 0
            self.mb[K.MB_PAUSED] = paused  # the kernel cancels quotes and stops quoting
            if paused:
                log.warning("Trading paused (quotes cancelled) by bogctl%s",
                            " - paused (persisted): a restart stays paused until 'bogctl "
                            "resume'" if c["pause_persisted"] else " - NOT persisted")
            else:
                log.warning("Trading resumed by bogctl")
        if int(st["paused"]) == paused:  # the kernel runs with it
            c["pause_applied"] = paused
        rq = int(c["reconcile_requests"])
        if rq != self._seen_reconcile:
            self._seen_reconcile = rq
            log.info("reconciliation requested by bogctl")
            self.reconcile()
            c["reconcile_applied"] = rq

    def _export_ring_position(self) -> int:
        """Tick accounting gauges (docs/monitoring.md); returns the unread backlog."""
        st, m = self.state[0], self.metrics.m[0]
        head = int(self.ring.ctrl[RING_HEAD])
        unread = max(head - int(st["next_pos"]), 0)
        m["ring_published_total"] = int(st["published_before"]) + head
        m["ring_backlog_ticks"] = unread
        return unread

    def _check_feed(self) -> None:
        st = self.state[0]
        unread = self._export_ring_position()
        seg = self.ring.segment
        if seg is not None and not seg.replaced_or_closed():
            self._ring_drain = None
            return
        if seg is not None and unread and self.hot is not None and self.hot.is_alive():
            # the feed closed its ring (or a new feed replaced it): its mapping stays valid and
            # its head final, so read it to its end while the kernel makes progress
            now, pos = time.monotonic(), int(st["next_pos"])
            if self._ring_drain is None or self._ring_drain[0] != pos:
                self._ring_drain = (pos, now)
            if now - self._ring_drain[1] < RING_DRAIN_STUCK_S:
                return
        self._ring_drain = None
        self._attach_feed(first=False)
        self._export_ring_position()

    def _leave_ring(self) -> None:
        """Account for the current ring's positions before it is swapped (kernel parked)."""
        lost = K.ring_detach(self.state, self.metrics.m, int(self.ring.ctrl[RING_HEAD]))
        if lost:
            log.error("Ring overrun: feed ring %s left with %d ticks unread (the engine stopped "
                      "reading it); counted as lost", self.names.ticks, lost)

    def _attach_feed(self, first: bool) -> None:
        try:
            ring = TicksRing.attach(self.names.ticks, wait_ready_s=0)
        except seg_mod.UntrustedSegmentError as e:
            # another user's ticks (fake market data?): never read them; logged once per
            # segment, counted (bog_shm_untrusted_segments_total), retried every pass
            self.metrics.m[0]["shm_untrusted_total"] = seg_mod.untrusted_total()
            if e.first:
                log.critical("%s", e)
            return
        except seg_mod.SegmentError:
            if self.ring.segment is not None:  # feed went away: fall back to "no feed"
                log.error("feed ring %s closed or gone; waiting for the feed", self.names.ticks)
                self._park_hot()
                old = self.ring
                self._leave_ring()
                self.ring = _NoFeed()
                self._set_clock(False)
                self._publish_read_position(0)
                self._unpark_hot()
                old.close(unlink=False)
            elif first:
                log.warning("feed not running yet (%s missing); waiting for it", self.names.ticks)
            return
        if ring.segment.state != seg_mod.STATE_READY:
            ring.close(unlink=False)
            return
        self._park_hot()  # the kernel must not read the ring while it is swapped
        old = self.ring
        if self.feed_epoch and ring.epoch != self.feed_epoch:
            self.metrics.m[0]["feed_restarts_total"] += 1
            log.warning("feed restart detected (epoch %d -> %d): sequence tracking reset",
                        self.feed_epoch, ring.epoch)
        self.feed_epoch = ring.epoch
        self._leave_ring()
        self.ring = ring
        skipped = K.ring_attach(self.state, self.metrics.m, ring.head)  # from the newest
        self._set_clock(int(ring.ctrl[RING_EVENT_TIME]) == 1)
        self._publish_read_position(ring.epoch)
        self._venue_market(ring)
        self._unpark_hot()
        if old.segment is not None:
            old.close(unlink=False)
        log.info("attached to feed ring %s (capacity %d) at its newest snapshot; skipped the "
                 "%d ticks published before it%s", self.names.ticks, ring.capacity, skipped,
                 "; event time: the engine's clock is the data's (replay)"
                 if self.event_time else "")

    def _set_clock(self, event_time: bool) -> None:
        """Wall clock or event time (kernel parked). In event time the kernel waits for room
        in the event buffer and the fill queue instead of dropping (nothing lost, whatever the
        replay's speed), and fills are journaled at their place among the events."""
        self.event_time = event_time
        self.state[0]["event_time"] = 1 if event_time else 0
        self.ev[K.EVC_WAIT] = 1 if event_time else 0

    def _publish_read_position(self, epoch: int) -> None:
        """Tell a replay feed which ring this engine reads and where (kernel parked): the
        epoch is cleared first and set last, so a feed never pairs a position with the wrong
        ring."""
        m = self.metrics.m[0]
        m["ring_read_epoch"] = 0
        self._read_pos[0] = int(self.state[0]["next_pos"])
        m["ring_read_epoch"] = int(epoch)

    def _venue_market(self, ring) -> None:
        """A live venue feed gives the market's tick and minimum order (0 = not given): they
        replace strategy.tick_size_usd and risk.min_order_size_btc. Called while parked."""
        if not hasattr(self, "_cfg_tick"):
            self._cfg_tick = int(self.params[0]["tick_fixed"])
            self._cfg_min = int(self.params[0]["min_order_fixed"])
        tick, min_sz = int(ring.ctrl[RING_TICK_FIXED]), int(ring.ctrl[RING_MIN_SIZE_FIXED])
        self.params[0]["tick_fixed"] = tick if tick > 0 else self._cfg_tick
        self.params[0]["min_order_fixed"] = min_sz if min_sz > 0 else self._cfg_min
        if tick > 0 or min_sz > 0:
            log.info("venue market: tick %.10g, minimum order %.10g (from the feed)",
                     tick / FIXED, min_sz / FIXED)
            if int(self.params[0]["order_size_fixed"]) < min_sz:
                log.warning("strategy.order_size_btc %.10g is below the venue's minimum order "
                            "%.10g: quotes will be rejected (risk: order_size)",
                            self.params[0]["order_size_fixed"] / FIXED, min_sz / FIXED)

    # -- shutdown ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the hot thread, cancel quotes, drain, close. Never raises: every step is
        guarded, and the segments are always closed. If the final drain cannot journal every
        fill (journal failing), the fill queue segment is left in place exactly as a crashed
        engine leaves it, so the next engine journals those fills (nothing lost)."""
        leftover = 0
        try:
            if self.hot is not None:
                self._hot_stop = True
                self.mb[K.MB_STOP] = 1
                end = time.monotonic() + 10
                while self.hot.is_alive() and time.monotonic() < end:
                    self.hot.join(0.005)
                    if getattr(self, "event_time", False):
                        self.drain_events()  # the kernel may be waiting for room
                self.ev[K.EVC_WAIT] = 0
            if self.metrics is not None and self.fills is not None and self.intents is not None:
                # dry-run/live: everything at the venue is cancelled by a cancel-all intent
                if not K.cancel_all_venue(self.state, self.metrics.m, self.buf.orders,
                                          self.buf.events, self.ex.ictrl, self.ex.iwords,
                                          self.buf.intent, time.time_ns(),
                                          CANCEL_ALL_WHY.SHUTDOWN):
                    log.critical("CRITICAL cancel-all at shutdown not sent: the intent ring %s "
                                 "is full; bog-gateway cancels everything when it sees this "
                                 "engine gone", self.names.intents)
            elif self.metrics is not None and self.fills is not None:
                # event time: the shutdown cancels happen at the data's last time
                n = K.cancel_all_orders(self.state, self.metrics.m, self.buf.orders,
                                        self.buf.events,
                                        self.trading_now() if self.event_time else time.time_ns())
                if n:
                    log.info("cancelled %d resting orders on shutdown", n)
            if self.metrics is not None and self.fills is not None:
                if self.event_time:
                    self.drain_events()  # fills at their place among the events, then the rest
                if getattr(self, "_journal_error", None) is not None:
                    self._retry_journal()  # one last try (flush, then drain)
                else:
                    self.drain_fills()
                self.drain_events()
                leftover = self.fills.depth
        except Exception:
            log.critical("bog-engine: error while draining at shutdown", exc_info=True)
            leftover = self.fills.depth if getattr(self, "fills", None) is not None else 0
        try:
            if self.journal is not None:
                pending = self.journal.pending
                try:
                    self.journal.close()
                except (JournalWriteError, OSError) as e:
                    log.critical("CRITICAL journal write failed at shutdown: %s; %d order/"
                                 "correction events not journaled", e, pending)
        except Exception:
            log.critical("bog-engine: error closing the journal", exc_info=True)
        if leftover:
            log.critical("CRITICAL journal write failed: %d fills could not be journaled at "
                         "shutdown; the fill queue %s is left in shared memory and the next "
                         "engine journals them", leftover, self.names.fills)
        try:
            self._close_segments(keep_fills=leftover > 0)
        except Exception:
            log.critical("bog-engine: error closing shared memory", exc_info=True)

    def _close_segments(self, keep_fills: bool) -> None:
        if self.metrics is not None:
            self.metrics.m[0]["running"] = 0
        if self.fills is not None and not keep_fills:
            self.fills.close()
        self.fills = None  # kept: left mapped and READY, like a crashed engine's queue
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if getattr(self, "control", None) is not None:
            self.ctl = None
            self.control.close()
            self.control = None
        if getattr(self, "ring", None) is not None and self.ring.segment is not None:
            self.ring.close(unlink=False)
        if getattr(self, "intents", None) is not None:
            self.ex.ictrl, self.ex.iwords = K._empty_ring(8)
            self.intents.close()  # CLOSED: the gateway reads what is left, then cancels all
            self.intents = None
        for attr in ("vring", "gw"):
            h = getattr(self, attr, None)
            if h is not None:
                h.close(unlink=False)
                setattr(self, attr, None)
