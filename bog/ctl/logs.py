"""``bogctl logs``: journalctl when the units are installed, else ``logs/bog.log``."""

from __future__ import annotations

import collections
import json

from bog.ctl.common import log_directory


def register(sub, common) -> None:
    p = sub.add_parser("logs", parents=[common], help="bog's log lines (journal or logs/bog.log)")
    p.add_argument("--pattern", action="append", default=[],
                   help="|".join(["circuit-breaker", "fills-dropped", "position-correction",
                                  "sequence-gap", "stale-data", "signals", "critical"])
                   + " or any text; repeat for OR")
    p.add_argument("--since", help="e.g. '10 minutes ago', '-1h', 'today', '2026-11-25 10:00'")
    p.add_argument("-p", "--priority", help="at most this syslog priority: err, warning, ... or 0-7")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, help="only the last N matching lines")
    p.add_argument("--process", choices=("feed", "engine", "monitor", "gateway"))
    p.add_argument("--source", choices=("auto", "journal", "file"), default="auto",
                   help="auto: the journal when the systemd units are installed")
    p.set_defaults(func=cmd_logs)


def cmd_logs(args, cfg) -> int:
    from bog import logview as lv
    from bog.units import ALL_PROCESSES, TARGET, unit_name, units_installed

    prio = lv.parse_priority(args.priority) if args.priority else None
    since_ts = lv.parse_since(args.since) if args.since else None
    use_journal = args.source == "journal" or (args.source == "auto" and units_installed())
    if use_journal:
        units = [unit_name(args.process)] if args.process else (
            [unit_name(p) for p in ALL_PROCESSES] + [TARGET])  # (no gateway unit: no lines)
        cmd = lv.journal_command(units, args.since, args.priority, args.follow, args.lines)
        entries = lv.journal_entries(cmd)
        since_ts = None  # journalctl applied it (and understands more forms than we do)
    elif args.follow:
        log_dir = log_directory(cfg)
        old = list(lv.file_entries(log_dir)) if lv.log_files(log_dir) else []
        n = args.lines if args.lines is not None else 10
        last = list(lv.select(old, args.pattern, since_ts, prio))[-n:] if n > 0 else []
        entries = _chain(last, lv.follow_file(log_dir))
        since_ts = None
    else:
        entries = lv.file_entries(log_directory(cfg))
    if not use_journal:  # one bog.log may hold several instances' lines
        entries = (e for e in entries if e.instance in (None, args.instance)
                   and (not args.process or e.ident == f"bog-{args.process}"))
    selected = lv.select(entries, args.pattern, since_ts, prio)
    if args.lines and not args.follow:
        selected = iter(collections.deque(selected, args.lines))
    n = 0
    for e in selected:
        print(json.dumps(e.to_json()) if args.json else e.raw, flush=args.follow)
        n += 1
    return 0 if n else 1


def _chain(first, rest):
    yield from first
    yield from rest
