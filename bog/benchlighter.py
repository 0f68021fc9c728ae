"""``bog bench --feed lighter``: the live feed source against ``bog fake-venue`` on loopback.

Real processes: the fake venue (pinned to core 1) and ``bog feed --feed lighter`` (pinned to
core 0, as configured). Prints what it measured, asserts nothing:

- frame -> publish latency: from the frame handed over by the WebSocket library to the
  snapshot published in the ticks ring (the feed's ``venue_frame_to_publish_ns`` histogram,
  a window of ``seconds``) at 1,000 updates/s;
- sustained rate: the fake is asked for more updates per second step by step; a step counts
  as sustained when the feed received everything the fake sent in the window (fake
  ``updates_total`` vs the feed's book updates), nothing was rejected or lost to a gap, and
  the last published top 10 equals the fake's book at that update;
- feed CPU at 100 updates/s (utime + stime from /proc over the window).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

from bog.bench import _cpu_ticks, machine
from bog.process import stop_child
from bog.shm import SegmentNames
from bog.shm.codes import VENUE_FRAME
from bog.shm.layouts import FLAG_FULL_SNAPSHOT, LATENCY_NS_EDGES
from bog.shm.metrics import FEED, MetricsBlock, histogram_quantile
from bog.shm.ring import READ_OK, TicksRing
from bog.shm.segment import unlink_instance

RATES = (5_000, 10_000, 20_000, 40_000)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(port: int, path: str, doc=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 data=None if doc is None else json.dumps(doc).encode(),
                                 method="GET" if doc is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class _Run:
    """One fake venue + one lighter feed."""

    def __init__(self, rate: float, workdir: str):
        self.port = _free_port()
        self.instance = f"benchl{os.getpid()}r{int(rate)}"
        env = dict(os.environ, BOG_STATE_DIR=os.path.join(workdir, "state"),
                   BOG_LOG_DIR=os.path.join(workdir, "logs"), BOG_FEED_SOURCE="lighter",
                   BOG_VENUE_URL=f"ws://127.0.0.1:{self.port}/stream", BOG_VENUE_MARKET="BTC")
        env.pop("NOTIFY_SOCKET", None)
        self.fake = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "bog.cli",
                                      "fake-venue", "--port", str(self.port), "--rate",
                                      str(rate), "--markets", "BTC"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._wait(lambda: _http(self.port, "/api/v1/orderBooks"), "fake venue")
        self.feed = subprocess.Popen([sys.executable, "-m", "bog.cli", "feed", "--instance",
                                      self.instance], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.names = SegmentNames(self.instance)
        self.blk = self._wait(lambda: MetricsBlock.attach(self.names.feed_metrics, FEED,
                                                          wait_ready_s=0), "feed")
        self._wait(lambda: int(self.blk.m[0]["venue_book_valid"]) == 1, "venue book")

    def _wait(self, fn, what, timeout=120.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                v = fn()
                if v:
                    return v
            except Exception:
                pass
            if self.fake.poll() is not None:
                raise RuntimeError("fake venue exited")
            time.sleep(0.1)
        raise RuntimeError(f"bench: {what} not ready in {timeout:.0f} s")

    def sample(self):
        return (time.monotonic(), self.blk.snapshot(), _http(self.port, "/fake/stats"),
                _cpu_ticks(self.feed.pid))

    def exact(self) -> bool:
        """The newest published book snapshot equals the fake's book at that update."""
        ring = TicksRing.attach(self.names.ticks)
        try:
            for pos in range(ring.head - 1, max(ring.head - 50, 0), -1):
                st, s = ring.read(pos)
                if st == READ_OK and s["flags"] & FLAG_FULL_SNAPSHOT and s["trade_sz"] == 0:
                    ts = int(s["exchange_ts_ns"]) // 1000
                    want = _http(self.port, "/fake/books", {"market_id": 1,
                                                            "ts_us": [ts]})["books"][str(ts)]
                    got = np.array([s["bid_px_l"], s["bid_sz_l"], s["ask_px_l"],
                                    s["ask_sz_l"]]).tolist()
                    return want is not None and got == want["top"]
            return False
        finally:
            ring.close(unlink=False)

    def stop(self):
        self.blk.close(unlink=False)
        stop_child(self.feed)
        stop_child(self.fake)
        unlink_instance(self.instance)


def measure(rate: float, seconds: float, workdir: str) -> dict:
    run = _Run(rate, workdir)
    try:
        time.sleep(1.0)
        t0, a, fa, c0 = run.sample()
        time.sleep(seconds)
        t1, b, fb, c1 = run.sample()
        dt = t1 - t0
        hist = b["venue_frame_to_publish_ns_bucket"].astype(np.int64) - \
            a["venue_frame_to_publish_ns_bucket"].astype(np.int64)
        got = int(b["venue_frames_total"][VENUE_FRAME.BOOK_UPDATE]) - \
            int(a["venue_frames_total"][VENUE_FRAME.BOOK_UPDATE])
        sent = fb["updates_total"] - fa["updates_total"]
        rejected = int(b["venue_frames_rejected_total"].sum())
        time.sleep(0.5)
        return {
            "rate_target": rate,
            "fake_sent_per_s": round(sent / dt, 1),
            "feed_received_per_s": round(got / dt, 1),
            "rejected": rejected,
            "resyncs": int(b["venue_book_resyncs_total"]),
            "reconnects": int(b["venue_reconnects_total"]),
            "exact": run.exact(),
            "p50_ns": _q(0.5, hist), "p99_ns": _q(0.99, hist),
            "feed_cpu_percent": round(100 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / dt, 1),
        }
    finally:
        run.stop()


def _q(q, hist):
    v = histogram_quantile(q, hist, LATENCY_NS_EDGES)
    return None if v != v else round(v, 1)


def run_bench_lighter(cfg, args) -> int:
    seconds = 2.0 if args.quick else 5.0
    workdir = tempfile.mkdtemp(prefix="bog-bench-lighter-")
    out = {"machine": machine(), "steps": []}
    try:
        for rate in (100, 1_000) + (() if args.quick else RATES):
            if not args.json:
                print(f"measuring the lighter feed at {rate} updates/s for {seconds:.0f} s ...",
                      file=sys.stderr, flush=True)
            out["steps"].append(measure(rate, seconds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    m = out["machine"]
    print(f"bog bench --feed lighter on {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}: "
          "fake venue (core 1) -> bog feed (core 0) over loopback WebSocket")
    print("target/s   sent/s   received/s  rejected  exact  frame->publish P50/P99 ns  feed cpu")
    for s in out["steps"]:
        # a lost frame shows as a nonce gap (a rejection and a resync): none, an exact book,
        # and the feed keeping up (within 5 %: the two counters are read ~ms apart)
        ok = s["exact"] and s["rejected"] == 0 and s["resyncs"] == 0 and \
            s["feed_received_per_s"] >= 0.95 * s["fake_sent_per_s"]
        print(f"{s['rate_target']:>8,} {s['fake_sent_per_s']:>8,.0f} {s['feed_received_per_s']:>12,.0f}"
              f" {s['rejected']:>9} {str(s['exact']):>6}  {s['p50_ns']} / {s['p99_ns']}"
              f"{'':>8}{s['feed_cpu_percent']:>5}%  {'sustained' if ok else 'NOT sustained'}")
    return 0
