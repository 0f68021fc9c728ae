"""``bog run``: start feed, engine and monitor as separate processes and keep them running
(and bog-gateway after the engine when ``execution.mode`` is dry-run or live).

Outside systemd this is the process manager: it starts the feed, waits for its ticks ring,
starts the engine, waits for its metrics block, then starts the monitor. A child that dies is
restarted with exponential back-off (like systemd's ``Restart=on-failure``). The first SIGINT
or SIGTERM stops the children in reverse order (each unlinks its own shared memory); a second
one kills them.

Children run ``python -I -m bog.cli``: isolated mode never puts the working directory (nor
``$PYTHONPATH``, nor the user's site directory) on ``sys.path``, so a ``bog/`` folder where
``bog run`` was started cannot replace the installed package. Each child gets its restart
count in ``$BOG_RESTARTS``; it writes it into its segment headers, which is what the monitor
exports as ``bog_process_restarts`` (so the two always agree).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bog.config import Config
from bog.log import setup_logging
from bog.monitor.address import lookup
from bog.process import child_command, http_status
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod

log = logging.getLogger("bog.supervisor")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
START_TIMEOUT_S = 120.0  # first start compiles the numba kernels (cached afterwards)
STOP_TIMEOUT_S = 10.0
BACKOFF_MAX_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: Callable[[subprocess.Popen], bool]  # started and serving
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff_s: float = 1.0
    started_at: float = field(default=0.0)


class Supervisor:
    def __init__(self, cfg: Config, args):
        self.cfg = cfg
        self.instance = args.instance
        self.args = args
        self.should_exit = False
        self.kill_now = False
        names = SegmentNames(self.instance)
        base = child_command()
        common = ["--instance", self.instance]
        if args.config:
            common += ["--config", args.config]
        feed_opts = []
        if getattr(args, "feed", None):
            feed_opts += ["--feed", args.feed]
        if getattr(args, "replay_file", None):
            feed_opts += ["--replay-file", args.replay_file]
        if getattr(args, "trades_file", None):
            feed_opts += ["--trades-file", args.trades_file]
        if getattr(args, "speed", None):
            feed_opts += ["--speed", args.speed]
        if getattr(args, "rate", None) is not None:
            feed_opts += ["--rate", str(args.rate)]
        for opt in ("market", "venue_url"):  # the lighter source's options
            if getattr(args, opt, None):
                feed_opts += ["--" + opt.replace("_", "-"), getattr(args, opt)]
        mon_opts = ["--port", str(args.port)] if getattr(args, "port", None) is not None else []
        port = args.port if getattr(args, "port", None) is not None else cfg.monitor.port
        health = f"http://{cfg.monitor.host}:{port}/health"

        def monitor_ready(proc) -> bool:
            url = health
            if port == 0:  # any free port: the one this monitor bound, from its address segment
                try:
                    a = lookup(self.instance)
                except seg_mod.SegmentError:
                    return False
                if a is None or a.pid != proc.pid:
                    return False
                url = a.url("/health")
            return http_status(url, 0.5) is not None

        self.children = [
            Child("feed", base + ["feed"] + common + feed_opts, _segment_ready(names.ticks)),
            Child("engine", base + ["engine"] + common, _segment_ready(names.engine_metrics)),
        ]
        if cfg.execution.mode != "paper":
            # dry-run / live: the gateway reads the engine's intent ring, so it starts after it
            self.children.append(Child("gateway", base + ["gateway"] + common,
                                       _segment_ready(names.gateway_metrics)))
        if not getattr(args, "no_monitor", False):
            self.children.append(Child("monitor", base + ["monitor"] + common + mon_opts,
                                       monitor_ready))

        self.replay = cfg.feed.source == "replay"
        self.report_path = getattr(args, "report", None)
        self._engine_up = 0.0  # monotonic time the engine was ready
        self._final: tuple | None = None  # (feed, engine metrics, wall s) when the replay ended

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit:
            self.kill_now = True
        self.should_exit = True

    def run(self, duration_s: float | None) -> int:
        for s in HANDLED_SIGNALS:
            signal.signal(s, self.handle_exit)
        deadline = time.monotonic() + duration_s if duration_s else float("inf")
        try:
            for child in self.children:
                if self.should_exit:
                    break
                ok = self._start(child, wait=True)
                if child.name == "engine":
                    self._engine_up = time.monotonic()
                if not ok:
                    code = child.proc.returncode if child.proc else None
                    if code is not None and code < 0:
                        # killed by a signal while starting: a crash, restarted like any other
                        log.error("bog-%s killed by signal %d while starting", child.name, -code)
                        continue
                    log.critical("bog run: %s failed to start (exit status %s); stopping",
                                 child.name, code)
                    self.should_exit = True
                    self._stop_all()
                    return 1
            if not self.should_exit:
                log.info("bog run: pipeline up (instance %s); Ctrl-C to stop%s", self.instance,
                         " (or the end of the replay)" if self.replay else "")
            while not self.should_exit and time.monotonic() < deadline:
                self._watch()
                if self.replay and self._replay_finished():
                    break
                time.sleep(0.1)
        finally:
            self._stop_all()
        if self._final is not None:
            return self._report()
        return 0

    # -- replay: end by itself, with a report ------------------------------------------------
    def _blocks(self):
        """(feed, engine) metrics snapshots of this run's children, or None."""
        from bog.shm.metrics import ENGINE, FEED, MetricsBlock

        names = SegmentNames(self.instance)
        out = []
        for child, (name, proc) in zip(self.children[:2], ((names.feed_metrics, FEED),
                                                            (names.engine_metrics, ENGINE))):
            try:
                blk = MetricsBlock.attach(name, proc)
            except seg_mod.SegmentError:
                return None
            try:
                m = blk.snapshot()
            finally:
                blk.close(unlink=False)
            if child.proc is None or int(m["pid"]) != child.proc.pid:
                return None
            out.append(m)
        return out

    def _replay_finished(self) -> bool:
        """True once the feed published every row, the engine read them all and drained its
        fill queue; the final metrics are kept in ``_final``."""
        b = self._blocks()
        if b is None:
            return False
        fm, em = b
        if not (int(fm["replay_done"]) == 1 and int(em["ring_read_epoch"]) != 0
                and int(em["ring_read_pos"]) == int(fm["messages_total"])
                and int(em["fills_generated_total"]) == int(em["fills_received_total"].sum())
                + int(em["fills_dropped_total"])):
            return False
        wall = time.monotonic() - self._engine_up
        time.sleep(0.3)  # a few housekeeping passes: order events journaled, metrics exported
        b = self._blocks()
        if b is None:
            return False
        self._final = (b[0], b[1], wall)
        log.info("bog run: replay processed to its last row; stopping")
        return True

    def _report(self) -> int:
        import orjson

        from bog.engine.process import journal_path
        from bog.replayreport import build_report, format_report, journal_run

        fm, em, wall = self._final
        engine_pid = int(em["pid"])
        try:
            records = journal_run(journal_path(self.cfg, self.instance), engine_pid)
        except (OSError, ValueError) as e:
            print(f"bog run: replay report: cannot read the journal: {e}", file=sys.stderr)
            return 1
        ex = self.cfg.execution
        report = build_report(self.cfg.feed.replay_file, self.cfg.feed.replay_speed, fm, em,
                              records, wall, trades_file=self.cfg.feed.replay_trades_file,
                              fill_model=ex.fill_model, queue_cancels=ex.queue_cancels)
        print(format_report(report), flush=True)
        if self.report_path:
            try:
                with open(self.report_path, "wb") as f:
                    f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
            except OSError as e:
                print(f"bog run: cannot write the report to {self.report_path}: "
                      f"{e.strerror or e}", file=sys.stderr)
                return 1
        complete = (report["lost"] == 0 and report["rows_processed"] + report["skipped_at_attach"]
                    == report["rows_published"])
        if not complete:
            print(f"bog run: replay incomplete: {report['rows_processed']} of "
                  f"{report['rows_published']} rows processed, {report['lost']} lost, "
                  f"{report['skipped_at_attach']} skipped", file=sys.stderr)
            return 1
        return 0

    def _start(self, child: Child, wait: bool) -> bool:
        env = dict(os.environ, **{seg_mod.RESTARTS_ENV: str(child.restarts)})
        child.proc = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL, env=env)
        child.started_at = time.monotonic()
        log.info("started bog-%s (pid %d, restarts %d)", child.name, child.proc.pid,
                 child.restarts)
        if not wait:
            return True
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end and not self.should_exit:
            if child.proc.poll() is not None:
                return False
            if child.ready(child.proc):
                return True
            time.sleep(0.05)
        return self.should_exit

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            p = child.proc
            if p is not None and p.poll() is None:
                if now - child.started_at > 60:
                    child.backoff_s = 1.0  # ran long enough: reset back-off
                continue
            if p is not None:
                log.error("bog-%s exited with status %s; restarting in %.0f s", child.name,
                          p.returncode, child.backoff_s)
                child.proc = None
                child.next_start = now + child.backoff_s
                child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
                child.restarts += 1
            elif now >= child.next_start:
                self._start(child, wait=False)

    def _stop_all(self) -> None:
        running = [c for c in reversed(self.children) if c.proc is not None and c.proc.poll() is None]
        for c in running:
            c.proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + STOP_TIMEOUT_S
            while c.proc.poll() is None and time.monotonic() < end and not self.kill_now:
                time.sleep(0.05)
            if c.proc.poll() is None:
                log.error("bog-%s did not stop in %.0f s: killing it", c.name, STOP_TIMEOUT_S)
                c.proc.kill()
                c.proc.wait()
        if running:
            log.info("bog run: all processes stopped")


def _segment_ready(name: str) -> Callable[[subprocess.Popen], bool]:
    """Ready when the child owns segment ``name`` and has marked it READY."""
    def ready(proc: subprocess.Popen) -> bool:
        try:
            seg = seg_mod.attach(name, None)
        except seg_mod.SegmentError:
            return False
        try:
            return seg.state == seg_mod.STATE_READY and int(seg.header[0]["owner_pid"]) == proc.pid
        finally:
            seg.close(unlink=False)
    return ready


def run_supervisor(cfg: Config, args) -> int:
    setup_logging("supervisor", args.instance, str(cfg.feed.market_id),
                  os.environ.get("BOG_LOG_DIR", cfg.process.log_dir) or None)
    return Supervisor(cfg, args).run(args.duration)
