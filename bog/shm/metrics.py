"""Metrics blocks in shared memory and the catalogue that names them for Prometheus.

Each process (feed, engine) owns one metrics segment whose body is ``FEED_METRICS`` or
``ENGINE_METRICS`` (layouts.py); only that process writes it. Readers (monitor, bogctl, tests)
read it at any time: every field is an aligned 8-byte word (single-copy atomic on x86-64), and
a histogram's count is the sum of its buckets, so ``_count`` always equals the ``+Inf`` bucket.

``CATALOGUE`` maps Prometheus metric names to fields. The monitor's collector and ``bogctl``
iterate it; nothing else spells metric names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bog.shm import segment as seg_mod
from bog.shm.layouts import (
    BREAKER_STATES,
    ENGINE_METRICS,
    FAULT_KINDS,
    FEED_LATENCY_US_EDGES,
    FEED_METRICS,
    GAP_SIZE_EDGES,
    FIXED,
    GATEWAY_METRICS,
    GATEWAY_REFUSALS,
    GATEWAY_US_EDGES,
    INTENT_KINDS,
    JOURNAL_OPS,
    KIND_ENGINE_METRICS,
    KIND_FEED_METRICS,
    KIND_GATEWAY_METRICS,
    LATENCY_NS_EDGES,
    REJECT_REASONS,
    RISK_REASONS,
    SIDES,
    SIGNAL_ACTIONS,
    STALE_AGE_US_EDGES,
    VENUE_EVENT_KINDS,
    VENUE_FRAMES,
    VENUE_REJECTS,
    VOLUME_USD_EDGES,
)

FEED = "feed"
ENGINE = "engine"
GATEWAY = "gateway"  # bog-gateway (execution.mode dry-run / live only)
PROCESSES = (FEED, ENGINE)  # always expected (every execution mode)
ALL_PROCESSES = (FEED, ENGINE, GATEWAY)  # the gateway: expected in dry-run / live only
DTYPES = {FEED: FEED_METRICS, ENGINE: ENGINE_METRICS, GATEWAY: GATEWAY_METRICS}
KINDS = {FEED: KIND_FEED_METRICS, ENGINE: KIND_ENGINE_METRICS, GATEWAY: KIND_GATEWAY_METRICS}


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric. ``label``/``label_values`` name the index of an array field."""

    name: str  # Prometheus name, without _total for counters (prometheus_client adds it)
    kind: str  # "counter" | "gauge" | "histogram"
    process: str
    field: str
    help: str
    label: str | None = None
    label_values: tuple[str, ...] = ()
    edges: np.ndarray | None = field(default=None, compare=False)
    # a counter whose label values are read from the block: ``label_field`` holds the value
    # of each slot of ``field`` (0 = slot free), ``other_field`` counts what did not fit
    # (exported with the label value "other"); e.g. venue reject codes
    label_field: str | None = None
    other_field: str | None = None
    scale: float = 1.0  # exported value = field x scale (e.g. ns -> s, fixed point -> BTC)


def _c(name, process, fld, help, label=None, values=(), scale=1.0):
    return MetricSpec(name, "counter", process, fld, help, label, tuple(values), scale=scale)


def _g(name, process, fld, help, scale=1.0):
    return MetricSpec(name, "gauge", process, fld, help, scale=scale)


def _h(name, process, fld, help, edges):
    return MetricSpec(name, "histogram", process, fld, help, edges=edges)


