"""End to end: the real pipeline (``bog run``), a real Prometheus with the shipped config and
rules, a real Alertmanager with the shipped routing, and the monitor's own alerts driven by
the pipeline's fault injection and limits.

Prometheus and Alertmanager are the Debian packages (``scripts/setup --test`` installs them);
each is started on 127.0.0.1 with temporary storage and its final configuration (no reload).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from monsupport import mon_instance, need, port_free, unlink_all, until
from test_monitor_assets import dashboard_exprs

from bog.monitor.assets import render
from bog.process import signal_pid, stop_child

pytestmark = pytest.mark.slow


class Run:
    """``bog run`` of one instance with a config, logs and state in ``d``."""

    def __init__(self, d: Path, config: str, duration_s: float = 300, journal_fill_btc=0.0):
        d.mkdir(parents=True, exist_ok=True)
        self.d = d
        self.instance = mon_instance()
        if journal_fill_btc:  # a position left by a previous run, recovered from the journal
            from bog.engine.journal import Journal

            j = Journal(str(d / "state" / self.instance / "journal.jsonl"))
            j.fill(1, 1, 1, 60_000 * 10**9, int(journal_fill_btc * 1e9), 0, 0, time.time_ns())
        self.port = port_free()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = d / "bog.toml"
        cfg.write_text(config)
        # idle back-off: several engines share the two cores in these tests
        env = dict(os.environ, BOG_LOG_DIR=str(d / "logs"), BOG_STATE_DIR=str(d / "state"),
                   PYTHONUNBUFFERED="1", BOG_PROCESS_ENGINE_IDLE_SLEEP_US="200")
        for k in ("MAX_POSITION", "MAX_DAILY_LOSS", "FILL_QUEUE_SIZE", "SPREAD_BPS",
                  "ORDER_SIZE", "JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            env.pop(k, None)
        self.env = env
        self.out = open(d / "run.out", "ab")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bog.cli", "run", "--instance", self.instance, "--config",
             str(cfg), "--port", str(self.port), "--duration", str(duration_s)],
            cwd=d, env=env, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def ready(self, timeout=120.0) -> "Run":
        def up():
            if self.p.poll() is not None:
                raise AssertionError(f"bog run exited:\n{self.log()}")
            try:
                doc = httpx.get(self.url + "/health", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            return doc["processes"]["engine"]["up"] and doc["processes"]["feed"]["up"]
        until(up, timeout, interval=0.2, what=f"pipeline {self.instance} up")
        return self

    def alerts(self) -> dict:
        return httpx.get(self.url + "/alerts", timeout=5).json()

    def fired(self) -> set[str]:
        return {k for k, v in self.alerts()["firings_total"].items() if v > 0}

    def gauge(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))

    def pid(self, process: str) -> int:
        return httpx.get(self.url + "/health", timeout=5).json()["processes"][process]["pid"]

    def ctl(self, *args) -> None:
        subprocess.run([sys.executable, "-m", "bog.ctl", *args, "--instance", self.instance],
                       env=self.env, capture_output=True, timeout=30)

    def log(self) -> str:
        p = self.d / "logs" / "bog.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()
        unlink_all(self.instance)


class Hooks(ThreadingHTTPServer):
    """Alertmanager webhook receiver: records every notification."""

    def __init__(self):
        self.received: list[dict] = []

        class H(BaseHTTPRequestHandler):
            def do_POST(h):
                n = int(h.headers.get("content-length", 0))
                self.received.append({"path": h.path, "body": json.loads(h.rfile.read(n))})
                h.send_response(200)
                h.end_headers()

            def log_message(h, *a):
                pass
        super().__init__(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def start(argv, out: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=open(out, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def stop(p: subprocess.Popen) -> None:
    stop_child(p)


def test_prometheus_alertmanager_end_to_end(tmp_path):
    """Shipped config + rules on a real Prometheus scraping the real pipeline: every recording
    rule and dashboard query returns data; a breaker trip fires CircuitBreakerTripped in
    Prometheus, which reaches a real Alertmanager and its critical receiver."""
    prometheus, alertmanager = need("prometheus"), need("prometheus-alertmanager")
    # bad books are market failures: the breaker opens after 5 of them (stays open 60 s)
    run = Run(tmp_path / "pipe", """
