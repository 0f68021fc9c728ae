"""Every shared-memory layout of bog, defined once as numpy dtypes.

Writers and readers (feed, engine, monitor, bogctl, tests) all import these; no offset is
written by hand anywhere else. Prices and sizes are fixed point: integer x 1e9 (``FIXED``).
Times are nanoseconds since the Unix epoch (CLOCK_REALTIME) unless the name says otherwise.

A segment is ``[SEGMENT_HEADER (128 B)][body]``; the body layouts are below.
"""

from __future__ import annotations

import numpy as np

from bog.shm.codes import (
    BREAKER,
    CANCEL_ALL_WHY,
    EXEC_MODE,
    FAULT,
    FEED_STATE,
    GATEWAY_REFUSE,
    INTENT,
    JOURNAL_OP,
    LIQUIDITY,
    REJECT,
    RISK,
    SIDE,
    SIGNAL,
    VENUE_DOWN,
    VENUE_EVENT,
    VENUE_FRAME,
    VENUE_REJECT,
)

FIXED = 1_000_000_000  # fixed-point scale of every price and size in shared memory
DEPTH = 10  # book levels per side in a snapshot

LAYOUT_VERSION = 3  # 2: header.restarts; process block shm_untrusted_total; 3: gateway
# (intent and venue-event rings, gateway metrics), FILL.trade_id, engine execution metrics
MAGIC = 0x314D4853474F42  # "BOGSHM1" little-endian

# Segment kinds (header.kind)
KIND_TICKS = 1
KIND_FILLS = 2
KIND_FEED_METRICS = 3
KIND_ENGINE_METRICS = 4
KIND_CONTROL = 5
KIND_MONITOR = 6
KIND_INTENTS = 7  # order intents, engine -> gateway
KIND_VENUE_EVENTS = 8  # venue order events, gateway -> engine
KIND_GATEWAY_METRICS = 9

# Segment lifecycle (header.state)
STATE_INIT = 0
STATE_READY = 1
STATE_CLOSED = 2

SEGMENT_HEADER = np.dtype(
    [
        ("magic", "<u8"),
        ("layout_version", "<u4"),
        ("kind", "<u4"),
        ("size_bytes", "<u8"),
        ("epoch", "<u8"),  # creation time in ns: strictly increases across owner restarts
        ("owner_pid", "<i8"),
        ("owner_start_ticks", "<u8"),  # /proc/PID/stat starttime: guards against pid reuse
        ("state", "<u8"),
        # restarts of the owning process: the supervisor's count under `bog run`, else the
        # crashed owner's count + 1 when its stale segment is replaced (0 on a clean start)
        ("restarts", "<u8"),
        ("pad", "<u8", (8,)),
    ],
    align=True,
)
assert SEGMENT_HEADER.itemsize == 128

# Snapshot flags
FLAG_FULL_SNAPSHOT = 1  # all DEPTH levels valid; otherwise only the top of book changed
# The feed's book lost continuity (venue gap, disconnect, crossed book): no prices, a skipped
# sequence number; the engine cancels its quotes until the next valid snapshot.
FLAG_BOOK_INVALID = 2

# One ticks-ring slot. Word 0 is the seqlock generation (odd while being written); word 1 the
# ring position the slot holds, so a reader can tell a slot overwritten by a later lap.
TICK_SLOT = np.dtype(
    [
        ("gen", "<i8"),
        ("pos", "<i8"),
        ("market_id", "<i8"),
        ("sequence", "<i8"),
        ("exchange_ts_ns", "<i8"),
        ("local_recv_ns", "<i8"),
        ("local_publish_ns", "<i8"),
        ("bid_px", "<i8"),
        ("bid_sz", "<i8"),
        ("ask_px", "<i8"),
        ("ask_sz", "<i8"),
        ("trade_px", "<i8"),  # last trade in this update, 0 if none
        ("trade_sz", "<i8"),
        ("bid_px_l", "<i8", (DEPTH,)),
        ("bid_sz_l", "<i8", (DEPTH,)),
        ("ask_px_l", "<i8", (DEPTH,)),
        ("ask_sz_l", "<i8", (DEPTH,)),
        ("flags", "u1"),
        ("venue", "u1"),
        ("trade_side", "i1"),  # +1 buyer-initiated, -1 seller-initiated, 0 none
        ("pad", "u1", (21,)),
    ]
)
assert TICK_SLOT.itemsize == 448, TICK_SLOT.itemsize  # 7 cache lines, as the original
TICK_SLOT_WORDS = TICK_SLOT.itemsize // 8

