"""The one publish step every feed source ends with: stamp, publish, count."""

from __future__ import annotations

import numba as nb

from bog.shm.atomics import CLOCK_REALTIME, clock_ns
from bog.shm.hist import bucket_index
from bog.shm.layouts import FEED_LATENCY_US_EDGES, FLAG_FULL_SNAPSHOT, LATENCY_NS_EDGES
from bog.shm.ring import ticks_publish


@nb.njit(cache=True, nogil=True)
def publish_snapshot(ctrl, words, staging_words, slot, m):
    """Stamp ``local_publish_ns``, publish the staged slot and update the feed metrics ``m``.

    ``slot`` is the TICK_SLOT record view of ``staging_words``. Returns the publish time.
    """
    t0 = clock_ns(CLOCK_REALTIME)
    slot.local_publish_ns = t0
    ticks_publish(ctrl, words, staging_words)
    t1 = clock_ns(CLOCK_REALTIME)
    m.messages_total += 1
    if slot.flags & FLAG_FULL_SNAPSHOT:
        m.full_snapshots_total += 1
    if slot.trade_sz > 0:
        m.trades_total += 1
    m.last_sequence = slot.sequence
    lat_us = (slot.local_recv_ns - slot.exchange_ts_ns) // 1000
    m.feed_latency_us_bucket[bucket_index(FEED_LATENCY_US_EDGES, lat_us)] += 1
    m.feed_latency_us_sum += lat_us
    m.publish_ns_bucket[bucket_index(LATENCY_NS_EDGES, t1 - t0)] += 1
    m.publish_ns_sum += t1 - t0
    return t1