[feed]
fault_bad_book_probability = 0.01
[breaker]
cooldown_s = 120.0
""")
    hooks = Hooks()
    am_port, prom_port = port_free(), port_free()
    am_dir, prom_dir = tmp_path / "am", tmp_path / "prom"
    am_dir.mkdir()
    prom_dir.mkdir()
    am_cfg = render("alertmanager").replace("http://127.0.0.1:5001", hooks.url)
    (am_dir / "alertmanager.yml").write_text(am_cfg)
    (prom_dir / "prometheus.yml").write_text(
        render("prometheus", run.instance, run.port).replace("127.0.0.1:9093",
                                                              f"127.0.0.1:{am_port}"))
    (prom_dir / "bog-rules.yml").write_text(render("rules"))
    (prom_dir / "bog-alerts.yml").write_text(render("alerts"))
    procs = []
    try:
        procs.append(start([alertmanager, f"--config.file={am_dir / 'alertmanager.yml'}",
                            f"--storage.path={am_dir / 'data'}",
                            f"--web.listen-address=127.0.0.1:{am_port}",
                            "--cluster.listen-address="], am_dir / "out.log"))
        procs.append(start([prometheus, f"--config.file={prom_dir / 'prometheus.yml'}",
                            f"--storage.tsdb.path={prom_dir / 'data'}",
                            f"--web.listen-address=127.0.0.1:{prom_port}"],
                           prom_dir / "out.log"))
        run.ready()
        api = f"http://127.0.0.1:{prom_port}/api/v1/query"

        def query(expr: str) -> list:
            try:
                r = httpx.get(api, params={"query": expr}, timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return []
            assert r["status"] == "success", (expr, r)
            return r["data"]["result"]

        until(lambda: query('up{job="bog-trading"} == 1'), 60, interval=0.5,
              what="Prometheus scraping the monitor")
        records = [r["record"] for g in yaml.safe_load(render("rules"))["groups"]
                   for r in g["rules"]]
        exprs = records + [e.replace("$instance", ".*") for e in dashboard_exprs()]

        end = time.monotonic() + 90
        while (left := [e for e in exprs if not query(e)]) and time.monotonic() < end:
            time.sleep(2)
        assert left == [], f"no data from Prometheus for: {left}"
        for r in ("bog:tick_processing_ns:p50", "bog:tick_processing_ns:p99",
                  "bog:ticks_per_second"):
            v = float(query(r)[0]["value"][1])
            assert v == v and v > 0, (r, v)  # a number, not NaN

        until(lambda: query('ALERTS{alertname="CircuitBreakerTripped",alertstate="firing"}'),
              90, interval=1, what="CircuitBreakerTripped firing in Prometheus")

        def in_am():
            r = httpx.get(f"http://127.0.0.1:{am_port}/api/v2/alerts", timeout=5).json()
            return [a for a in r if a["labels"]["alertname"] == "CircuitBreakerTripped"]
        a = until(in_am, 60, interval=1, what="CircuitBreakerTripped in Alertmanager")[0]
        assert a["labels"]["severity"] == "critical" and a["status"]["state"] == "active"
        assert a["labels"]["instance"] == f"bog-{run.instance}"
        assert a["receivers"][0]["name"] == "critical"

        def notified():
            return [n for n in hooks.received if n["path"] == "/bog/critical" and any(
                x["labels"]["alertname"] == "CircuitBreakerTripped"
                for x in n["body"]["alerts"])]
        n = until(notified, 60, interval=0.5, what="critical webhook notification")[0]
        assert n["body"]["status"] == "firing"
        # the monitor agrees, independently of Prometheus
        assert "CircuitBreakerTripped" in run.fired()
    finally:
        for p in procs:
            stop(p)
        hooks.shutdown()
        run.stop()


# Scenarios that drive the real pipeline into every alert state. They run concurrently
# (each is a whole pipeline) so the suite stays short; each lists the alerts it must fire.
SCENARIOS = {
    # feed fault injection: gaps, bad books (breaker), latency spikes, stalls
    "market": ("""
[feed]
fault_gap_probability = 0.02
fault_bad_book_probability = 0.005
fault_latency_spike_probability = 0.05
fault_latency_spike_us = 5000.0
fault_stall_every_s = 15.0
fault_stall_s = 12.0
""", {"SequenceGapStorm", "CircuitBreakerTripped", "FeedLatencyHigh", "NoSignals",
      "StaleData"}),
    # daily loss limit set low: the fee of one fill (20 bps of ~6000 USD) is more than it
    "loss": ("""
[risk]
max_daily_loss_usd = 10.0
[execution]
maker_fee_bps = 20.0
""", {"DailyLossNear", "DailyLossLimit", "CircuitBreakerTripped"}),
    # position limit set low: the engine recovers a 0.095 BTC position from its journal (95%
    # of the limit) and quotes too wide (200 bps, beyond the risk distance) to reduce it
    "position": ("""
[risk]
max_position_btc = 0.1
[strategy]
spread_bps = 200.0
""", {"PositionLimitNear"}),
    # fills never drained from a 4-slot queue: it fills, overflows, position tracking drifts
    # and is corrected; 'bogctl breaker reset' re-arms quoting after each overflow trip
    "fills": ("""