# Ring control words (int64 array at the start of a ring body, 64 B)
RING_HEAD = 0  # number of items ever published (producer, release store)
RING_TAIL = 1  # number of items consumed (fills queue consumer; unused for ticks)
RING_CAPACITY = 2
RING_CTRL_WORDS = 8
# Venue market metadata a live feed writes before marking the ring READY (0 = not given); the
# engine takes its tick size and minimum order from here instead of the config.
RING_TICK_FIXED = 3  # price tick, fixed point
RING_MIN_SIZE_FIXED = 4  # minimum order size, fixed point
RING_SIZE_STEP_FIXED = 5  # size increment, fixed point
# 1 = the ring's timestamps are event time (the replay feed publishes the recorded exchange and
# receive times): an engine reading it takes "now" from the data, not from its clock
# (docs/replay.md, "Event time and determinism"). Set before the ring is marked READY.
RING_EVENT_TIME = 6

FILL_LIQ_MAKER = LIQUIDITY.MAKER
FILL_LIQ_TAKER = LIQUIDITY.TAKER

FILL = np.dtype(
    [
        ("order_id", "<i8"),
        ("ts_ns", "<i8"),
        ("price", "<i8"),  # fixed
        ("qty", "<i8"),  # fixed, always > 0
        ("fee_usd", "<i8"),  # fixed, >= 0 (cost)
        ("side", "<i8"),  # +1 buy (our bid filled), -1 sell (our ask filled)
        ("liquidity", "<i8"),
        ("fill_id", "<i8"),  # unique, increasing across engine restarts (journal dedupe)
        # the venue's trade id (execution.mode = "live"; 0 for a paper fill): a trade id is
        # applied once, across gateway reconnects and engine restarts (journal dedupe)
        ("trade_id", "<i8"),
    ]
)
assert FILL.itemsize == 72
FILL_WORDS = FILL.itemsize // 8

# ---- execution gateway (execution.mode "dry-run" / "live"; docs/live-trading.md) ----------
# Order-intent ring ``/bog.<instance>.intents``: owned and produced by the engine's hot thread
# (single producer), consumed by bog-gateway (single consumer: it moves the tail). Bounded:
# a full ring refuses the intent, which the engine counts (intents_dropped_total).
INTENT_PLACE, INTENT_CANCEL, INTENT_CANCEL_ALL = INTENT.PLACE, INTENT.CANCEL, INTENT.CANCEL_ALL
INTENT_REC = np.dtype(
    [
        ("kind", "<i8"),  # INTENT code: place, cancel, cancel_all
        ("client_order_index", "<i8"),  # the engine's order id (the venue's client order index)
        ("side", "<i8"),  # +1 buy (bid), -1 sell (ask); 0 for cancel_all
        ("price", "<i8"),  # fixed; 0 for cancels
        ("qty", "<i8"),  # fixed; 0 for cancels
        ("intent_ns", "<i8"),  # CLOCK_REALTIME when the engine decided it
        ("reason", "<i8"),  # CANCEL_ALL_WHY code of a cancel_all, else 0
        ("seq", "<i8"),  # ring position (1-based), so a consumer sees a lapped/torn slot
    ]
)
assert INTENT_REC.itemsize == 64
INTENT_WORDS = INTENT_REC.itemsize // 8

