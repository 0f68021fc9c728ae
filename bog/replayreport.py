"""The report ``bog run --feed replay`` prints when the replay has been processed to its end.

Sources, each the record of truth for its part (docs/replay.md, "The report"):
- rows read/rejected/published: the feed's metrics block; processed, lost, skipped, quotes,
  breaker trips, tick latency: the engine's metrics block, both read once the engine has
  processed the last row and drained its fill queue;
- orders, cancels, fills, volume, fees, PnL, position, drawdown, inventory: this run's part of
  the journal (the lines after the ``EngineStart`` record of this run's engine), read after
  the engine stopped, so the cancels of its shutdown are in.

Realized PnL, position, drawdown and inventory are recomputed from this run's fills with the
engine's own ``PositionTracker``, starting flat. Time in each breaker state is event time:
from the first tick the engine processed to the last (engine metrics ``event_first_ns`` and
``event_now_ns``), split by this run's ``Breaker`` records. If the engine started with a position
recovered from an earlier journal, the report says so (``carried_position_btc``).
"""

from __future__ import annotations

import math

import orjson

from bog.engine.position import PositionTracker
from bog.shm.codes import SIGNAL
from bog.shm.layouts import FIXED, LATENCY_NS_EDGES
from bog.shm.metrics import histogram_quantile


def journal_run(path: str, engine_pid: int) -> list[dict]:
    """The journal records written by the engine ``engine_pid``: those after its
    ``EngineStart`` record (the last one with that pid)."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    docs = []
    start = None
    for i, line in enumerate(lines):
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            d = {}
        docs.append(d)
        if d.get("type") == "EngineStart" and d.get("pid") == engine_pid:
            start = i
    if start is None:
        raise ValueError(f"journal {path} has no EngineStart record of engine pid {engine_pid}")
    return docs[start + 1:]


def fill_figures(records: list[dict], last_mid: float) -> dict:
    """Fills by side and liquidity, volume, fees, and the PnL path of ``records``' fills."""
    t = PositionTracker()
    by_side = {"buy": 0, "sell": 0}
    by_liq = {"maker": 0, "taker": 0}
    peak = 0.0
    max_dd = 0.0
    max_inv = 0
    for d in records:
        if d.get("type") != "Fill":
            continue
        side = 1 if d["side"] == "buy" else -1
        price = d["price_fixed"] / FIXED
        t.apply_fill(side, d["qty_fixed"], price, d["fee_fixed"] / FIXED, d["ts_ns"])
        by_side[d["side"]] += 1
        by_liq[d["liquidity"]] = by_liq.get(d["liquidity"], 0) + 1
        max_inv = max(max_inv, abs(t.position_fixed))
        equity = t.realized_pnl + t.unrealized(price)
        peak = max(peak, equity)
        max_dd = max(max_dd, peak - equity)
    final_equity = t.realized_pnl + t.unrealized(last_mid)
    max_dd = max(max_dd, max(peak, final_equity) - final_equity)
    return {
        "fills": t.trades, "fills_by_side": by_side, "fills_by_liquidity": by_liq,
        "volume_usd": t.volume_usd, "fees_usd": t.fees_usd,
        "realized_pnl_usd": t.realized_pnl, "final_position_btc": t.position,
        "final_position_value_usd": t.position * last_mid,
        "unrealized_pnl_usd": t.unrealized(last_mid),
        "max_drawdown_usd": max_dd, "max_inventory_btc": max_inv / FIXED,
    }


BREAKER_KEYS = {"CLOSED": "closed", "HALF_OPEN": "half_open", "OPEN": "open"}


def breaker_times(records: list[dict], start_ns: int, end_ns: int) -> dict:
    """Seconds in each breaker state between ``start_ns`` and ``end_ns`` (event time), from the
    ``Breaker`` records of ``records`` (in journal order). The breaker starts closed; a
    transition stamped before ``start_ns`` (one requested before the first tick) counts from
    ``start_ns``."""
    out = {k: 0.0 for k in BREAKER_KEYS.values()}
    if end_ns <= start_ns:
        return out
    ns = {k: 0 for k in BREAKER_KEYS.values()}
    state, since = "closed", start_ns
    for d in records:
        if d.get("type") != "Breaker":
            continue
        t = min(max(int(d["ts_ns"]), start_ns), end_ns)
        ns[state] += t - since
        state, since = BREAKER_KEYS[d["to"]], t
    ns[state] += end_ns - since
    return {k: v / 1e9 for k, v in ns.items()}


