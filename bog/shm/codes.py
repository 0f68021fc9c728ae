"""Every code bog's processes exchange, defined once.

A code is an index: the number stored in a shared-memory gauge (``circuit_breaker_state``),
the position in a metric array (``ticks_rejected_total[REJECT.CROSSED]``), or a field of a
kernel event. Its label is what metrics, logs, ``bogctl`` and dashboards show for it. Each set
below is the only place where a code and its label are paired; everything else derives from
it (the kernels' constants, the engine's log texts, the monitor's labels) and a test checks the
shipped assets (dashboard value mappings, alert thresholds) against it. Reordering a set here
therefore changes every side at once instead of silently relabelling one of them.

numba kernels cannot read attributes of Python objects, so a kernel module binds the codes it
uses to module-level ints (``BREAKER_OPEN = BREAKER.OPEN``); numba freezes those at compile
time, and ``bog.shm.kernel_cache`` discards cached kernels when this file (or any other kernel
dependency) changes.
"""

from __future__ import annotations


class Codes(tuple):
    """Labels in code order; each ``NAME`` attribute is that label's code (a plain int).

    ``Codes(CLOSED="CLOSED", OPEN="OPEN")`` gives ``codes.OPEN == 1`` and
    ``codes[1] == "OPEN"``; it is a tuple, so ``len``, ``index`` and iteration work.
    """

    names: tuple[str, ...]

    def __new__(cls, **labels: str) -> "Codes":
        self = super().__new__(cls, labels.values())
        self.names = tuple(labels)
        for code, name in enumerate(labels):
            setattr(self, name, code)
        if len(set(self)) != len(self):
            raise ValueError(f"duplicate labels in {labels}")
        return self


# circuit breaker state (engine gauge circuit_breaker_state; the guide's 0/1/2)
BREAKER = Codes(CLOSED="CLOSED", HALF_OPEN="HALF_OPEN", OPEN="OPEN")

# market data freshness (engine gauge feed_state)
FEED_STATE = Codes(FRESH="FRESH", STALE="STALE", OFFLINE="OFFLINE")

# why a snapshot was rejected (label ``reason`` of bog_ticks_rejected_total)
REJECT = Codes(
    PRICE="zero_or_negative_price",
    CROSSED="crossed_book",
    LOCKED="locked_book",
    SPREAD="spread_too_wide",
    OLD="too_old",
    FUTURE="in_future",
    JUMP="price_jump",
    DEPTH="bad_depth",
    AFTER_STALE="moved_after_stale",
)

# why a quote was not placed (label ``reason`` of bog_risk_rejections_total)
RISK = Codes(
    POSITION="position_limit",
    SIZE="order_size",
    DISTANCE="price_distance",
    RATE="rate_limit",
    MAX_ORDERS="max_orders",
    DAILY_LOSS="daily_loss",
    BREAKER="breaker_open",
    PAUSED="paused",
    GATEWAY="gateway_down",  # execution.mode dry-run/live: bog-gateway not up and connected
)

# strategy decision (label ``action`` of bog_signals_total); the log writes the guide's
# ``Signal::QuoteBoth`` form, derived by ``signal_log_name``
SIGNAL = Codes(
    QUOTE_BOTH="quote_both",
    QUOTE_BID="quote_bid",
    QUOTE_ASK="quote_ask",
    CANCEL_ALL="cancel_all",
    NO_ACTION="no_action",
)

# order side as a metric label (index 0 = buy/bid, 1 = sell/ask)
SIDE = Codes(BID="bid", ASK="ask")

# why the breaker changed state (kernel event field; logged)
BREAKER_CAUSE = Codes(
    MARKET="market anomalies",
    COOLDOWN="cooldown elapsed",
    RECOVERED="recovered",
    HALF_OPEN_FAIL="failure while half-open",
    RISK="risk trip",
    MANUAL="bogctl breaker reset",
)

# risk trips that latch the breaker open until 'bogctl breaker reset' (kernel event; logged)
TRIP = Codes(
    DAILY_LOSS="daily loss limit hit",
    FILLS_DROPPED="fills dropped",
    POSITION_BREACH="position limit breached",
    JOURNAL_FAILURE="journal write failed",
)

# feed fault injection kinds (label ``kind`` of bog_feed_faults_injected_total)
FAULT = Codes(GAP="gap", STALL="stall", BAD_BOOK="bad_book", LATENCY="latency_spike")

# journal operations that can fail (label ``op`` of bog_journal_errors_total)
JOURNAL_OP = Codes(WRITE="write", ROTATE="rotate")