# Venue-event ring ``/bog.<instance>.vevents``: owned and produced by bog-gateway, consumed by
# the engine's hot thread (it moves the tail, which lives in the gateway's segment, so an
# engine restart resumes exactly where the dead engine stopped).
(VEV_ACKED, VEV_REJECTED, VEV_CANCELLED, VEV_EXPIRED, VEV_FILLED, VEV_RESET) = (
    VENUE_EVENT.ACKED, VENUE_EVENT.REJECTED, VENUE_EVENT.CANCELLED, VENUE_EVENT.EXPIRED,
    VENUE_EVENT.FILLED, VENUE_EVENT.RESET)
VENUE_EVENT_REC = np.dtype(
    [
        ("kind", "<i8"),  # VENUE_EVENT code
        ("client_order_index", "<i8"),
        ("ts_ns", "<i8"),  # venue time of the event (fills: trade time)
        ("code", "<i8"),  # rejected: the venue's error code
        ("trade_id", "<i8"),  # filled: the venue's trade id (> 0)
        ("price", "<i8"),  # filled: fixed
        ("qty", "<i8"),  # filled: fixed, > 0
        ("fee_usd", "<i8"),  # filled: fixed (cost >= 0, rebate < 0)
        ("liquidity", "<i8"),  # filled: LIQUIDITY code
        ("side", "<i8"),  # filled: +1 our bid filled, -1 our ask filled
        ("order_index", "<i8"),  # acked: the venue's order index
        ("recv_ns", "<i8"),  # when the gateway received it (CLOCK_REALTIME)
    ]
)
assert VENUE_EVENT_REC.itemsize == 96
VENUE_EVENT_WORDS = VENUE_EVENT_REC.itemsize // 8
EXEC_MODES, INTENT_KINDS, VENUE_EVENT_KINDS = EXEC_MODE, INTENT, VENUE_EVENT
CANCEL_ALL_WHYS, GATEWAY_REFUSALS = CANCEL_ALL_WHY, GATEWAY_REFUSE
GATEWAY_REJECT_CODES = 16  # distinct venue reject codes counted (first seen; rest in "other")

# Control block: requests written by bogctl, read by the engine's housekeeping; the engine
# acknowledges each one in the *_applied words once it took effect (bogctl waits for that).
CONTROL = np.dtype(
    [
        ("breaker_reset_requests", "<i8"),  # bogctl increments; engine acts on each increase
        ("pause_requested", "<i8"),  # 1 = stop quoting (cancel all), 0 = run
        ("reconcile_requests", "<i8"),
        ("breaker_reset_applied", "<i8"),  # engine: last breaker_reset_requests applied
        ("pause_applied", "<i8"),  # engine: the pause state the kernel runs with (0/1)
        ("reconcile_applied", "<i8"),  # engine: last reconcile_requests done
        ("pause_persisted", "<i8"),  # engine: 1 while the pause flag is saved in its state dir
        ("breaker_reset_refused", "<i8"),  # engine: last breaker_reset_requests refused
        ("pad", "<i8", (8,)),
    ]
)
assert CONTROL.itemsize == 128

# Monitor address block: where the monitor listens, so bogctl finds it whatever port it was
# started with (``bog run --port P``). Written once by the monitor at startup.
MONITOR = np.dtype(
    [
        ("pid", "<i8"),
        ("port", "<i8"),  # the bound port (the real one, also when configured as 0)
        ("started_ns", "<i8"),
        ("host", "S64"),  # the bound address, ASCII, NUL-padded
        ("pad", "<i8", (5,)),
    ]
)
assert MONITOR.itemsize == 128

