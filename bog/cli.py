"""``bog``: run the pipeline or one of its processes, benchmark it, record its ticks.

    bog run      [--config F] [--instance N] [--duration S] [--feed synthetic|replay|lighter]
                 [--replay-file P] [--trades-file T] [--speed X|max] [--report FILE.json]
                 [--market M] [--venue-url URL]
                                                           supervisor: feed + engine + monitor
    bog feed     [--config F] [--instance N] [...feed options]   one process (systemd runs these)
    bog engine   [--config F] [--instance N]
    bog monitor  [--config F] [--instance N] [--host H] [--port P]
    bog gateway  [--config F] [--instance N]     orders to the venue (execution.mode dry-run|live)
    bog bench    [--json] [...]                              benchmark on real processes
    bog record   --out FILE [--instance N] [--duration S]    capture the ticks ring to a file
    bog fake-venue --port P [--rate R] [--seed S] [--faults K@S[:ARG],...] [--rate-limit N]
                                                             local Lighter-speaking venue (tests)
    bog config-defaults                                      print the annotated default config
"""

from __future__ import annotations

import argparse
import os
import sys

from bog.config import Config, ConfigError, load_config, with_overrides
from bog.shm.segment import SegmentError, set_shm_owner, validate_instance


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (defaults for every key if omitted)")
    p.add_argument("--instance", default="default",
                   help="namespace for shared memory, journal and logs (default: default)")


def _feed_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feed", choices=("synthetic", "replay", "lighter"), help="market data source")
    p.add_argument("--market", help="lighter: market symbol or id (e.g. BTC)")
    p.add_argument("--venue-url", help="lighter: WebSocket URL (e.g. ws://127.0.0.1:8765/stream)")
    p.add_argument("--replay-file", help="CSV of L2 snapshots or a 'bog record' file")
    p.add_argument("--trades-file", help="replay: a tardis trades CSV merged with the book file")
    p.add_argument("--speed", help="replay speed factor, or 'max' for as fast as possible")
    p.add_argument("--rate", type=float, help="synthetic updates per second (0 = max)")


def parse_speed(text: str) -> float:
    if text == "max":
        return 0.0
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"--speed {text!r}: expected a positive number or 'max'")
    if not v > 0:
        raise ConfigError(f"--speed {text!r}: must be > 0 (or 'max')")
    return v