[execution]
fault_stop_fill_drain = true
fill_queue_size = 4
reconcile_every_s = 0.2
""", {"FillQueueHigh", "FillQueueOverflow", "PositionCorrectionsHigh", "NoFills",
      "OrdersWithoutFills"}),
    # a process stops answering (SIGSTOP of the feed for 17 s)
    "down": ("", {"ProcessDown"}),
    # engine fault injection: every tick 20 us slower (P50 > 1 us, P99 > 10 us for 30 s)
    "latency": ("""
[execution]
fault_slow_tick_every = 1
fault_slow_tick_us = 20.0
""", {"TickLatencyP50High", "ExtremeLatency"}),
    # one tick in 400 takes 150 us (any tick > 100 us)
    "slowtick": ("""
[execution]
fault_slow_tick_every = 400
fault_slow_tick_us = 150.0
""", {"SlowTick"}),
}


def test_every_monitor_alert_fires_on_the_real_pipeline(tmp_path):
    runs = {name: Run(tmp_path / name, cfg, journal_fill_btc=0.095 if name == "position" else 0)
            for name, (cfg, _) in SCENARIOS.items()}
    try:
        for r in runs.values():
            r.ready()
        t_ready = time.monotonic()
        want = {name: exp for name, (_, exp) in SCENARIOS.items()}
        stopped_feed = None
        deadline = time.monotonic() + 240  # generous: a loaded machine slows every run
        last_reset = 0.0
        while time.monotonic() < deadline:
            done = {n for n, r in runs.items() if want[n] <= r.fired()}
            if done == set(runs):
                break
            now = time.monotonic()
            if stopped_feed is None and now - t_ready > 2:
                stopped_feed = runs["down"].pid("feed")  # from /health: checked (> 0, alive)
                assert signal_pid(stopped_feed, signal.SIGSTOP), stopped_feed
                stopped_at = now
            if stopped_feed and now - stopped_at > 17:
                signal_pid(stopped_feed, signal.SIGCONT)
                stopped_feed = 0
            if "PositionCorrectionsHigh" not in runs["fills"].fired() and now - last_reset > 2:
                runs["fills"].ctl("breaker", "reset")  # quote again: next fill drops again
                last_reset = now
            time.sleep(1)
        if stopped_feed:
            signal_pid(stopped_feed, signal.SIGCONT)
        report = {n: sorted(runs[n].fired()) for n in runs}
        print(f"fired after {time.monotonic() - t_ready:.0f} s: {report}")
        for n, r in runs.items():
            assert want[n] <= r.fired(), (n, sorted(want[n] - r.fired()), report)
            log = r.log()
            for a in want[n]:
                assert f"ALERT FIRING {a}" in log, (n, a)
        assert "ProcessDown{process=feed}" in runs["down"].log()
        # the pipeline's own greppable lines, as in the guide's log section
        assert "Circuit breaker" in runs["market"].log()
        assert "Sequence gap" in runs["market"].log()
        assert "Stale data" in runs["market"].log()
        assert "fills dropped" in runs["fills"].log()
        assert "Position correction" in runs["fills"].log()
    finally:
        for r in runs.values():
            r.stop()


def test_healthy_pipeline_answers_200_with_no_alert_firing(tmp_path):
    """The default synthetic market on a real pipeline: /health says healthy (200) and no
    alert fires, so a monitor that fired alerts (or reported degraded) all the time fails.

    A loaded test machine can really starve the feed for a second (StaleData) or preempt a
    tick (SlowTick): those two are accepted only when the engine's own counters show that
    cause; every other alert, and a non-200 /health without such a cause, fails the test."""
    run = Run(tmp_path / "healthy", "")
    try:
        run.ready()
        time.sleep(5)  # warm-up: first fills, a minute of latency history starts
        seen = []
        end = time.monotonic() + 40
        while time.monotonic() < end:
            r = httpx.get(run.url + "/health", timeout=5)
            doc = r.json()
            seen.append((r.status_code, doc["status"], {a["name"] for a in doc["alerts"]}))
            time.sleep(1)
        metrics = httpx.get(run.url + "/metrics", timeout=5).text
        excused = set()
        if run.gauge("bog_stale_data_total") > 0:
            excused.add("StaleData")
        if run.gauge("bog_tick_processing_max_ns") > 100_000:
            excused |= {"SlowTick"}
        fired = run.fired()
        assert fired <= excused, (fired, excused, run.alerts())
        bad = [s for s in seen if s[2] - excused or (s[:2] != (200, "healthy") and not s[2])]
        assert not bad, (bad, run.alerts())
        assert sum(1 for s in seen if s[:2] == (200, "healthy")) >= len(seen) // 2, seen
        assert run.gauge("bog_fills_dropped_total") == 0
        fills = re.findall(r'^bog_fills_received_total\{[^}]*\} (\S+)$', metrics, re.M)
        assert sum(float(v) for v in fills) > 0  # it traded
    finally:
        run.stop()
