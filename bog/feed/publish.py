"""The one publish step every feed source ends with: stamp, publish, count."""

from __future__ import annotations

import numba as nb

from bog.shm.atomics import CLOCK_REALTIME, clock_ns
from bog.shm.hist import bucket_index
from bog.shm.layouts import (
    FEED_LATENCY_US_EDGES,
    FLAG_FULL_SNAPSHOT,
    LATENCY_NS_EDGES,
    RING_EVENT_TIME,
)
from bog.shm.ring import ticks_commit_head, ticks_write_slot


@nb.njit(cache=True, nogil=True)
def publish_snapshot(ctrl, words, staging_words, slot, m):
    """Stamp ``local_publish_ns``, publish the staged slot and update the feed metrics ``m``
    (including the stage breakdown: three clock reads per snapshot, no allocation).

    ``slot`` is the TICK_SLOT record view of ``staging_words``. Returns the publish time.
    """
    t0 = clock_ns(CLOCK_REALTIME)
    slot.local_publish_ns = t0
    n = ticks_write_slot(ctrl, words, staging_words)
    tw = clock_ns(CLOCK_REALTIME)
    ticks_commit_head(ctrl, n)
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
    # stage breakdown: received/generated -> write starts -> slot written -> head published
    # (an event-time ring, a replay, carries the recorded receive time: no generate stage)
    if slot.local_recv_ns > 0 and ctrl[RING_EVENT_TIME] == 0:
        gen = t0 - slot.local_recv_ns
        if gen >= 0:
            m.stage_generate_ns_bucket[bucket_index(LATENCY_NS_EDGES, gen)] += 1
            m.stage_generate_ns_sum += gen
            if gen > m.stage_generate_max_ns:
                m.stage_generate_max_ns = gen
    m.stage_slot_write_ns_bucket[bucket_index(LATENCY_NS_EDGES, tw - t0)] += 1
    m.stage_slot_write_ns_sum += tw - t0
    if tw - t0 > m.stage_slot_write_max_ns:
        m.stage_slot_write_max_ns = tw - t0
    m.stage_head_publish_ns_bucket[bucket_index(LATENCY_NS_EDGES, t1 - tw)] += 1
    m.stage_head_publish_ns_sum += t1 - tw
    if t1 - tw > m.stage_head_publish_max_ns:
        m.stage_head_publish_max_ns = t1 - tw
    return t1