def build_report(replay_file: str, speed: float, fm, em, records: list[dict],
                 wall_s: float, *, trades_file: str, fill_model: str,
                 queue_cancels: str) -> dict:
    """The report (a JSON-able dict) from the feed and engine metrics and this run's journal.
    ``trades_file`` ("" if none), ``fill_model`` and ``queue_cancels`` (``[execution]``) name
    what the figures were computed from."""
    last_mid = float(em["mid_price_usd"])
    figures = fill_figures(records, last_mid)
    p50 = histogram_quantile(0.5, em["tick_processing_ns_bucket"], LATENCY_NS_EDGES)
    p99 = histogram_quantile(0.99, em["tick_processing_ns_bucket"], LATENCY_NS_EDGES)
    processed = int(em["ticks_total"])
    sig = em["signals_total"]
    report = {
        "replay_file": replay_file,
        "trades_file": trades_file or None,
        "fill_model": fill_model,
        "queue_cancels": queue_cancels,
        "speed": speed if speed > 0 else "max",
        "rows_read": int(fm["replay_rows_total"]),
        "rows_rejected": int(fm["replay_rows_rejected_total"]),
        "rows_published": int(fm["messages_total"]),
        "book_invalid_markers": int(fm["replay_book_invalid_total"]),
        "rows_processed": processed,
        "lost": int(em["ring_lost_ticks_total"]),
        "skipped_at_attach": int(em["ticks_skipped_at_attach_total"]),
        "ticks_accepted": int(em["ticks_accepted_total"]),
        "quotes": int(sig[SIGNAL.QUOTE_BOTH] + sig[SIGNAL.QUOTE_BID] + sig[SIGNAL.QUOTE_ASK]),
        "orders": {s: sum(1 for d in records if d.get("type") == "OrderSubmit"
                          and d.get("side") == s) for s in ("buy", "sell")},
        "cancels": sum(1 for d in records if d.get("type") == "OrderCancel"),
        **figures,
        "last_mid_usd": last_mid,
        "breaker_trips": int(em["circuit_breaker_trips_total"]),
        "event_start_ns": int(em["event_first_ns"]),
        "event_end_ns": int(em["event_now_ns"]),
        "event_span_s": (int(em["event_now_ns"]) - int(em["event_first_ns"])) / 1e9,
        "breaker_time_s": breaker_times(records, int(em["event_first_ns"]),
                                        int(em["event_now_ns"])),
        "fills_dropped": int(em["fills_dropped_total"]),
        "tick_latency_p50_ns": None if math.isnan(p50) else p50,
        "tick_latency_p99_ns": None if math.isnan(p99) else p99,
        "wall_time_s": wall_s,
        "ticks_per_s": processed / wall_s if wall_s > 0 else 0.0,
    }
    carried = float(em["position_btc"]) - figures["final_position_btc"]
    if abs(carried) > 1e-12:
        report["carried_position_btc"] = carried
    return report


def format_report(r: dict) -> str:
    def usd(x):
        return f"{x:,.2f} USD"
    bt = r["breaker_time_s"]
    model = r["fill_model"]
    if model == "queue":
        model += f" (queue_cancels {r['queue_cancels']})"
    markers = r["book_invalid_markers"]
    lines = [
        f"bog replay report: {r['replay_file']} at speed {r['speed']}",
        f"  inputs     book {r['replay_file']}, trades {r['trades_file'] or 'none'}; fill model "
        f"{model}",
        f"  rows       read {r['rows_read']}, rejected {r['rows_rejected']}, published "
        f"{r['rows_published']}{f' ({markers} book-invalid markers)' if markers else ''}, "
        f"processed {r['rows_processed']}, lost {r['lost']}, skipped "
        f"{r['skipped_at_attach']}",
        f"  trading    quotes {r['quotes']}, orders {r['orders']['buy']} buy / "
        f"{r['orders']['sell']} sell, cancels {r['cancels']}",
        f"  fills      {r['fills']}: {r['fills_by_side']['buy']} buy / "
        f"{r['fills_by_side']['sell']} sell, {r['fills_by_liquidity'].get('maker', 0)} maker / "
        f"{r['fills_by_liquidity'].get('taker', 0)} taker; volume {usd(r['volume_usd'])}, "
        f"fees {usd(r['fees_usd'])}",
        f"  pnl        realized {usd(r['realized_pnl_usd'])}; final position "
        f"{r['final_position_btc']:.9f} BTC worth {usd(r['final_position_value_usd'])} at the "
        f"last mid {r['last_mid_usd']:.2f} (unrealized {usd(r['unrealized_pnl_usd'])})",
        f"  risk       max drawdown {usd(r['max_drawdown_usd'])}, max inventory "
        f"{r['max_inventory_btc']:.9f} BTC, breaker trips {r['breaker_trips']}",
        f"  breaker    closed {bt['closed']:.3f} s, half-open {bt['half_open']:.3f} s, open "
        f"{bt['open']:.3f} s of {r['event_span_s']:.3f} s of data (event time)",
        f"  speed      tick latency p50 {r['tick_latency_p50_ns'] or 0:.0f} ns, p99 "
        f"{r['tick_latency_p99_ns'] or 0:.0f} ns; wall time {r['wall_time_s']:.3f} s, "
        f"{r['ticks_per_s']:,.0f} ticks/s",
    ]
    if "carried_position_btc" in r:
        lines.append(f"  note       the engine started with {r['carried_position_btc']:.9f} BTC "
                     "recovered from its journal (not part of these figures)")
    return "\n".join(lines)