CATALOGUE: tuple[MetricSpec, ...] = (
    # 1. latency
    _h("bog_tick_processing_ns", ENGINE, "tick_processing_ns",
       "Engine time per tick from ring read to decision recorded, ns", LATENCY_NS_EDGES),
    _h("bog_strategy_calc_ns", ENGINE, "strategy_calc_ns",
       "Strategy quote calculation per tick, ns", LATENCY_NS_EDGES),
    _h("bog_execution_ns", ENGINE, "execution_ns",
       "Risk check and paper execution per tick, ns", LATENCY_NS_EDGES),
    _h("bog_feed_to_decision_ns", ENGINE, "feed_to_decision_ns",
       "Feed publish to engine decision, across processes, ns", LATENCY_NS_EDGES),
    _g("bog_tick_processing_max_ns", ENGINE, "tick_processing_max_ns",
       "Slowest tick since engine start, ns"),
    # 1b. tail-latency stage breakdown (docs/monitoring.md "Where a tick's time goes")
    _g("bog_feed_to_decision_max_ns", ENGINE, "feed_to_decision_max_ns",
       "Slowest feed publish to engine decision since engine start, ns"),
    _h("bog_stage_handoff_ns", ENGINE, "stage_handoff_ns",
       "Feed publish stamp to the engine starting to read that slot (slot write, cross-core "
       "hand-off and any backlog wait), ns", LATENCY_NS_EDGES),
    _g("bog_stage_handoff_max_ns", ENGINE, "stage_handoff_max_ns",
       "Slowest publish-to-read hand-off since engine start, ns"),
    _h("bog_stage_copy_ns", ENGINE, "stage_copy_ns",
       "Engine copy of one slot out of the ticks ring, ns", LATENCY_NS_EDGES),
    _g("bog_stage_copy_max_ns", ENGINE, "stage_copy_max_ns",
       "Slowest slot copy since engine start, ns"),
    _h("bog_feed_stage_generate_ns", FEED, "stage_generate_ns",
       "Feed update received or generated to its slot write starting, ns", LATENCY_NS_EDGES),
    _g("bog_feed_stage_generate_max_ns", FEED, "stage_generate_max_ns",
       "Slowest update received/generated to slot write since feed start, ns"),
    _h("bog_feed_stage_slot_write_ns", FEED, "stage_slot_write_ns",
       "Feed write of one slot into the ticks ring (seqlock), ns", LATENCY_NS_EDGES),
    _g("bog_feed_stage_slot_write_max_ns", FEED, "stage_slot_write_max_ns",
       "Slowest slot write since feed start, ns"),
    _h("bog_feed_stage_head_publish_ns", FEED, "stage_head_publish_ns",
       "Feed slot written to ring head published, ns", LATENCY_NS_EDGES),
    _g("bog_feed_stage_head_publish_max_ns", FEED, "stage_head_publish_max_ns",
       "Slowest head publish since feed start, ns"),
    # 1c. other tasks on the pipeline's cores (docs/operations.md "Engine core"): read from
    # /proc by each process's housekeeping about once a second (bog/schedstat.py)
    _c("bog_engine_hot_thread_runqueue_wait_seconds", ENGINE, "thread_runqueue_wait_ns_total",
       "Time the engine's hot thread was runnable but waited for its core (another task ran "
       "on the engine core), seconds", scale=1e-9),
    _c("bog_engine_hot_thread_preemptions", ENGINE, "thread_preemptions_total",
       "Involuntary context switches of the engine's hot thread (preempted by another task)"),
    _c("bog_feed_thread_runqueue_wait_seconds", FEED, "thread_runqueue_wait_ns_total",
       "Time the feed's publishing thread was runnable but waited for its core, seconds",
       scale=1e-9),
    _c("bog_feed_thread_preemptions", FEED, "thread_preemptions_total",
       "Involuntary context switches of the feed's publishing thread"),
    # 2. trading activity
    _c("bog_signals", ENGINE, "signals_total", "Strategy signals by action", "action",
       SIGNAL_ACTIONS),
    _c("bog_orders_placed", ENGINE, "orders_placed_total", "Orders placed by side", "side",
       SIDES),
    _c("bog_orders_cancelled", ENGINE, "orders_cancelled_total", "Orders cancelled"),
    _c("bog_fills_received", ENGINE, "fills_received_total",
       "Fills drained from the fill queue into position tracking, by side", "side", SIDES),
    _c("bog_fills_generated", ENGINE, "fills_generated_total",
       "Fills produced by the paper executor"),
    _h("bog_volume_usd", ENGINE, "volume_usd", "Notional per fill, USD", VOLUME_USD_EDGES),
    _c("bog_risk_rejections", ENGINE, "risk_rejections_total",
       "Quotes blocked by a risk check, by reason", "reason", RISK_REASONS),
    # 3. position and PnL
    _g("bog_position_btc", ENGINE, "position_btc", "Tracked position, BTC (+long/-short)"),
    _g("bog_entry_price_usd", ENGINE, "entry_price_usd", "Weighted average entry price, USD"),
    _g("bog_realized_pnl_usd", ENGINE, "realized_pnl_usd", "Realized PnL after fees, USD"),
    _g("bog_daily_pnl_usd", ENGINE, "daily_pnl_usd",
       "Realized PnL after fees since 00:00 UTC, USD"),
    _g("bog_unrealized_pnl_usd", ENGINE, "unrealized_pnl_usd", "Mark-to-mid PnL, USD"),
    _c("bog_trades", ENGINE, "trades_total", "Fills applied to the position"),
    _c("bog_fees_usd", ENGINE, "fees_usd_total", "Fees paid, USD"),
    _g("bog_max_position_btc", ENGINE, "max_position_btc", "Configured position limit, BTC"),
    _g("bog_max_daily_loss_usd", ENGINE, "max_daily_loss_usd",
       "Configured daily loss limit, USD (positive)"),
    # 4. data quality
    _h("bog_feed_latency_us", FEED, "feed_latency_us",
       "Exchange timestamp to local receipt, us", FEED_LATENCY_US_EDGES),
    _c("bog_sequence_gaps", ENGINE, "sequence_gaps_total", "Sequence gaps detected"),
    _c("bog_sequence_gap_ticks", ENGINE, "sequence_gap_ticks_total",
       "Updates missing in all sequence gaps"),
    _h("bog_sequence_gap_size", ENGINE, "sequence_gap_size", "Updates missing per gap",
       GAP_SIZE_EDGES),
    _c("bog_sequence_duplicates", ENGINE, "sequence_duplicates_total",
       "Duplicate sequence numbers ignored"),
    _c("bog_sequence_backwards", ENGINE, "sequence_backwards_total",
       "Sequence went backwards without a feed restart (anomaly, resynced)"),
    _c("bog_feed_restarts", ENGINE, "feed_restarts_total",
       "Feed restarts seen by the engine (epoch changes)"),
    _c("bog_ring_overruns", ENGINE, "ring_overruns_total",
       "Times the engine fell a whole ticks ring behind and resynced"),
    _c("bog_ring_lost_ticks", ENGINE, "ring_lost_ticks_total",
       "Ticks overwritten before the engine read them (or left unread in a closed ring)"),
    _c("bog_ring_skipped_ticks", ENGINE, "ticks_skipped_at_attach_total",
       "Ticks published before the engine attached to the ring (engine started after the "
       "feed, or feed restarted): never read"),
    _c("bog_ring_published_ticks", ENGINE, "ring_published_total",
       "Ticks published into every ticks ring the engine attached to (sum of ring heads)"),
    _g("bog_ring_backlog_ticks", ENGINE, "ring_backlog_ticks",
       "Ticks published but not read yet by the engine (ring head - read position)"),
    _g("bog_ring_unaccounted_ticks", ENGINE, "ring_unaccounted_ticks",
       "Published ticks neither read, lost, skipped nor pending, as of the engine's last "
       "catch-up: always 0 (anything else is a bug)"),
    _c("bog_torn_reads", ENGINE, "torn_reads_total", "Seqlock read retries"),
    _c("bog_ticks_rejected", ENGINE, "ticks_rejected_total",
       "Snapshots rejected by validation, by reason", "reason", REJECT_REASONS),
    _c("bog_stale_data", ENGINE, "stale_data_total", "Stale data incidents"),
    _c("bog_feed_offline", ENGINE, "offline_total", "Feed offline incidents"),
    _h("bog_stale_data_age_us", ENGINE, "stale_data_age_us",
       "Age of the newest data when a stale incident ended, us", STALE_AGE_US_EDGES),
    _g("bog_stale_age_us", ENGINE, "stale_age_us", "Current age of the newest data, us"),
    _g("bog_feed_state", ENGINE, "feed_state", "Feed state: 0 fresh, 1 stale, 2 offline"),
    _g("bog_spread_bps", ENGINE, "spread_bps", "Market spread, bps of mid"),
    _g("bog_mid_price_usd", ENGINE, "mid_price_usd", "Market mid price, USD"),
    _g("bog_volatility_bps", ENGINE, "volatility_bps", "EWMA of absolute mid returns, bps"),
    # 5. system health
    _g("bog_circuit_breaker_state", ENGINE, "circuit_breaker_state",
       "Circuit breaker: 0 closed, 1 half-open, 2 open"),
    _c("bog_circuit_breaker_trips", ENGINE, "circuit_breaker_trips_total",
       "Circuit breaker transitions to open"),
    _g("bog_circuit_breaker_latched", ENGINE, "circuit_breaker_latched",
       "1 when a risk trip holds the breaker open until 'bogctl breaker reset'"),
    _g("bog_paused", ENGINE, "paused", "1 when quoting is paused by 'bogctl pause'"),
    _g("bog_fill_queue_capacity", ENGINE, "fill_queue_capacity", "Fill queue capacity"),
    _c("bog_fills_dropped", ENGINE, "fills_dropped_total", "Fills dropped: fill queue full"),
    _c("bog_position_corrections", ENGINE, "position_corrections_total",
       "Position corrections by reconciliation"),
    _g("bog_position_drift_btc", ENGINE, "position_drift_btc",
       "Executor ledger minus tracked position at last reconciliation, BTC"),
    _g("bog_executor_position_btc", ENGINE, "executor_position_btc",
       "Executor's own position ledger at last reconciliation (includes queued and dropped "
       "fills; live: corrected to the venue's position), BTC"),
    _c("bog_journal_errors", ENGINE, "journal_errors_total",
       "Journal failures: writes not completed (fills kept in the queue, breaker latched), "
       "rotations that failed (journal kept as it was)", "op", JOURNAL_OPS),
    _g("bog_journal_write_failing", ENGINE, "journal_write_failing",
       "1 while journal writes fail: fills wait in the fill queue, trading halted"),
    _g("bog_open_orders", ENGINE, "open_orders", "Resting paper orders"),
    _c("bog_ticks", ENGINE, "ticks_total", "Snapshots read by the engine"),
    _c("bog_ticks_accepted", ENGINE, "ticks_accepted_total", "Snapshots that passed validation"),
    _c("bog_log_events_dropped", ENGINE, "log_events_dropped_total",
       "Hot-path log events lost because the event buffer was full"),
    _c("bog_shm_untrusted_segments", ENGINE, "shm_untrusted_total",
       "Shared-memory segments the engine refused or removed: owned by another user or not "
       "mode 0600 (possible spoofing)"),
    # execution gateway, engine side (execution.mode dry-run / live; zero on paper)
    _g("bog_execution_mode", ENGINE, "exec_mode", "Execution mode: 0 paper, 1 dry-run, 2 live"),
    _c("bog_order_intents", ENGINE, "intents_total",
       "Order intents written into the intent ring for bog-gateway, by kind", "kind",
       INTENT_KINDS),
    _c("bog_order_intents_dropped", ENGINE, "intents_dropped_total",
       "Order intents not written: the intent ring was full (gateway not reading)"),
    _c("bog_venue_order_events", ENGINE, "venue_events_total",
       "Venue order events applied by the engine, by kind", "kind", VENUE_EVENT_KINDS),
    _c("bog_venue_fills_duplicate", ENGINE, "venue_fills_duplicate_total",
       "Venue fills ignored because their trade id was applied already"),
    _c("bog_venue_events_unknown_order", ENGINE, "venue_events_unknown_order_total",
       "Venue events for an order not in the engine's order table"),
    _g("bog_orders_pending", ENGINE, "orders_pending",
       "Orders sent to the gateway and not acknowledged by the venue yet"),
    _g("bog_orders_cancel_pending", ENGINE, "orders_cancel_pending",
       "Orders whose cancel was sent and not confirmed by the venue yet"),
    _h("bog_tick_to_intent_ns", ENGINE, "tick_to_intent_ns",
       "Tick read to its order intents written into the intent ring, ns", LATENCY_NS_EDGES),
    # feed process
    _c("bog_feed_messages", FEED, "messages_total", "Snapshots published by the feed"),
    _c("bog_feed_full_snapshots", FEED, "full_snapshots_total", "Full snapshots published"),
    _c("bog_feed_market_trades", FEED, "trades_total", "Market trades seen by the feed"),
    _g("bog_feed_last_sequence", FEED, "last_sequence", "Last sequence published"),
    _g("bog_feed_rate_target_per_s", FEED, "rate_target_per_s",
       "Configured feed rate, updates/s (0 = as fast as possible)"),
    _c("bog_feed_faults_injected", FEED, "faults_injected_total",
       "Faults injected by the feed (tests and demos)", "fault", FAULT_KINDS),
    _c("bog_replay_rows", FEED, "replay_rows_total", "Replay rows read"),
    _c("bog_replay_rows_rejected", FEED, "replay_rows_rejected_total",
       "Replay rows rejected as malformed"),
    _c("bog_replay_book_invalid_markers", FEED, "replay_book_invalid_total",
       "Replay rows that are book-invalid markers (FLAG_BOOK_INVALID: the recorded feed's "
       "book lost continuity), published as markers, not rejected"),
    _g("bog_replay_waiting_for_engine", FEED, "replay_waiting_for_engine",
       "1 while the replay is paused because no engine reads the ticks ring (lossless replay)"),
    _c("bog_feed_shm_untrusted_segments", FEED, "shm_untrusted_total",
       "Shared-memory segments the feed removed at start: owned by another user or not "
       "mode 0600 (possible spoofing)"),
    _h("bog_feed_publish_ns", FEED, "publish_ns", "Feed time to publish one snapshot, ns",
       LATENCY_NS_EDGES),
    # live venue (feed.source = "lighter"; zero otherwise)
    _g("bog_venue_connected", FEED, "venue_connected",
       "1 while the venue WebSocket is up and subscribed"),
    _g("bog_venue_book_valid", FEED, "venue_book_valid",
       "1 while the venue book is whole and published"),
    _g("bog_venue_connected_since_seconds", FEED, "venue_connected_since_s",
       "When the current venue connection came up, seconds since the epoch (0: never)"),
    _c("bog_venue_reconnects", FEED, "venue_reconnects_total", "Venue reconnections"),
    _g("bog_venue_last_error", FEED, "venue_last_error",
       "Why the venue connection last went down (code, see docs/lighter.md)"),
    _c("bog_venue_frames", FEED, "venue_frames_total", "Venue frames received, by type", "type",
       VENUE_FRAMES),
    _c("bog_venue_frames_rejected", FEED, "venue_frames_rejected_total",
       "Venue frames rejected (never published), by reason", "reason", VENUE_REJECTS),
    _g("bog_venue_last_frame_age_seconds", FEED, "venue_last_frame_age_s",
       "Seconds since the last venue frame"),
    _c("bog_venue_book_resyncs", FEED, "venue_book_resyncs_total",
       "Book resubscribes after a gap, a crossed book or a bad snapshot"),
    _c("bog_venue_book_levels_dropped", FEED, "venue_book_levels_dropped_total",
       "Book levels dropped beyond venue.book_max_levels"),
    _h("bog_venue_frame_to_publish_ns", FEED, "venue_frame_to_publish_ns",
       "Venue frame handed over by the WebSocket library to snapshot published, ns",
       LATENCY_NS_EDGES),
    # execution gateway process (bog-gateway, /bog.<i>.gateway; dry-run / live only: no
    # series at all on paper). Every field of GATEWAY_METRICS but the process block's pid,
    # start, heartbeat, core and running (bog_up, bog_uptime_seconds, ... cover those).
    _g("bog_gateway_mode", GATEWAY, "mode", "Gateway execution mode: 1 dry-run, 2 live"),
    _g("bog_gateway_mainnet", GATEWAY, "mainnet", "1 when the gateway trades on mainnet"),
    _g("bog_gateway_venue_connected", GATEWAY, "connected",
       "1 while the gateway's venue order session is up (dry-run: always 1)"),
    _g("bog_gateway_venue_connected_since_seconds", GATEWAY, "connected_since_s",
       "When the gateway's venue session came up, seconds since the epoch (0: never)"),
    _c("bog_gateway_venue_reconnects", GATEWAY, "reconnects_total",
       "Gateway venue session reconnections"),
    _g("bog_gateway_engine_attached", GATEWAY, "engine_attached",
       "1 while the gateway reads a live engine's intent ring"),
    _g("bog_gateway_engine_heartbeat_age_seconds", GATEWAY, "engine_heartbeat_age_s",
       "Age of the engine's heartbeat as the gateway last saw it, seconds"),
    _c("bog_gateway_heartbeat_cancel_alls", GATEWAY, "heartbeat_cancel_alls_total",
       "Venue-wide cancel-alls because the engine's heartbeat was lost (or the engine died)"),
    _c("bog_gateway_intents", GATEWAY, "intents_total",
       "Order intents read from the engine's intent ring, by kind", "kind", INTENT_KINDS),
    _c("bog_gateway_intents_sent", GATEWAY, "intents_sent_total",
       "Intents signed and sent to the venue (dry-run: logged, not sent)"),
    _c("bog_gateway_intents_refused", GATEWAY, "intents_refused_total",
       "Intents refused by the gateway's own limits, by reason (never sent)", "reason",
       GATEWAY_REFUSALS),
    _c("bog_gateway_intents_lost", GATEWAY, "intents_lost_total",
       "Intent ring positions the gateway never read (engine restarted)"),
    _c("bog_gateway_rate_limited", GATEWAY, "rate_limited_total",
       "Requests beyond the gateway's token bucket (placements refused, cancels sent anyway)"),
    _c("bog_gateway_venue_rate_limited", GATEWAY, "venue_rate_limited_total",
       "Requests the venue answered with 'too many requests'"),
    _c("bog_gateway_venue_rejects", GATEWAY, "rejects_total",
       "Transactions rejected by the venue, all codes"),
    MetricSpec("bog_gateway_venue_rejects_by_code", "counter", GATEWAY, "rejects_by_code",
               "Transactions rejected by the venue, by venue error code (the first codes "
               "seen; the rest as code=\"other\")", label="code", label_field="reject_codes",
               other_field="rejects_other_total"),
    _c("bog_gateway_nonce_refetches", GATEWAY, "nonce_refetches_total",
       "Nonce refetched from the venue after an invalid-nonce reply"),
    _c("bog_gateway_venue_events", GATEWAY, "events_total",
       "Venue order events written into the venue-event ring for the engine, by kind", "kind",
       VENUE_EVENT_KINDS),
    _c("bog_gateway_venue_events_dropped", GATEWAY, "events_dropped_total",
       "Venue events dropped: the venue-event ring was full (engine not consuming)"),
    _g("bog_gateway_inflight_orders", GATEWAY, "inflight_orders",
       "Orders sent to the venue and not acknowledged yet"),
    _g("bog_gateway_open_orders", GATEWAY, "open_orders",
       "Orders the gateway knows at the venue (in flight or resting)"),
    _g("bog_gateway_minute_notional_usd", GATEWAY, "minute_notional_usd",
       "Notional placed in the last 60 s, USD (gateway.max_notional_per_minute_usd)"),
    _g("bog_gateway_dead_man_armed", GATEWAY, "dead_man_armed",
       "1 while the venue holds a scheduled cancel-all (dead-man switch) for this account"),
    _g("bog_gateway_dead_man_expiry_timestamp_seconds", GATEWAY, "dead_man_expiry_ns",
       "When the venue cancels everything unless the gateway re-arms, seconds since the "
       "epoch (0: not armed)", scale=1e-9),
    _g("bog_gateway_venue_position_btc", GATEWAY, "venue_position_fixed",
       "The venue's position at the gateway's last reconciliation, BTC", scale=1.0 / FIXED),
    _g("bog_gateway_venue_position_timestamp_seconds", GATEWAY, "venue_position_ns",
       "When the gateway last read the venue's position, seconds since the epoch (0: never)",
       scale=1e-9),
    _g("bog_gateway_position_drift_btc", GATEWAY, "position_drift_btc",
       "Engine tracked position minus the venue's, at the gateway's last reconciliation, BTC"),
    _h("bog_gateway_intent_to_sent_ns", GATEWAY, "intent_to_sent_ns",
       "Intent written by the engine to its transaction sent by the gateway, ns",
       LATENCY_NS_EDGES),
    _h("bog_gateway_intent_to_ack_us", GATEWAY, "intent_to_ack_us",
       "Placement intent written by the engine to the venue's acknowledgement, us",
       GATEWAY_US_EDGES),
    _h("bog_gateway_sign_us", GATEWAY, "sign_us", "Signing one transaction, us",
       GATEWAY_US_EDGES),
    # live: the venue session's own counters (h/live)
    _g("bog_gateway_venue_open_orders", GATEWAY, "venue_open_orders",
       "Orders resting at the venue at the gateway's last reconciliation"),
    _c("bog_gateway_reconciles", GATEWAY, "reconciles_total",
       "Venue account state reads that succeeded"),
    _c("bog_gateway_reconcile_errors", GATEWAY, "reconcile_errors_total",
       "Venue account state reads that failed (logged \"Venue reconcile failed\")"),
    _c("bog_gateway_http_fallback", GATEWAY, "http_fallback_total",
       "Transactions sent over HTTP because the WebSocket was down or silent"),
    _c("bog_gateway_send_errors", GATEWAY, "send_errors_total",
       "Transactions neither the WebSocket nor HTTP answered"),
    _c("bog_gateway_venue_fills", GATEWAY, "venue_fills_total",
       "Venue trades of ours turned into fill events for the engine"),
    _c("bog_gateway_venue_fills_duplicate", GATEWAY, "venue_fills_duplicate_total",
       "Venue trades seen again (replays after a reconnect or restart), not re-applied"),
    _c("bog_gateway_dead_man_arms", GATEWAY, "dead_man_arms_total",
       "Scheduled cancel-all (dead-man switch) armed or re-armed at the venue"),
    _g("bog_gateway_dead_man_window_seconds", GATEWAY, "dead_man_window_s",
       "Configured dead-man window (gateway.dead_man_window_s), seconds"),
    _c("bog_gateway_replaces", GATEWAY, "replaces_total",
       "Requotes sent as one cancel + place batch"),
    _g("bog_gateway_last_send_ns", GATEWAY, "send_ns_last",
       "Last intent handed to the venue client to bytes written, excluding signing, ns"),
    _c("bog_gateway_shm_untrusted_segments", GATEWAY, "shm_untrusted_total",
       "Shared-memory segments the gateway refused: owned by another user or not mode 0600 "
       "(possible spoofing)"),
)