# Histogram bucket upper bounds. Every alert threshold is an edge, so histogram_quantile is
# exact where alerts look (1 us, 10 us, 100 us for tick latency; 1 ms feed latency).
LATENCY_NS_EDGES = np.array(
    [100, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
     20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000],
    dtype=np.int64,
)
FEED_LATENCY_US_EDGES = np.array(
    [10, 25, 50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000,
     1_000_000],
    dtype=np.int64,
)
GAP_SIZE_EDGES = np.array([1, 2, 5, 10, 50, 100, 1_000, 10_000, 100_000], dtype=np.int64)
STALE_AGE_US_EDGES = np.array(
    [100, 1_000, 10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
     60_000_000],
    dtype=np.int64,
)
VOLUME_USD_EDGES = np.array(
    [10, 50, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000], dtype=np.int64
)

NB_LAT = len(LATENCY_NS_EDGES) + 1  # + the +Inf bucket
NB_FEED = len(FEED_LATENCY_US_EDGES) + 1
NB_GAP = len(GAP_SIZE_EDGES) + 1
NB_STALE = len(STALE_AGE_US_EDGES) + 1
NB_VOL = len(VOLUME_USD_EDGES) + 1
# intent -> acknowledged by the venue, and signing time: microseconds (loopback to WAN)
GATEWAY_US_EDGES = np.array(
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
     250_000, 1_000_000],
    dtype=np.int64,
)
NB_GW_US = len(GATEWAY_US_EDGES) + 1

# Label sets of array-valued counters and state gauges (index -> label): defined once in
# bog/shm/codes.py; the names below are the kernels' compile-time constants.
SIGNAL_ACTIONS = SIGNAL
SIG_QUOTE_BOTH, SIG_QUOTE_BID, SIG_QUOTE_ASK, SIG_CANCEL_ALL, SIG_NO_ACTION = (
    SIGNAL.QUOTE_BOTH, SIGNAL.QUOTE_BID, SIGNAL.QUOTE_ASK, SIGNAL.CANCEL_ALL, SIGNAL.NO_ACTION)
SIDES = SIDE
REJECT_REASONS = REJECT
(REJ_PRICE, REJ_CROSSED, REJ_LOCKED, REJ_SPREAD, REJ_OLD, REJ_FUTURE, REJ_JUMP, REJ_DEPTH,
 REJ_AFTER_STALE) = (REJECT.PRICE, REJECT.CROSSED, REJECT.LOCKED, REJECT.SPREAD, REJECT.OLD,
                     REJECT.FUTURE, REJECT.JUMP, REJECT.DEPTH, REJECT.AFTER_STALE)
RISK_REASONS = RISK
(RISK_POSITION, RISK_SIZE, RISK_DISTANCE, RISK_RATE, RISK_MAX_ORDERS, RISK_DAILY_LOSS,
 RISK_BREAKER, RISK_PAUSED, RISK_GATEWAY) = (
    RISK.POSITION, RISK.SIZE, RISK.DISTANCE, RISK.RATE, RISK.MAX_ORDERS, RISK.DAILY_LOSS,
    RISK.BREAKER, RISK.PAUSED, RISK.GATEWAY)

JOURNAL_OPS = JOURNAL_OP  # journal_errors_total{op}
JOURNAL_WRITE, JOURNAL_ROTATE = JOURNAL_OP.WRITE, JOURNAL_OP.ROTATE

BREAKER_STATES = BREAKER
FEED_STATES = FEED_STATE
VENUE_FRAMES, VENUE_REJECTS, VENUE_DOWN_REASONS = VENUE_FRAME, VENUE_REJECT, VENUE_DOWN

# Process block: the first fields of every metrics body.
_PROCESS_FIELDS = [
    ("pid", "<i8"),
    ("start_ns", "<i8"),
    ("heartbeat_ns", "<i8"),  # housekeeping loop, every ~100 ms
    ("core", "<i8"),  # CPU the process is pinned to, -1 if not pinned
    ("running", "<i8"),  # 1 while in main loop, 0 after clean shutdown
    # shared-memory segments this process refused to attach, or removed at creation, because
    # another user owned them or their mode was not 0600 (possible spoofing; each counted once)
    ("shm_untrusted_total", "<u8"),
]