def config_from_args(args) -> Config:
    cfg = load_config(getattr(args, "config", None))
    feed: dict = {}
    if getattr(args, "feed", None):
        feed["source"] = args.feed
    if getattr(args, "replay_file", None):
        feed["replay_file"] = args.replay_file
        feed.setdefault("source", "replay")
    if getattr(args, "trades_file", None):
        feed["replay_trades_file"] = args.trades_file
    if getattr(args, "speed", None):
        feed["replay_speed"] = parse_speed(args.speed)
    if getattr(args, "rate", None) is not None:
        feed["rate_per_s"] = args.rate
    venue: dict = {}
    if getattr(args, "market", None):
        venue["market"] = args.market
    if getattr(args, "venue_url", None):
        venue["url"] = args.venue_url
    mon: dict = {}
    if getattr(args, "host", None):
        mon["host"] = args.host
    if getattr(args, "port", None) is not None:
        mon["port"] = args.port
    if feed or mon or venue:
        cfg = with_overrides(cfg, feed=feed, monitor=mon, venue=venue)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bog", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="start feed, engine and monitor under a supervisor")
    _common(p)
    _feed_opts(p)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--no-monitor", action="store_true", help="do not start the monitor")
    p.add_argument("--port", type=int, help="monitor port")
    p.add_argument("--report", metavar="FILE.json",
                   help="replay: also write the end-of-replay report to this file as JSON")
    for name in ("feed", "engine", "gateway"):
        p = sub.add_parser(name, help=f"run the {name} process")
        _common(p)
        if name == "feed":
            _feed_opts(p)
    p = sub.add_parser("monitor", help="run the monitor process (HTTP /metrics, /health)")
    _common(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p = sub.add_parser("bench", help="benchmark the real processes")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="shorter run (smoke test)")
    p.add_argument("--scrape", action="store_true",
                   help="measure the engine without and with /metrics scrape load (1/s, 100/s)")
    p.add_argument("--health-under-load", action="store_true",
                   help="measure one client's /health latency while ~1,224 idle connections are "
                        "held open and 1,000 clients hammer /health")
    p.add_argument("--floor", action="store_true",
                   help="measure the machine's floor: a two-process ping-pong through the ticks "
                        "ring code, pinned like the feed and the engine (one-way hand-off ns)")
    p.add_argument("--sched-trace", action="store_true",
                   help="also trace the scheduler (tracefs, root) during each window: who "
                        "preempted the feed's thread and the engine's hot thread, how long")
    p.add_argument("--isolate", action="store_true",
                   help="measure each rate twice: as the machine is, then with every other task "
                        "kept off the engine's core for the step (root; restored afterwards)")
    p.add_argument("--feed", choices=("lighter",),
                   help="benchmark the lighter feed source against bog fake-venue instead")
    p.add_argument("--replay", action="store_true",
                   help="benchmark a replay: stream rate, end-to-end ticks/s at --speed max, "
                        "time to first tick, peak RSS, on a generated book_snapshot_10 file")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="--replay: rows in the generated file (default 1,000,000)")
    p.add_argument("--gateway", action="store_true",
                   help="benchmark the live order path (venue client) against bog fake-venue")
    p = sub.add_parser("record", help="capture the ticks ring of a running feed to a file")
    _common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--count", type=int, default=0, help="stop after N snapshots")
    sub.add_parser("config-defaults", help="print the annotated default configuration")
    p = sub.add_parser("fake-venue", help="a local venue speaking Lighter's protocol (127.0.0.1)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--rate", type=float, default=50.0, help="book updates per second per market")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ping-s", type=float, default=30.0, help="server ping frame period")
    p.add_argument("--markets", default="", help="only these symbols, e.g. BTC (default: all)")
    p.add_argument("--faults", default="",
                   help="scheduled faults, e.g. gap@5,stall@10:3,disconnect@20 (kind@s[:arg])")
    p.add_argument("--rate-limit", type=int, default=0,
                   help="weighted order/account requests a minute per client (sendTx weighs 6; "
                        "0: off)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "config-defaults":
        from bog.config import default_toml

        print(default_toml())
        return 0
    if args.cmd == "fake-venue":
        return _fake_venue(args)
    try:
        validate_instance(args.instance)
        cfg = config_from_args(args)
        set_shm_owner(cfg.process.shm_owner)
        if args.cmd in ("run", "feed", "engine", "monitor", "gateway"):
            _check_dirs(cfg, args)
        if args.cmd == "gateway":
            from bog.gateway.process import check_start

            check_start(cfg)  # refuses with one line (missing mode, network, credentials)
    except (ConfigError, SegmentError) as e:
        print(f"bog {args.cmd}: {e}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "run":
            from bog.supervisor import run_supervisor

            return run_supervisor(cfg, args)
        if args.cmd == "feed":
            from bog.feed.process import FeedService

            return _service(FeedService, cfg, args)
        if args.cmd == "engine":
            from bog.engine.process import EngineService

            return _service(EngineService, cfg, args)
        if args.cmd == "gateway":
            from bog.gateway.process import GatewayService

            return _service(GatewayService, cfg, args)
        if args.cmd == "monitor":
            from bog.monitor.process import MonitorService

            return _service(MonitorService, cfg, args)
        if args.cmd == "bench":
            if getattr(args, "gateway", False):
                from bog.benchgateway import run_bench_gateway

                return run_bench_gateway(cfg, args)
            if getattr(args, "feed", None) == "lighter":
                from bog.benchlighter import run_bench_lighter

                return run_bench_lighter(cfg, args)
            if getattr(args, "replay", False):
                from bog.benchreplay import run_bench_replay

                return run_bench_replay(cfg, args)
            from bog.bench import run_bench

            return run_bench(cfg, args)
        if args.cmd == "record":
            from bog.feed.record import record_main

            return record_main(cfg, args)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, SegmentError) as e:
        print(f"bog {args.cmd}: {e}", file=sys.stderr)
        return 2
    return 2


def _fake_venue(args) -> int:
    from bog.log import setup_logging
    from bog.venue.fake import parse_faults, serve

    try:
        parse_faults(args.faults)
    except ValueError as e:
        print(f"bog fake-venue: {e}", file=sys.stderr)
        return 2
    setup_logging("fake-venue", "fake", "-", None)
    try:
        return serve(args.port, args.rate, args.seed, args.faults, args.ping_s,
                     markets=args.markets, rate_limit_per_min=args.rate_limit)
    except KeyboardInterrupt:
        return 130


def _service(cls, cfg: Config, args) -> int:
    from bog.log import setup_logging

    setup_logging(cls.name, args.instance, str(cfg.feed.market_id), _log_dir(cfg))
    return cls(cfg, args.instance).run()


def _log_dir(cfg: Config) -> str | None:
    return os.environ.get("BOG_LOG_DIR", cfg.process.log_dir) or None


def _check_dirs(cfg: Config, args) -> None:
    """Create the log and journal directories now, so a bad one is a one-line error naming
    the variable or key it came from (not a traceback, nor a failure deep in start-up)."""
    from bog.log import journald_stderr

    log_dir = _log_dir(cfg)
    if log_dir and not journald_stderr():
        origin = ("BOG_LOG_DIR=" + log_dir if "BOG_LOG_DIR" in os.environ else
                  _key_origin("process", "log_dir", log_dir, args))
        _ensure_dir(log_dir, origin, "log")
    if args.cmd in ("run", "engine"):
        # the engine's journal_path(): $BOG_STATE_DIR or execution.journal_dir, / instance
        base = os.environ.get("BOG_STATE_DIR") or cfg.execution.journal_dir
        origin = ("BOG_STATE_DIR=" + base if os.environ.get("BOG_STATE_DIR") else
                  _key_origin("execution", "journal_dir", base, args))
        _ensure_dir(os.path.join(base, args.instance), origin, "journal")


def _key_origin(section: str, key: str, value: str, args) -> str:
    var = f"BOG_{section.upper()}_{key.upper()}"
    if var in os.environ:
        return f"{var}={value}"
    where = args.config or "default"
    return f"{section}.{key} = {value!r} ({where})"


def _ensure_dir(path: str, origin: str, what: str) -> None:
    """Create ``path`` and missing parents owner-only (as the journal and log do)."""
    from bog.engine.journal import _make_private_dirs

    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{origin}: the {what} directory {path} is not a directory")
    try:
        _make_private_dirs(path)
    except OSError as e:
        raise ConfigError(f"{origin}: cannot create the {what} directory {path}: "
                          f"{e.strerror or e}") from None
    if not os.path.isdir(path):  # a file in the way of a parent
        raise ConfigError(f"{origin}: cannot create the {what} directory {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{origin}: the {what} directory {path} is not writable")


if __name__ == "__main__":
    sys.exit(main())
