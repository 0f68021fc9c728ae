"""bog-feed: publishes market snapshots into the ticks ring.

Lifecycle: ``startup`` (pin, create the ticks ring and the feed metrics block, prepare the
source and compile its kernel) -> ``main_loop`` (the source's kernel publishes for one
housekeeping period at a time; housekeeping in between) -> ``shutdown`` (mark closed, unlink).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from bog.feed.synthetic import make_params, make_state, new_staging, synth_run
from bog.process import Service
from bog.schedstat import SchedPublisher
from bog.shm import SegmentNames
from bog.shm.metrics import FEED, MetricsBlock
from bog.shm import segment as seg_mod
from bog.shm.ring import TicksRing

log = logging.getLogger("bog.feed")


class SyntheticSource:
    """The built-in random-walk market (bog/feed/synthetic.py)."""

    done = False

    def __init__(self, cfg, ring: TicksRing, metrics: MetricsBlock):
        self.params = make_params(cfg.feed)
        self.state = make_state(cfg.feed)
        self.staging = new_staging()
        self.ring, self.metrics = ring, metrics

    def run(self, stop_ns: int) -> int:
        """Publish until ``stop_ns``; returns ns until the next update is due (0 if none)."""
        return synth_run(self.params, self.state, self.staging, self.ring.ctrl,
                         self.ring.words, self.metrics.m, stop_ns, 1 << 62)


class FeedService(Service):
    name = "feed"

    def startup(self) -> None:
        cfg = self.cfg
        self.pin(cfg.process.feed_core)
        names = SegmentNames(self.instance)
        self.metrics = None
        self.ring = None
        self.metrics = MetricsBlock.create(names.feed_metrics, FEED)
        self.ring = TicksRing.create(names.ticks, cfg.feed.ring_capacity)
        m = self.metrics.m[0]
        m["pid"] = os.getpid()
        m["start_ns"] = self.started_ns
        m["core"] = self.core
        m["rate_target_per_s"] = cfg.feed.rate_per_s
        # this (main) thread runs the publish kernel: its run-queue wait and preemptions,
        # read from housekeeping about once a second
        self._sched = SchedPublisher(m, threading.get_native_id())
        if cfg.feed.source == "replay":
            from bog.feed.replay import ReplaySource

            self.source = ReplaySource(cfg, self.ring, self.metrics, self.instance)
        elif cfg.feed.source == "lighter":
            from bog.feed.lighter import LighterSource

            self.source = LighterSource(cfg, self.ring, self.metrics)
        else:
            self.source = SyntheticSource(cfg, self.ring, self.metrics)
        self.source.run(0)  # compile (or load from cache) before declaring ready
        self._period_ns = int(cfg.process.housekeeping_ms * 1e6)
        self._next_stall = (time.monotonic() + cfg.feed.fault_stall_every_s
                            if cfg.feed.fault_stall_every_s > 0 else float("inf"))
        self._done_logged = False
        m["heartbeat_ns"] = time.time_ns()
        m["running"] = 1
        self.ring.segment.mark_ready()
        self.metrics.segment.mark_ready()
        if cfg.feed.source == "lighter":
            pace = f"venue {self.source.url} market {self.source.market.symbol}"
        elif cfg.feed.source == "replay":
            pace = f"replay of {cfg.feed.replay_file} at " + (
                f"{cfg.feed.replay_speed:g}x" if cfg.feed.replay_speed else "max speed")
        else:
            pace = f"rate {cfg.feed.rate_per_s or 'max'}/s"
        log.info("feed %s publishing to %s (capacity %d, %s)", cfg.feed.source, names.ticks,
                 cfg.feed.ring_capacity, pace)

    def main_loop(self) -> None:
        if hasattr(self.source, "run_forever"):  # an asyncio source (lighter): it calls
            self.source.run_forever(self)  # housekeeping() itself and stops on should_exit
            return
        while not self.should_exit:
            stop_ns = time.time_ns() + self._period_ns
            if not self.source.done:
                wait_ns = self.source.run(stop_ns)
                if wait_ns > 0:
                    time.sleep(min(wait_ns, max(0, stop_ns - time.time_ns())) / 1e9)
            else:
                time.sleep(self._period_ns / 1e9)
            self.housekeeping()

    def housekeeping(self) -> None:
        m = self.metrics.m[0]
        m["heartbeat_ns"] = time.time_ns()
        m["shm_untrusted_total"] = seg_mod.untrusted_total()
        self._sched.poll()
        self.watchdog()
        if time.monotonic() >= self._next_stall:
            self._stall()
        if self.source.done and not self._done_logged:
            self._done_logged = True
            m["replay_done"] = 1
            log.info("replay finished: %d rows published (%d of them book-invalid markers), "
                     "%d rejected", int(m["messages_total"]),
                     int(m["replay_book_invalid_total"]), int(m["replay_rows_rejected_total"]))

    def _stall(self) -> None:
        """Fault injection: stop publishing for ``fault_stall_s`` (heartbeat continues)."""
        f = self.cfg.feed
        log.warning("fault injection: feed stalling for %.1f s", f.fault_stall_s)
        self.metrics.m[0]["faults_injected_total"][1] += 1
        end = time.monotonic() + f.fault_stall_s
        while not self.should_exit and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            self.metrics.m[0]["heartbeat_ns"] = time.time_ns()
            self.watchdog()
        self._next_stall = time.monotonic() + f.fault_stall_every_s

    def shutdown(self) -> None:
        if hasattr(getattr(self, "source", None), "close"):
            self.source.close()
        if getattr(self, "metrics", None) is not None:
            self.metrics.m[0]["running"] = 0
            self.metrics.close()
        if getattr(self, "ring", None) is not None:
            self.ring.close()