# Scheduling counters of the process's busiest thread (the engine's hot thread, the feed's
# main thread, which runs the publish kernel), cumulative since it started: copied from
# /proc/self/task/TID by housekeeping about once a second (bog/schedstat.py), never per tick.
# Another task on the thread's core shows here first (docs/operations.md "Engine core").
_SCHED_FIELDS = [
    ("thread_runqueue_wait_ns_total", "<u8"),  # runnable but waiting for its CPU, ns
    ("thread_preemptions_total", "<u8"),  # involuntary context switches
]

FEED_METRICS = np.dtype(
    _PROCESS_FIELDS
    + [
        ("messages_total", "<u8"),  # snapshots published
        ("full_snapshots_total", "<u8"),
        ("trades_total", "<u8"),
        ("last_sequence", "<i8"),
        ("rate_target_per_s", "<f8"),
        ("faults_injected_total", "<u8", (len(FAULT),)),  # by FAULT code
        ("replay_rows_total", "<u8"),
        ("replay_rows_rejected_total", "<u8"),
        # rows of a recording flagged FLAG_BOOK_INVALID (the recorded feed's book lost
        # continuity): published as markers, not rejected (docs/replay.md)
        ("replay_book_invalid_total", "<u8"),
        ("replay_done", "<i8"),
        # 1 while the replay waits because no engine reads its ring (not attached yet, or gone)
        ("replay_waiting_for_engine", "<i8"),
        ("feed_latency_us_bucket", "<u8", (NB_FEED,)),
        ("feed_latency_us_sum", "<f8"),
        ("publish_ns_bucket", "<u8", (NB_LAT,)),
        ("publish_ns_sum", "<f8"),
        # tail-latency stage breakdown (docs/monitoring.md): update received/generated ->
        # slot write starts (local_publish_ns), slot written, head published; max since start
        ("stage_generate_ns_bucket", "<u8", (NB_LAT,)),
        ("stage_generate_ns_sum", "<f8"),
        ("stage_generate_max_ns", "<i8"),
        ("stage_slot_write_ns_bucket", "<u8", (NB_LAT,)),
        ("stage_slot_write_ns_sum", "<f8"),
        ("stage_slot_write_max_ns", "<i8"),
        ("stage_head_publish_ns_bucket", "<u8", (NB_LAT,)),
        ("stage_head_publish_ns_sum", "<f8"),
        ("stage_head_publish_max_ns", "<i8"),
        # live venue source (zero for synthetic and replay)
        ("venue_enabled", "<i8"),  # 1 when the source is a venue connection
        ("venue_connected", "<i8"),  # 1 while the socket is up and subscribed
        ("venue_book_valid", "<i8"),  # 1 while the book is whole (published)
        ("venue_connected_since_s", "<f8"),  # seconds since the epoch, 0 = never
        ("venue_reconnects_total", "<u8"),
        ("venue_last_error", "<i8"),  # VENUE_DOWN code of the last disconnect
        ("venue_last_error_ns", "<i8"),
        ("venue_last_frame_ns", "<i8"),
        ("venue_last_frame_age_s", "<f8"),  # updated by housekeeping
        ("venue_frames_total", "<u8", (len(VENUE_FRAME),)),
        ("venue_frames_rejected_total", "<u8", (len(VENUE_REJECT),)),
        ("venue_book_resyncs_total", "<u8"),
        ("venue_book_levels", "<i8", (2,)),  # levels held: bids, asks
        ("venue_book_levels_dropped_total", "<u8"),  # beyond venue.book_max_levels
        ("venue_market_index", "<i8"),
        ("venue_tick_fixed", "<i8"),
        ("venue_min_size_fixed", "<i8"),
        ("venue_frame_to_publish_ns_bucket", "<u8", (NB_LAT,)),
        ("venue_frame_to_publish_ns_sum", "<f8"),
    ]
    + _SCHED_FIELDS,  # of the feed's main thread
    align=True,
)
FAULT_KINDS = FAULT

