"""``bog bench --floor``: what the machine imposes on a cross-core hand-off, without bog.

Two processes, pinned like the feed and the engine's hot thread (``process.feed_core`` /
``process.engine_core``), play ping-pong through two ticks rings in POSIX shared memory with
the very ring code bog uses (``ticks_write_slot`` + ``ticks_commit_head`` / ``ticks_read``):
the pinger stamps ``local_publish_ns`` and publishes one slot; the ponger spins on the head
(acquire loads), copies the slot, records ``now - local_publish_ns`` (the one-way hand-off, the
same clock and stamp as bog's feed->decision) and answers through the second ring; the pinger
waits for the answer before the next ping, so nothing queues. Two paces: back to back (a
busy feed) and one ping per ms with the pinger sleeping in between (a feed at low rate that
wakes up to publish). Samples are exact (preallocated arrays, no histogram).
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numba as nb
import numpy as np

from bog.shm.atomics import CLOCK_REALTIME, clock_ns, cpu_relax, load_acquire, sleep_ns
from bog.shm.layouts import RING_HEAD, TICK_SLOT, TICK_SLOT_WORDS
from bog.shm.ring import READ_OK, TicksRing, ticks_commit_head, ticks_read, ticks_write_slot

_W_PUBLISH = TICK_SLOT.fields["local_publish_ns"][1] // 8
TIMEOUT_S = 60.0


@nb.njit(cache=True, nogil=True)
def _wait_head(ctrl, above, deadline_ns):
    """Spin until the ring head passes ``above``; False at the deadline."""
    k = 0
    while load_acquire(ctrl, RING_HEAD) <= above:
        cpu_relax()
        k += 1
        if (k & 1023) == 0 and clock_ns(CLOCK_REALTIME) > deadline_ns:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def ping_loop(pctrl, pwords, qctrl, qwords, staging, rtt, gap_ns, sleep_gap, deadline_ns):
    """Publish ping i, wait for pong i, record the round trip; ``gap_ns`` between pings
    (spun, or slept when ``sleep_gap``). Returns the pings answered."""
    for i in range(rtt.shape[0]):
        t0 = clock_ns(CLOCK_REALTIME)
        staging[_W_PUBLISH] = t0
        n = ticks_write_slot(pctrl, pwords, staging)
        ticks_commit_head(pctrl, n)
        if not _wait_head(qctrl, n, deadline_ns):
            return i
        rtt[i] = clock_ns(CLOCK_REALTIME) - t0
        if gap_ns > 0:
            if sleep_gap:
                sleep_ns(gap_ns)
            else:
                t1 = clock_ns(CLOCK_REALTIME)
                while clock_ns(CLOCK_REALTIME) - t1 < gap_ns:
                    cpu_relax()
    return rtt.shape[0]


@nb.njit(cache=True, nogil=True)
def pong_loop(pctrl, pwords, qctrl, qwords, buf, one_way, deadline_ns):
    """Wait for each ping, copy it, record the one-way hand-off, answer with a pong."""
    for i in range(one_way.shape[0]):
        if not _wait_head(pctrl, i, deadline_ns):
            return i
        while ticks_read(pctrl, pwords, i, buf) != READ_OK:
            cpu_relax()
        one_way[i] = clock_ns(CLOCK_REALTIME) - buf[_W_PUBLISH]
        n = ticks_write_slot(qctrl, qwords, buf)
        ticks_commit_head(qctrl, n)
    return one_way.shape[0]


def _pin(core: int) -> int:
    from bog.process import pin_to_core

    return pin_to_core(core)


def _ponger(ping_name, pong_name, n, core, out) -> None:
    _pin(core)
    p = TicksRing.attach(ping_name, writable=True)
    q = TicksRing.attach(pong_name, writable=True)
    one_way = np.zeros(n, np.int64)
    buf = np.zeros(TICK_SLOT_WORDS, np.int64)
    pong_loop(p.ctrl, p.words, q.ctrl, q.words, buf[:1].copy(), one_way[:1].copy(), 0)  # compile
    out.put("ready")
    done = pong_loop(p.ctrl, p.words, q.ctrl, q.words, buf, one_way,
                     time.time_ns() + int(TIMEOUT_S * 1e9))
    out.put(one_way[:done])
    p.close(unlink=False)
    q.close(unlink=False)


def _pct(a: np.ndarray) -> dict:
    if a.size == 0:
        return {"samples": 0}
    q = np.percentile(a, [50, 99, 99.9])
    return {"samples": int(a.size), "p50": int(q[0]), "p99": int(q[1]), "p99.9": int(q[2]),
            "max": int(a.max())}


def measure_floor(feed_core: int, engine_core: int, n: int, gap_ns: int, sleep_gap: bool) -> dict:
    """One ping-pong run of ``n`` round trips; one-way and round-trip/2 quantiles, ns."""
    tag = f"/bog.floor{os.getpid()}x{int(sleep_gap)}"
    ping = TicksRing.create(tag + ".ping", 1024)
    pong = TicksRing.create(tag + ".pong", 1024)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_ponger, args=(ping.segment.name, pong.segment.name, n,
                                             engine_core, out), daemon=True)
    try:
        proc.start()
        prev = os.sched_getaffinity(0)
        _pin(feed_core)
        staging = np.zeros(TICK_SLOT_WORDS, np.int64)
        rtt = np.zeros(n, np.int64)
        ping_loop(ping.ctrl, ping.words, pong.ctrl, pong.words, staging, rtt[:0], 0, False, 0)
        if out.get(timeout=TIMEOUT_S) != "ready":
            raise RuntimeError("bench --floor: the ponger did not start")
        done = ping_loop(ping.ctrl, ping.words, pong.ctrl, pong.words, staging, rtt, gap_ns,
                         sleep_gap, time.time_ns() + int(TIMEOUT_S * 1e9))
        one_way = out.get(timeout=TIMEOUT_S)
        os.sched_setaffinity(0, prev)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        ping.close(unlink=True)
        pong.close(unlink=True)
    return {"pace": f"one ping per {gap_ns / 1e6:g} ms, pinger sleeping" if sleep_gap
            else ("back to back" if gap_ns == 0 else f"{gap_ns} ns spin between pings"),
            "round_trips": int(done), "one_way_ns": _pct(one_way),
            "round_trip_half_ns": _pct(rtt[:done] // 2)}


def run_floor(cfg, quick: bool) -> dict:
    fc, ec = cfg.process.feed_core, cfg.process.engine_core
    busy_n, slow_n = (200_000, 1_000) if quick else (2_000_000, 5_000)
    return {"feed_core": fc, "engine_core": ec,
            "runs": [measure_floor(fc, ec, busy_n, 0, False),
                     measure_floor(fc, ec, slow_n, 1_000_000, True)],
            "method": "two processes pinned to the feed and engine cores ping-pong one TICK_SLOT "
                      "through two shared-memory ticks rings with bog's ring kernels; one-way = "
                      "ponger's CLOCK_REALTIME after the copy minus the pinger's stamp before the "
                      "slot write (as bog's feed->decision); exact percentiles"}


def format_floor(r: dict) -> str:
    out = [f"bog bench --floor: cross-core hand-off through the ticks ring, pinger on CPU "
           f"{r['feed_core']}, ponger on CPU {r['engine_core']}", "",
           f"{'pace':<36} {'round trips':>11}  one-way ns P50/P99/P99.9/max"
           "        round-trip/2 ns P50/P99/P99.9/max"]
    for x in r["runs"]:
        a, b = x["one_way_ns"], x["round_trip_half_ns"]
        fa = f"{a.get('p50')}/{a.get('p99')}/{a.get('p99.9')}/{a.get('max')}"
        fb = f"{b.get('p50')}/{b.get('p99')}/{b.get('p99.9')}/{b.get('max')}"
        out.append(f"{x['pace']:<36} {x['round_trips']:>11}  {fa:<34} {fb}")
    out += ["", f"method: {r['method']}"]
    return "\n".join(out)
