"""Every tick the feed publishes is processed, lost or skipped, and the metrics say which.

Invariant (engine metrics): ring_published_total = ticks_total + ring_lost_ticks_total +
ticks_skipped_at_attach_total + ring_backlog_ticks, and ring_unaccounted_ticks = 0 whenever the
engine has caught up. The first test drives the jump paths of the read position through the
compiled kernel; the second checks the invariant exactly on real feed and engine processes
with the engine lapped, attached late and re-attached to a restarted feed.
"""

from __future__ import annotations

import harness
from support import FAST, merge, to_toml, wait_for

from bog.engine import kernel as K
from bog.shm.layouts import RING_HEAD
from bog.shm.metrics import FEED, MetricsBlock

BID, ASK = 60_000.0, 60_010.0


def _accounted(m) -> int:
    return (int(m["ticks_total"]) + int(m["ring_lost_ticks_total"])
            + int(m["ticks_skipped_at_attach_total"]))


def test_kernel_counts_every_position_it_jumps_over():
    h = harness.KernelHarness(ring_capacity=8)
    for _ in range(5):
        h.publish(BID, ASK)
    # attached late, at the newest snapshot: the 4 before it are skipped
    assert K.ring_attach(h.state, h.metrics, int(h.tctrl[RING_HEAD])) == 4
    h.run(idle_ns=1)
    assert int(h.m["ticks_total"]) == 1 and int(h.m["ticks_skipped_at_attach_total"]) == 4
    assert int(h.m["ring_unaccounted_ticks"]) == 0
    # lapped: 20 published at once, the overrun resync counts the 19 it jumps over
    for _ in range(20):
        h.publish(BID, ASK)
    h.run(idle_ns=1)
    assert int(h.m["ring_lost_ticks_total"]) == 19 and int(h.m["ticks_total"]) == 2
    assert int(h.m["ring_unaccounted_ticks"]) == 0
    assert _accounted(h.m) == 25
    # the ring is left (feed gone) with 3 unread: lost, and its head joins published_before
    for _ in range(3):
        h.publish(BID, ASK)
    assert K.ring_detach(h.state, h.metrics, int(h.tctrl[RING_HEAD])) == 3
    assert int(h.st["published_before"]) == 28 and int(h.st["next_pos"]) == 0
    # a restarted feed: a new ring with 6 published, attached at the newest
    h.tctrl[:] = 0
    h.tctrl[2] = 8  # RING_CAPACITY
    h.twords[:] = 0
    for _ in range(6):
        h.publish(BID, ASK)
    assert K.ring_attach(h.state, h.metrics, 6) == 5
    h.run(idle_ns=1)
    assert int(h.m["ring_unaccounted_ticks"]) == 0
    assert _accounted(h.m) == 28 + 6
    # a count missing on any path shows up as unaccounted ticks
    h.m["ring_lost_ticks_total"] -= 1
    h.run(idle_ns=1)
    assert int(h.m["ring_unaccounted_ticks"]) == 1


# The engine is slowed to at most ~1,000 ticks/s (every accepted tick busy-waits 1 ms;
# validation lets the jumpy flat-out market through) with idle back-off. First feed: flat out,
# laps the engine all the time, and stalls now and then (the engine idle-sleeps). Second feed
# (a restart): 1,500/s, so the engine falls behind without being lapped and still has a
# backlog to read when the feed stops.
LAPPED = merge(FAST, {
    "feed": {"rate_per_s": 0.0, "ring_capacity": 4096, "fault_stall_every_s": 0.3,
             "fault_stall_s": 0.05},
    "execution": {"fault_slow_tick_every": 1, "fault_slow_tick_us": 1000.0},
    "validation": {"max_price_change_bps": 100_000.0, "resume_max_move_bps": 100_000.0},
})
BEHIND = merge(LAPPED, {"feed": {"rate_per_s": 1500.0, "fault_stall_every_s": 0.0}})


def _feed_run(pl, min_messages: int):
    """Start the feed; returns its metrics block, kept mapped to read the final count after
    the feed has exited (and unlinked it)."""
    pl.start(FEED)
    blk = MetricsBlock.attach(pl.names.feed_metrics, FEED)
    wait_for(lambda: int(blk.m[0]["messages_total"]) >= min_messages, 30,
             what=f"feed published {min_messages}")
    return blk


def _stop_feed(pl, blk, detaches: int) -> int:
    """Stop the feed, wait until the engine has left its ring; returns what the feed published."""
    assert pl.procs[FEED].stop() == 0
    published = int(blk.m[0]["messages_total"])
    blk.close(unlink=False)
    wait_for(lambda: pl.log_text().count("closed or gone; waiting for the feed") >= detaches,
             30, what="engine left the closed ring")
    return published


def _assert_invariant(pl, published: int):
    # the engine's housekeeping exports the sum of ring heads and its backlog: wait until it
    # has seen the whole ring and read (or counted) all of it
    def settled():
        m = pl.metrics()
        return (int(m["ring_published_total"]), int(m["ring_backlog_ticks"])) == (published, 0)
    wait_for(settled, 10, what=f"ring_published_total == {published}, no backlog")
    m = pl.metrics()
    parts = {k: int(m[k]) for k in ("ticks_total", "ring_lost_ticks_total",
                                     "ticks_skipped_at_attach_total")}
    assert _accounted(m) == published, f"published {published} != {parts}"
    wait_for(lambda: int(pl.metrics()["ring_unaccounted_ticks"]) == 0, 10,
             what="ring_unaccounted_ticks == 0")
    return m


def test_published_equals_processed_lost_and_skipped_under_overrun(pipeline_factory):
    pl = pipeline_factory(LAPPED)
    # the feed publishes before the engine attaches: those ticks are skipped, and counted
    feed = _feed_run(pl, 50_000)
    pl.start("engine")
    wait_for(lambda: int(pl.metrics()["ring_overruns_total"]) >= 3, 30, what="overruns")
    wait_for(lambda: int(feed.m[0]["faults_injected_total"][1]) >= 1, 30, what="a feed stall")
    published1 = _stop_feed(pl, feed, 1)
    m = _assert_invariant(pl, published1)
    assert int(m["ticks_skipped_at_attach_total"]) >= 50_000 - 1
    assert int(m["ring_lost_ticks_total"]) > 0 and int(m["ticks_total"]) > 0
    skipped1, ticks1 = int(m["ticks_skipped_at_attach_total"]), int(m["ticks_total"])

    # a restarted feed (new epoch), slower: re-attached at its newest snapshot, the engine
    # falls behind and is still reading when the feed stops; it reads the ring to its end
    pl.config_path.write_text(to_toml(BEHIND))
    feed = _feed_run(pl, 1)
    wait_for(lambda: int(pl.metrics()["feed_restarts_total"]) == 1, 30, what="re-attach")
    wait_for(lambda: int(pl.metrics()["ring_backlog_ticks"]) >= 300, 30, what="a backlog")
    published2 = _stop_feed(pl, feed, 2)
    m = _assert_invariant(pl, published1 + published2)
    assert int(m["ticks_skipped_at_attach_total"]) >= skipped1
    assert int(m["ticks_total"]) - ticks1 >= 300
    text = pl.log_text()
    assert "ticks published before it" in text and "Ring overrun" in text
    assert "ticks unread" not in text  # read to its end, nothing left behind