ENGINE_METRICS = np.dtype(
    _PROCESS_FIELDS
    + [
        ("ticks_total", "<u8"),  # snapshots read from the ring
        ("hot_tid", "<i8"),  # kernel thread id of the hot thread (bog bench's /proc counters)
        ("ticks_accepted_total", "<u8"),
        ("ticks_rejected_total", "<u8", (len(REJECT_REASONS),)),
        ("signals_total", "<u8", (len(SIGNAL_ACTIONS),)),
        ("orders_placed_total", "<u8", (2,)),
        ("orders_cancelled_total", "<u8"),
        ("risk_rejections_total", "<u8", (len(RISK_REASONS),)),
        ("fills_received_total", "<u8", (2,)),  # drained into position tracking
        ("fills_generated_total", "<u8"),  # produced by the paper executor
        ("fills_dropped_total", "<u8"),
        ("trades_total", "<u8"),
        ("volume_usd_total", "<f8"),
        ("fees_usd_total", "<f8"),
        ("position_btc", "<f8"),
        ("entry_price_usd", "<f8"),
        ("realized_pnl_usd", "<f8"),
        ("daily_pnl_usd", "<f8"),
        ("unrealized_pnl_usd", "<f8"),
        ("position_drift_btc", "<f8"),
        ("position_corrections_total", "<u8"),
        ("executor_position_btc", "<f8"),  # the executor's ledger, at the last reconciliation
        ("journal_errors_total", "<u8", (len(JOURNAL_OPS),)),  # failed journal writes/rotations
        ("journal_write_failing", "<i8"),  # 1 while journal writes fail (fills held in queue)
        ("sequence_gaps_total", "<u8"),
        ("sequence_gap_ticks_total", "<u8"),  # ticks missing in all gaps
        ("sequence_duplicates_total", "<u8"),
        ("sequence_backwards_total", "<u8"),
        ("feed_restarts_total", "<u8"),
        ("ring_overruns_total", "<u8"),  # times the engine fell a whole ring behind
        ("ring_lost_ticks_total", "<u8"),  # published, never read: lapped, or left at detach
        # tick accounting: for every ticks ring the engine attached to, each position was
        # read (ticks_total), lost or skipped at attach, or is still unread (backlog)
        ("ticks_skipped_at_attach_total", "<u8"),  # published before the engine attached
        ("ring_published_total", "<u8"),  # sum of the heads of those rings (housekeeping)
        ("ring_backlog_ticks", "<i8"),  # head - read position of the current ring
        ("ring_unaccounted_ticks", "<i8"),  # published - read - lost - skipped when caught up
        # Replay back-pressure handshake (not exported): the epoch of the ticks ring the
        # engine reads (0 = none) and its read position there, i.e. the next position it will
        # read: every position below it has been copied out of the ring. The kernel publishes
        # ring_read_pos with a release store after each read (ENGINE_READ_POS_WORD); the replay
        # feed never publishes more than the ring's capacity beyond it (docs/replay.md).
        ("ring_read_epoch", "<i8"),
        ("ring_read_pos", "<i8"),
        # Event time (not exported; an engine reading an event-time ring, else 0): the
        # event time of the first tick it processed and its clock now (the newest tick's)
        ("event_first_ns", "<i8"),
        ("event_now_ns", "<i8"),
        ("torn_reads_total", "<u8"),  # seqlock retries
        ("stale_data_total", "<u8"),
        ("offline_total", "<u8"),
        ("feed_state", "<i8"),  # 0 fresh, 1 stale, 2 offline
        ("stale_age_us", "<f8"),  # current age of the newest data
        ("circuit_breaker_state", "<i8"),
        ("circuit_breaker_trips_total", "<u8"),
        ("circuit_breaker_latched", "<i8"),
        ("paused", "<i8"),
        ("fill_queue_capacity", "<i8"),
        ("spread_bps", "<f8"),
        ("mid_price_usd", "<f8"),
        ("volatility_bps", "<f8"),
        ("max_position_btc", "<f8"),
        ("max_daily_loss_usd", "<f8"),
        ("open_orders", "<i8"),
        ("last_fill_ns", "<i8"),
        ("last_signal_ns", "<i8"),
        ("last_tick_ns", "<i8"),
        ("tick_processing_max_ns", "<i8"),
        ("log_events_dropped_total", "<u8"),
        ("tick_processing_ns_bucket", "<u8", (NB_LAT,)),
        ("tick_processing_ns_sum", "<f8"),
        ("strategy_calc_ns_bucket", "<u8", (NB_LAT,)),
        ("strategy_calc_ns_sum", "<f8"),
        ("execution_ns_bucket", "<u8", (NB_LAT,)),
        ("execution_ns_sum", "<f8"),
        ("feed_to_decision_ns_bucket", "<u8", (NB_LAT,)),
        ("feed_to_decision_ns_sum", "<f8"),
        ("feed_to_decision_max_ns", "<i8"),
        # tail-latency stage breakdown (docs/monitoring.md): feed publish stamp -> head seen
        # (hand-off across cores, including any backlog wait), slot copied, decision
        ("stage_handoff_ns_bucket", "<u8", (NB_LAT,)),
        ("stage_handoff_ns_sum", "<f8"),
        ("stage_handoff_max_ns", "<i8"),
        ("stage_copy_ns_bucket", "<u8", (NB_LAT,)),
        ("stage_copy_ns_sum", "<f8"),
        ("stage_copy_max_ns", "<i8"),
        ("sequence_gap_size_bucket", "<u8", (NB_GAP,)),
        ("sequence_gap_size_sum", "<f8"),
        ("stale_data_age_us_bucket", "<u8", (NB_STALE,)),
        ("stale_data_age_us_sum", "<f8"),
        ("volume_usd_bucket", "<u8", (NB_VOL,)),
        ("volume_usd_sum", "<f8"),
        # execution gateway (execution.mode dry-run / live; zero on paper)
        ("exec_mode", "<i8"),  # EXEC_MODE code
        ("intents_total", "<u8", (len(INTENT),)),  # written into the intent ring, by kind
        ("intents_dropped_total", "<u8"),  # intent ring full: not sent (order not placed)
        ("venue_events_total", "<u8", (len(VENUE_EVENT),)),  # consumed, by kind
        ("venue_fills_duplicate_total", "<u8"),  # trade id already applied: ignored
        ("venue_events_unknown_order_total", "<u8"),  # event for an order not in the table
        ("orders_pending", "<i8"),  # placed, not acknowledged by the venue yet
        ("orders_cancel_pending", "<i8"),  # cancel sent, not confirmed yet
        ("venue_position_btc", "<f8"),  # the venue's position (gateway's last reconcile)
        ("tick_to_intent_ns_bucket", "<u8", (NB_LAT,)),  # tick read -> its intents written
        ("tick_to_intent_ns_sum", "<f8"),
    ]
    + _SCHED_FIELDS,  # of the hot thread (hot_tid)
    align=True,
)