BREAKER_NAMES = BREAKER_STATES


class MetricsBlock:
    """Handle on one process's metrics segment; ``m`` is the record (shape-(1,) array)."""

    def __init__(self, process: str, segment: seg_mod.Segment):
        self.process = process
        self.segment = segment
        self.m = segment.view(DTYPES[process], 0, 1)

    @classmethod
    def create(cls, name: str, process: str) -> "MetricsBlock":
        return cls(process, seg_mod.create(name, KINDS[process], DTYPES[process].itemsize))

    @classmethod
    def attach(cls, name: str, process: str, writable: bool = False, wait_ready_s: float = 0.0):
        return cls(process, seg_mod.attach(name, KINDS[process], writable, wait_ready_s))

    def snapshot(self) -> np.void:
        """A private copy of the block (consistent per field)."""
        return self.m.copy()[0]

    def close(self, unlink: bool | None = None) -> None:
        self.m = None
        self.segment.close(unlink)


def histogram_quantile(q: float, buckets: np.ndarray, edges: np.ndarray) -> float:
    """Prometheus-style quantile from cumulative-able bucket counts (last bucket is +Inf)."""
    total = int(buckets.sum())
    if total == 0:
        return float("nan")
    cum = np.cumsum(buckets)
    rank = q * total
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(edges):  # in +Inf bucket: Prometheus returns the highest finite edge
        return float(edges[-1])
    lo = 0.0 if i == 0 else float(edges[i - 1])
    hi = float(edges[i])
    below = 0 if i == 0 else int(cum[i - 1])
    inb = int(buckets[i])
    if inb == 0:
        return hi
    return lo + (hi - lo) * (rank - below) / inb


def histogram_count(rec, fld: str) -> int:
    return int(rec[fld + "_bucket"].sum())