# fill liquidity (fill record field; journal text)
LIQUIDITY = Codes(MAKER="maker", TAKER="taker")

# strategy (kernel parameter; config ``strategy.name`` choices)
STRATEGY = Codes(SIMPLE="simple-spread", INVENTORY="inventory")

# paper fill model (kernel parameter; config ``execution.fill_model`` choices; docs/replay.md)
FILL_MODEL = Codes(TRADE_THROUGH="trade-through", QUEUE="queue")

# queue fill model: who cancelled when the displayed size at our price shrank without trades
# (kernel parameter; config ``execution.queue_cancels`` choices)
QUEUE_CANCELS = Codes(PRO_RATA="pro-rata", WORST_CASE="worst-case")


def signal_log_name(code: int) -> str:
    """``quote_both`` -> ``QuoteBoth``: the guide's ``Signal::QuoteBoth`` log form."""
    return "".join(w.capitalize() for w in SIGNAL[code].split("_"))


# Venue (live feed) frames by type (label ``type`` of bog_venue_frames_total)
VENUE_FRAME = Codes(
    CONNECTED="connected",
    BOOK_SNAPSHOT="book_snapshot",
    BOOK_UPDATE="book_update",
    TRADE_SNAPSHOT="trade_snapshot",
    TRADE_UPDATE="trade_update",
    PING="ping",
    PONG="pong",
    SHUTDOWN="shutdown",
    ERROR="error",
    OTHER="other",
)

# why a venue frame was not applied (label ``reason`` of bog_venue_frames_rejected_total);
# none of them ever reaches the ticks ring
VENUE_REJECT = Codes(
    MALFORMED_JSON="malformed_json",
    MISSING_FIELD="missing_field",
    BAD_TYPE="bad_type",
    BAD_NUMBER="bad_number",
    NAN="nan_or_inf",
    OUT_OF_RANGE="out_of_range",
    ZERO_PRICE="zero_price",
    NEGATIVE_PRICE="negative_price",
    NEGATIVE_SIZE="negative_size",
    ZERO_SIZE="zero_trade_size",
    CROSSED="crossed_book",
    NONCE_GAP="nonce_gap",
    UNKNOWN_TYPE="unknown_type",
    WRONG_CHANNEL="wrong_channel",
    ERROR_FRAME="error_frame",
    AWAITING_SNAPSHOT="awaiting_snapshot",
)

# why the venue connection is (or last went) down (feed gauge venue_last_error)
VENUE_DOWN = Codes(
    NONE="none",
    CONNECT_FAILED="connect_failed",
    CLOSED="closed_by_venue",
    STALL="silent_stall",
    SHUTDOWN="shutdown_frame",
    ERROR_FRAME="error_frame",
    PROTOCOL="protocol_error",
    RESYNC="resync",
)


# ---- execution gateway (issue 10: engine <-> bog-gateway) --------------------------------
# how the engine executes (config ``execution.mode``; kernel parameter exec_mode)
EXEC_MODE = Codes(PAPER="paper", DRY_RUN="dry-run", LIVE="live")

# order intents, engine -> gateway (INTENT.kind; label ``kind`` of bog_gateway_intents_total)
INTENT = Codes(PLACE="place", CANCEL="cancel", CANCEL_ALL="cancel_all")

# why the engine asked for a venue-wide cancel-all (INTENT.reason of a CANCEL_ALL; logged)
CANCEL_ALL_WHY = Codes(
    BREAKER="breaker open",
    PAUSE="paused by bogctl",
    RISK="risk trip",
    SHUTDOWN="engine shutdown",
    HEARTBEAT="engine heartbeat lost",
    GATEWAY_START="gateway start",
)

# venue order events, gateway -> engine (VENUE_EVENT.kind); RESET: the gateway (re)started
# and cancelled everything at the venue: every order the engine holds is gone
VENUE_EVENT = Codes(ACKED="acked", REJECTED="rejected", CANCELLED="cancelled",
                    EXPIRED="expired", FILLED="filled", RESET="reset")

# intents the gateway refused by its own hard limits (label ``reason`` of
# bog_gateway_refused_total): never sent to the venue
GATEWAY_REFUSE = Codes(
    ORDER_SIZE="order_size",
    ORDER_NOTIONAL="order_notional",
    MINUTE_NOTIONAL="notional_per_minute",
    OPEN_ORDERS="open_orders",
    RATE="request_rate",
    DISCONNECTED="venue_disconnected",
    BAD_INTENT="bad_intent",
)