# int64 word index of ENGINE_METRICS.ring_read_pos in the engine metrics body (release stores)
ENGINE_READ_POS_WORD = ENGINE_METRICS.fields["ring_read_pos"][1] // 8
assert ENGINE_METRICS.fields["ring_read_pos"][1] % 8 == 0


def ring_body_size(item_dtype: np.dtype, capacity: int) -> int:
    return RING_CTRL_WORDS * 8 + item_dtype.itemsize * capacity


# Gateway metrics block ``/bog.<instance>.gateway``: written by bog-gateway only.
GATEWAY_METRICS = np.dtype(
    _PROCESS_FIELDS
    + [
        ("mode", "<i8"),  # EXEC_MODE code (dry-run or live)
        ("mainnet", "<i8"),  # 1 when the network is mainnet
        ("connected", "<i8"),  # 1 while the venue session is up (dry-run: always 1)
        ("connected_since_s", "<f8"),
        ("reconnects_total", "<u8"),
        ("engine_attached", "<i8"),  # 1 while reading a live engine's intent ring
        ("engine_heartbeat_age_s", "<f8"),
        ("heartbeat_cancel_alls_total", "<u8"),  # engine heartbeat lost: cancelled everything
        ("intents_total", "<u8", (len(INTENT),)),  # consumed, by kind
        ("intents_sent_total", "<u8"),  # signed and sent (dry-run: logged, not sent)
        ("intents_refused_total", "<u8", (len(GATEWAY_REFUSE),)),  # by the gateway's limits
        ("intents_lost_total", "<u8"),  # intent ring positions never read (engine restarted)
        ("rate_limited_total", "<u8"),  # token bucket empty (also in intents_refused_total)
        ("venue_rate_limited_total", "<u8"),  # the venue answered "too many requests"
        ("rejects_total", "<u8"),  # venue rejects, all codes
        ("reject_codes", "<i8", (GATEWAY_REJECT_CODES,)),  # venue code of each slot (0 free)
        ("rejects_by_code", "<u8", (GATEWAY_REJECT_CODES,)),
        ("rejects_other_total", "<u8"),  # codes beyond the table
        ("nonce_refetches_total", "<u8"),
        ("events_total", "<u8", (len(VENUE_EVENT),)),  # written into the venue-event ring
        ("events_dropped_total", "<u8"),  # venue-event ring full (engine not consuming)
        ("inflight_orders", "<i8"),  # placed and not acked yet
        ("open_orders", "<i8"),  # acked and resting at the venue
        ("minute_notional_usd", "<f8"),  # notional placed in the last 60 s
        ("dead_man_armed", "<i8"),
        ("dead_man_expiry_ns", "<i8"),  # when the venue cancels everything if not re-armed
        ("venue_position_fixed", "<i8"),  # last reconcile: the venue's position (fixed)
        ("venue_position_ns", "<i8"),  # when it was read (0: never)
        ("position_drift_btc", "<f8"),  # engine tracked minus venue, at the last reconcile
        ("intent_to_sent_ns_bucket", "<u8", (NB_LAT,)),
        ("intent_to_sent_ns_sum", "<f8"),
        ("intent_to_ack_us_bucket", "<u8", (NB_GW_US,)),
        ("intent_to_ack_us_sum", "<f8"),
        ("sign_us_bucket", "<u8", (NB_GW_US,)),
        ("sign_us_sum", "<f8"),
        # live (h/live): the venue session's own counters, copied from VenueSession.stats
        ("venue_open_orders", "<i8"),  # last reconcile: orders resting at the venue
        ("reconciles_total", "<u8"),  # venue account state reads that succeeded
        ("reconcile_errors_total", "<u8"),  # ... that failed (logged "Venue reconcile failed")
        ("http_fallback_total", "<u8"),  # txs sent over HTTP because the socket was down/silent
        ("send_errors_total", "<u8"),  # txs neither the socket nor HTTP answered
        ("venue_fills_total", "<u8"),  # venue trades of ours turned into fill events
        ("venue_fills_duplicate_total", "<u8"),  # trades seen again (replays), not re-applied
        ("dead_man_arms_total", "<u8"),  # scheduled cancel-all (re-)armed at the venue
        ("dead_man_window_s", "<f8"),  # gateway.dead_man_window_s
        ("replaces_total", "<u8"),  # requotes sent as one cancel+place batch
        ("send_ns_last", "<i8"),  # intent handed to the venue client -> bytes written, excl. signing
    ],
    align=True,
)
