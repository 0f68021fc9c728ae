"""Configuration: one TOML file, documented defaults, units in key names, env overrides.

Every key has a default, a unit in its name and an allowed range. ``load_config`` rejects an
unknown key or a value out of range with a message naming the key, the value and the range.
``bog config-defaults`` prints the full annotated default file (``default_toml()``).

Environment overrides (the guide's knobs): MAX_POSITION, MAX_DAILY_LOSS, FILL_QUEUE_SIZE,
SPREAD_BPS, ORDER_SIZE, and BOG_<SECTION>_<KEY> for any key (e.g. BOG_FEED_RATE_PER_S=500).
Any other BOG_* variable that is not one of ``ENV_OTHER`` is refused (a misspelled override
must not be silently ignored), naming the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from bog.shm.codes import FILL_MODEL, QUEUE_CANCELS, STRATEGY


class ConfigError(ValueError):
    """Bad configuration; the message names the key, the value and what is allowed."""


def opt(default, lo=None, hi=None, choices=None, doc=""):
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices, "doc": doc})


@dataclass(frozen=True)
class FeedConfig:
    source: str = opt("synthetic", choices=("synthetic", "replay", "lighter"),
                      doc="market data source (lighter: live venue, see [venue])")
    rate_per_s: float = opt(200.0, 0.0, 5e6, doc="updates per second; 0 = as fast as possible")
    seed: int = opt(42, 0, 2**63 - 1, doc="synthetic feed random seed (deterministic runs)")
    ring_capacity: int = opt(65536, 2, 1 << 24, doc="ticks ring slots (power of two)")
    market_id: int = opt(1_000_001, 0, 2**62, doc="venue*1_000_000 + market (1 = Lighter)")
    start_price_usd: float = opt(60000.0, 1e-6, 1e9, doc="synthetic initial mid")
    tick_size_usd: float = opt(0.01, 1e-9, 1e6, doc="price grid of the synthetic book")
    volatility_bps_per_s: float = opt(4.0, 0.0, 1000.0, doc="calm-regime mid volatility")
    volatile_multiplier: float = opt(4.0, 1.0, 100.0, doc="volatility factor in the volatile regime")
    regime_switch_per_s: float = opt(0.02, 0.0, 10.0, doc="regime switch probability per second")
    half_spread_ticks: int = opt(500, 1, 1_000_000, doc="typical market half spread, ticks")
    level_size_btc: float = opt(0.5, 1e-6, 1e6, doc="typical size per level")
    trade_probability: float = opt(0.1, 0.0, 1.0, doc="chance an update carries a trade")
    sweep_depth_bps: float = opt(0.5, 0.0, 1000.0, doc="mean depth a trade sweeps past the touch")
    full_snapshot_every: int = opt(50, 1, 1_000_000, doc="a full 10-level snapshot every N updates")
    latency_us: float = opt(150.0, 0.0, 1e7, doc="simulated exchange-to-local latency (mean)")
    replay_file: str = opt("", doc="replay input (CSV of L2 snapshots or a bog record file)")
    replay_speed: float = opt(1.0, 0.0, 1e6, doc="replay speed factor; 0 = as fast as possible")
    # fault injection (tests, demos): per-update probabilities and durations
    fault_gap_probability: float = opt(0.0, 0.0, 1.0, doc="skip sequence numbers")
    fault_gap_size: int = opt(3, 1, 1_000_000, doc="sequence numbers skipped per injected gap")
    fault_bad_book_probability: float = opt(0.0, 0.0, 1.0, doc="publish a crossed/zero book")
    fault_latency_spike_probability: float = opt(0.0, 0.0, 1.0, doc="exchange ts far in the past")
    fault_latency_spike_us: float = opt(5000.0, 0.0, 1e9, doc="size of an injected latency spike")
    fault_stall_every_s: float = opt(0.0, 0.0, 1e6, doc="stall the feed every N s; 0 = never")
    fault_stall_s: float = opt(2.0, 0.0, 3600.0, doc="length of an injected stall")


@dataclass(frozen=True)
class StrategyConfig:
    name: str = opt("simple-spread", choices=tuple(STRATEGY), doc="strategy")
    spread_bps: float = opt(10.0, 0.1, 10_000.0, doc="quoted spread, total (half each side)")
    order_size_btc: float = opt(0.1, 1e-9, 1e6, doc="quote size")
    min_market_spread_bps: float = opt(1.0, 0.0, 10_000.0, doc="do not quote tighter markets")
    max_market_spread_bps: float = opt(100.0, 0.0, 10_000.0, doc="cancel quotes above this")
    min_best_size_btc: float = opt(0.01, 0.0, 1e6, doc="cancel when best size is below this")
    requote_bps: float = opt(5.0, 0.0, 10_000.0, doc="keep quotes while mid moved less")
    requote_after_s: float = opt(5.0, 0.0, 3600.0, doc="refresh quotes at least this often")
    vol_alpha: float = opt(0.2, 1e-6, 1.0, doc="EWMA weight of the newest |return|")
    vol_low_bps: float = opt(10.0, 0.0, 10_000.0, doc="spread multiplier 1 at or below")
    vol_high_bps: float = opt(50.0, 0.0, 10_000.0, doc="spread multiplier 2 at or above")
    skew_max_bps: float = opt(5.0, 0.0, 1000.0, doc="inventory skew at full position")
    skew_threshold: float = opt(0.2, 0.0, 1.0, doc="skew only above this position utilisation")
    tick_size_usd: float = opt(0.01, 1e-9, 1e6, doc="order price grid")
    # inventory (Avellaneda-Stoikov)
    risk_aversion: float = opt(0.1, 1e-9, 1e6, doc="A-S gamma")
    order_intensity: float = opt(1.5, 1e-9, 1e6, doc="A-S k: order arrival decay per bps")
    horizon_s: float = opt(1.0, 1e-3, 1e6, doc="A-S time horizon T")
    target_inventory_btc: float = opt(0.0, -1e6, 1e6, doc="A-S target inventory")


@dataclass(frozen=True)
class RiskConfig:
    max_position_btc: float = opt(1.0, 1e-9, 1e6, doc="|position| limit, both sides")
    max_daily_loss_usd: float = opt(5000.0, 0.01, 1e12, doc="daily loss that latches the breaker")
    min_order_size_btc: float = opt(0.0001, 0.0, 1e6, doc="smallest order")
    max_order_size_btc: float = opt(0.5, 1e-9, 1e6, doc="largest order")
    max_price_distance_bps: float = opt(50.0, 0.0, 10_000.0, doc="quote within this of mid")
    min_quote_interval_ms: float = opt(100.0, 0.0, 60_000.0, doc="quote update rate limit")
    max_open_orders: int = opt(10, 2, 64, doc="resting orders at most")


@dataclass(frozen=True)
class ValidationConfig:
    max_spread_bps: float = opt(1000.0, 0.0, 100_000.0, doc="reject wider books")
    allow_locked: bool = opt(False, doc="accept bid == ask")
    max_age_ms: float = opt(5000.0, 0.0, 3.6e6, doc="reject older exchange timestamps")
    max_future_ms: float = opt(1000.0, 0.0, 3.6e6, doc="reject timestamps this far ahead")
    max_price_change_bps: float = opt(500.0, 0.0, 100_000.0, doc="reject bigger mid jumps")
    stale_after_ms: float = opt(1000.0, 0.001, 3.6e6, doc="no update this long: Stale")
    offline_after_ms: float = opt(5000.0, 0.001, 3.6e6, doc="no update this long: Offline")
    resume_max_move_bps: float = opt(200.0, 0.0, 100_000.0, doc="skip first tick after stale if moved more")


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = opt(5, 1, 1_000_000, doc="market failures within the window to open")
    window_s: float = opt(60.0, 0.001, 86_400.0, doc="failure counting window")
    cooldown_s: float = opt(30.0, 0.001, 86_400.0, doc="open -> half-open after this")
    half_open_successes: int = opt(2, 1, 1_000_000, doc="good ticks to close from half-open")


@dataclass(frozen=True)
class ExecutionConfig:
    maker_latency_ms: float = opt(200.0, 0.0, 60_000.0, doc="order rests this long before it can fill")
    maker_fee_bps: float = opt(0.2, -100.0, 100.0, doc="fee on passive fills (negative = rebate)")
    taker_fee_bps: float = opt(2.0, -100.0, 100.0, doc="fee on aggressive fills")
    fill_model: str = opt("trade-through", choices=tuple(FILL_MODEL),
                          doc="paper fills: when the market trades at/through the order "
                              "(trade-through) or once the queue ahead of it is gone (queue); "
                              "docs/replay.md 'Fill models'")
    queue_cancels: str = opt("pro-rata", choices=tuple(QUEUE_CANCELS),
                             doc="queue model: cancels at our price come from ahead of us "
                                 "pro rata (pro-rata) or all from behind us (worst-case)")
    fill_queue_size: int = opt(1024, 1, 1 << 20, doc="fill queue capacity (restart to change)")
    reconcile_every_s: float = opt(1.0, 0.01, 3600.0, doc="position reconciliation period")
    journal_dir: str = opt("state", doc="journal directory (owner-only), relative to cwd")
    journal_rotate_mb: float = opt(64.0, 0.001, 1e6,
                                   doc="rotate (checkpoint) the journal at start when larger; "
                                       "it also rotates at every new UTC day")
    mode: str = opt("paper", choices=("paper", "dry-run", "live"),
                    doc="paper: simulated fills (no gateway); dry-run: orders go to bog-gateway, "
                        "which signs and logs them, sends nothing; live: real orders "
                        "(docs/live-trading.md)")
    intent_ring_size: int = opt(1024, 16, 1 << 20,
                                doc="order-intent ring slots, engine -> gateway (dry-run/live)")
    # fault injection (tests): stop draining the fill queue so it fills up
    fault_stop_fill_drain: bool = opt(False, doc="never drain fills (overflow test)")
    fault_slow_tick_every: int = opt(0, 0, 1_000_000_000, doc="slow every Nth tick; 0 = never")
    fault_slow_tick_us: float = opt(0.0, 0.0, 1_000_000.0, doc="busy-wait added to a slowed tick")


@dataclass(frozen=True)
class ProcessConfig:
    feed_core: int = opt(0, -1, 1023, doc="CPU for the feed, -1 = do not pin")
    engine_core: int = opt(1, -1, 1023, doc="CPU for the engine's hot thread, -1 = do not pin")
    engine_housekeeping_core: int = opt(0, -1, 1023, doc="CPU for the engine's Python thread")
    engine_idle_sleep_us: float = opt(0.0, 0.0, 100_000.0,
                                      doc="0 = busy-poll the ring (lowest latency, a full core); "
                                          "else sleep this long per poll after 1 ms without ticks")
    monitor_core: int = opt(0, -1, 1023, doc="CPU for the monitor, -1 = do not pin")
    gateway_core: int = opt(0, -1, 1023, doc="CPU for bog-gateway (dry-run/live), -1 = do not pin")
    engine_realtime_priority: int = opt(0, 0, 99, doc="SCHED_FIFO priority, 0 = normal")
    housekeeping_ms: float = opt(50.0, 1.0, 10_000.0, doc="housekeeping period")
    log_dir: str = opt("logs", doc="log directory for bog.log outside systemd")
    shm_owner: str = opt("", doc="also trust shared memory owned by this user (name or uid), "
                                 "e.g. 'bog' for root's bogctl; '' = only the process's own user")


@dataclass(frozen=True)
class MonitorConfig:
    host: str = opt("127.0.0.1", doc="listen address (loopback by default)")
    port: int = opt(9090, 0, 65535, doc="listen port (the guide's 9090)")
    max_connections: int = opt(4096, 1, 1_000_000,
                               doc="open HTTP connections at most (lowered to fit the process's "
                                   "RLIMIT_NOFILE); at the cap the oldest idle one is closed")
    header_timeout_s: float = opt(5.0, 0.1, 3600.0,
                                  doc="a connection must send a complete request header within "
                                      "this long of opening (or of its previous response)")
    keepalive_timeout_s: float = opt(5.0, 0.1, 3600.0,
                                     doc="an idle keep-alive connection is closed after this long")


@dataclass(frozen=True)
class VenueConfig:
    """The live venue of ``feed.source = "lighter"`` (docs/lighter.md)."""

    network: str = opt("mainnet", choices=("mainnet", "testnet"), doc="venue network")
    url: str = opt("", doc="WebSocket URL override, e.g. ws://127.0.0.1:8765/stream for "
                           "'bog fake-venue'; the REST base is derived from it")
    market: str = opt("BTC", doc="market symbol or numeric id, resolved from the venue at start")
    readonly: bool = opt(True, doc="open a read-only session (?readonly=true)")
    stall_timeout_s: float = opt(5.0, 0.1, 3600.0,
                                 doc="no frame this long with the socket open: reconnect")
    connect_timeout_s: float = opt(10.0, 0.1, 300.0, doc="connect and first-frame timeout")
    rest_timeout_s: float = opt(10.0, 0.1, 300.0, doc="market list request timeout")
    backoff_initial_s: float = opt(0.25, 0.001, 60.0, doc="first reconnect delay (jittered)")
    backoff_max_s: float = opt(30.0, 0.01, 3600.0, doc="reconnect delay cap (doubles up to it)")
    book_max_levels: int = opt(4096, 16, 1 << 20, doc="book levels kept per side")


@dataclass(frozen=True)
class GatewayConfig:
    """bog-gateway: the venue side of execution.mode dry-run / live (docs/live-trading.md).
    Its limits are its own, independent of [risk]: an intent beyond them is refused."""

    network: str = opt("", choices=("", "testnet", "mainnet"),
                       doc="venue network for orders: '' = testnet for dry-run; live refuses "
                           "to start unless it is named (mainnet only when written here)")
    url: str = opt("", doc="WebSocket URL override, e.g. ws://127.0.0.1:8765/stream for "
                           "'bog fake-venue'; the REST base is derived from it")
    account_index: int = opt(-1, -1, 2**62, doc="venue account index (live: required)")
    api_key_index: int = opt(-1, -1, 255, doc="venue API key index (live: required)")
    api_key_file: str = opt("", doc="file holding the API private key, mode 0600, owned by "
                                    "bog's user; under systemd the unit's LoadCredential= "
                                    "(credential 'lighter-api-key') is used when this is ''")
    max_order_size_btc: float = opt(0.5, 1e-9, 1e6, doc="refuse larger orders")
    max_order_notional_usd: float = opt(50_000.0, 0.01, 1e12, doc="refuse larger orders, USD")
    max_notional_per_minute_usd: float = opt(500_000.0, 0.01, 1e13,
                                             doc="refuse placements beyond this in 60 s, USD")
    max_open_orders: int = opt(10, 1, 10_000, doc="refuse placements beyond this many resting")
    requests_per_s: float = opt(20.0, 0.01, 100_000.0, doc="request token bucket refill rate")
    request_burst: int = opt(40, 1, 1_000_000, doc="request token bucket size")
    engine_heartbeat_timeout_s: float = opt(2.0, 0.1, 3600.0,
                                            doc="engine heartbeat older than this: cancel all")
    dead_man_window_s: float = opt(60.0, 5.0, 3600.0,
                                   doc="venue cancels everything this long after the gateway "
                                       "last re-armed it (re-armed every third of it)")
    reconcile_every_s: float = opt(5.0, 0.5, 3600.0, doc="venue account state check period")
    event_ring_size: int = opt(1024, 16, 1 << 20, doc="venue-event ring slots, gateway -> engine")


@dataclass(frozen=True)
class Config:
    feed: FeedConfig = field(default_factory=FeedConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)


ENV_SHORTCUTS = {
    "MAX_POSITION": ("risk", "max_position_btc"),
    "MAX_DAILY_LOSS": ("risk", "max_daily_loss_usd"),
    "FILL_QUEUE_SIZE": ("execution", "fill_queue_size"),
    "SPREAD_BPS": ("strategy", "spread_bps"),
    "ORDER_SIZE": ("strategy", "order_size_btc"),
}


# BOG_* variables that are not config overrides (read elsewhere in bog or its tests)
ENV_OTHER = {
    "BOG_STATE_DIR": "journal directory (instead of execution.journal_dir)",
    "BOG_LOG_DIR": "log directory (instead of process.log_dir)",
    "BOG_LOG_JSON": "1: JSON log lines",
    "BOG_LOG_STDERR": "0: log to the file only",
    "BOG_INSTANCE": "bogctl's default --instance",
    "BOG_CONFIG": "bogctl's default --config",
    "BOG_TEST_NUMBA_CACHE": "tests: numba cache of the systemd tests",
    "BOG_RESTARTS": "set by `bog run` for each child: how often it restarted it",
}


def env_overrides() -> dict[str, tuple[str, str]]:
    """Every environment override: variable -> (section, key)."""
    out = dict(ENV_SHORTCUTS)
    for sec, cls in _section_types().items():
        for f in fields(cls):
            out[f"BOG_{sec.upper()}_{f.name.upper()}"] = (sec, f.name)
    return out


def _check_unknown_env(env: dict[str, str], overrides: dict) -> None:
    for var in sorted(env):
        if var.startswith("BOG_") and var not in overrides and var not in ENV_OTHER:
            known = [v for v in (*overrides, *ENV_OTHER) if v.startswith("BOG_")]
            close = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
            hint = (f"did you mean {close[0]}?" if close else
                    "overrides are BOG_<SECTION>_<KEY> for the keys 'bog config-defaults' prints")
            raise ConfigError(f"unknown setting {var}; {hint}")


def _coerce(section: str, f: dataclasses.Field, value: Any, source: str):
    key = f"{section}.{f.name}"
    want = f.type if isinstance(f.type, type) else {"float": float, "int": int, "str": str,
                                                     "bool": bool}[f.type]
    if isinstance(value, str) and want is not str:
        text = value.strip()
        try:
            if want is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                value = text.lower() in ("1", "true", "yes")
            else:
                value = want(text)
        except ValueError:
            raise ConfigError(f"{key} = {value!r} ({source}): not a valid {want.__name__}")
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(f"{key} = {value!r} ({source}): expected {want.__name__}")
    md = f.metadata
    if want is float and not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r} ({source}): must be a finite number")
    lo, hi, choices = md.get("lo"), md.get("hi"), md.get("choices")
    if lo is not None and hi is not None and not (lo <= value <= hi):
        raise ConfigError(f"{key} = {value!r} ({source}): allowed range is {lo} .. {hi}")
    if choices and value not in choices:
        raise ConfigError(f"{key} = {value!r} ({source}): allowed values are {', '.join(choices)}")
    return value


def _section_types() -> dict[str, type]:
    return {f.name: f.default_factory().__class__ for f in fields(Config)}


def build_config(data: dict, env: dict[str, str] | None = None, source: str = "config") -> Config:
    """Config from a parsed TOML mapping plus environment overrides; raises ConfigError."""
    env = dict(os.environ) if env is None else env
    sections = _section_types()
    values: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for sec, body in data.items():
        if sec not in sections:
            raise ConfigError(f"unknown section [{sec}] ({source}); known: {', '.join(sections)}")
        if not isinstance(body, dict):
            raise ConfigError(f"[{sec}] ({source}) must be a table")
        known = {f.name: f for f in fields(sections[sec])}
        for k, v in body.items():
            if k not in known:
                raise ConfigError(f"unknown key {sec}.{k} ({source})")
            values[sec][k] = _coerce(sec, known[k], v, source)
    overrides = env_overrides()
    _check_unknown_env(env, overrides)
    for var, (sec, key) in overrides.items():
        if var in env:
            f = {f.name: f for f in fields(sections[sec])}[key]
            values[sec][key] = _coerce(sec, f, env[var], f"environment {var}")
    cfg = Config(**{sec: sections[sec](**values[sec]) for sec in sections})
    _cross_checks(cfg)
    return cfg


def _cross_checks(cfg: Config) -> None:
    cap = cfg.feed.ring_capacity
    if cap & (cap - 1):
        raise ConfigError(f"feed.ring_capacity = {cap}: must be a power of two")
    r = cfg.risk
    if r.min_order_size_btc > r.max_order_size_btc:
        raise ConfigError("risk.min_order_size_btc must not exceed risk.max_order_size_btc")
    s = cfg.strategy
    if not (r.min_order_size_btc <= s.order_size_btc <= r.max_order_size_btc):
        raise ConfigError(
            f"strategy.order_size_btc = {s.order_size_btc}: allowed range is "
            f"{r.min_order_size_btc} .. {r.max_order_size_btc} (risk.min/max_order_size_btc)"
        )
    if s.vol_high_bps < s.vol_low_bps:
        raise ConfigError("strategy.vol_high_bps must be >= strategy.vol_low_bps")
    v = cfg.validation
    if v.offline_after_ms < v.stale_after_ms:
        raise ConfigError("validation.offline_after_ms must be >= validation.stale_after_ms")
    if cfg.venue.backoff_initial_s > cfg.venue.backoff_max_s:
        raise ConfigError("venue.backoff_initial_s must not exceed venue.backoff_max_s")
    if cfg.venue.url and not cfg.venue.url.startswith(("ws://", "wss://")):
        raise ConfigError(f"venue.url = {cfg.venue.url!r}: must start with ws:// or wss://")
    if cfg.gateway.url and not cfg.gateway.url.startswith(("ws://", "wss://")):
        raise ConfigError(f"gateway.url = {cfg.gateway.url!r}: must start with ws:// or wss://")
    if cfg.feed.source == "replay" and not cfg.feed.replay_file:
        raise ConfigError("feed.source = 'replay' needs feed.replay_file")


def load_config(path: str | None = None, env: dict[str, str] | None = None) -> Config:
    """Load ``path`` (or defaults only) with environment overrides; raises ConfigError."""
    data: dict = {}
    source = "defaults"
    if path:
        source = path
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except PermissionError:
            raise ConfigError(f"config file {path}: permission denied") from None
        except UnicodeDecodeError as e:
            line = e.object[:e.start].count(b"\n") + 1
            raise ConfigError(f"config file {path} is not valid UTF-8 (line {line}: byte "
                              f"{e.object[e.start]:#04x})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
        except OSError as e:  # a directory, an I/O error, ...
            raise ConfigError(f"config file {path}: {e.strerror or e}") from None
    return build_config(data, env, source)


def with_overrides(cfg: Config, **sections: dict) -> Config:
    """A copy of ``cfg`` with some keys replaced, e.g. ``with_overrides(c, feed={"seed": 1})``."""
    data = to_dict(cfg)
    for sec, kv in sections.items():
        data[sec].update(kv)
    return build_config(data, env={})


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def default_toml() -> str:
    """The default configuration as an annotated TOML file."""
    out = ["# bog configuration: every key with its default. Units are in the key names.", ""]
    for sec, cls in _section_types().items():
        out.append(f"[{sec}]")
        for f in fields(cls):
            v = f.default
            text = ("true" if v else "false") if isinstance(v, bool) else (
                f'"{v}"' if isinstance(v, str) else repr(v))
            md = f.metadata
            rng = f"  [{md['lo']} .. {md['hi']}]" if md.get("lo") is not None else ""
            ch = f"  ({' | '.join(md['choices'])})" if md.get("choices") else ""
            out.append(f"{f.name} = {text}  # {md.get('doc', '')}{rng}{ch}")
        out.append("")
    return "\n".join(out)
