"""``bog bench --replay``: how fast a replay streams and runs end to end, and its memory.

It writes a generated ``book_snapshot_10`` CSV (``--rows``, 1,000,000 by default;
bog/replaygen.py) into a temporary directory, then measures

1. the load/stream rate: the file read, parsed and validated block by block in this process
   (``ReplayStream``, exactly what the feed runs), rows/s and MB/s;
2. end to end: a real feed (``--feed replay --speed max``, the configured ring, 65,536 slots
   by default) and a real engine started together; time to the first tick published (from
   launching both: it includes the engine's start, since a replay waits for its reader),
   ticks processed per second from the first tick published to the last processed, lost
   ticks (0 for a lossless replay), and each process's peak RSS (``VmHWM`` in /proc).

The issue's targets are printed next to the measured figures, never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bog.process import child_command, stop_child
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.metrics import ENGINE, FEED, MetricsBlock

START_S = 120.0
TARGETS = {"processed_per_s": 2_500_000, "feed_peak_rss_mb": 200, "first_tick_s": 1.0}


def peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stream_rate(path: str) -> dict:
    from bog.feed.replay import ReplayStream

    t0 = time.perf_counter()
    s = ReplayStream(path)
    chunk = s.first_chunk()
    first = time.perf_counter() - t0
    rows = len(chunk.rows)
    while (chunk := s.next_chunk()) is not None:
        rows += len(chunk.rows)
    dt = time.perf_counter() - t0
    size = os.path.getsize(path)
    return {"rows": rows, "seconds": round(dt, 3), "rows_per_s": round(rows / dt),
            "mb_per_s": round(size / dt / 1e6, 1), "first_block_s": round(first, 4)}


def end_to_end(path: str, rows: int, workdir: str, config_path: str | None) -> dict:
    instance = f"benchreplay{os.getpid()}"
    names = SegmentNames(instance)
    env = dict(os.environ, BOG_STATE_DIR=os.path.join(workdir, "state"),
               BOG_LOG_DIR=os.path.join(workdir, "logs"))
    env.pop("NOTIFY_SOCKET", None)
    common = ["--instance", instance] + (["--config", config_path] if config_path else [])
    base = child_command()
    procs = {}
    fm = em = None
    try:
        t0 = time.monotonic()
        procs["feed"] = subprocess.Popen(
            base + ["feed", "--feed", "replay", "--replay-file", path, "--speed", "max"] + common,
            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs["engine"] = subprocess.Popen(base + ["engine"] + common, env=env,
                                           stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fm = MetricsBlock.attach(names.feed_metrics, FEED, wait_ready_s=START_S)
        feed_ready = time.monotonic() - t0
        while int(fm.m[0]["messages_total"]) == 0:
            if time.monotonic() - t0 > START_S or procs["feed"].poll() is not None:
                raise RuntimeError("bench: the replay published nothing")
            time.sleep(0.0005)
        t_first = time.monotonic()
        em = MetricsBlock.attach(names.engine_metrics, ENGINE, wait_ready_s=START_S)
        deadline = t_first + max(60.0, rows / 100_000)
        while int(em.m[0]["ticks_total"]) < rows:
            if time.monotonic() > deadline or procs["engine"].poll() is not None:
                break
            time.sleep(0.002)
        t_end = time.monotonic()
        e = em.snapshot()
        f = fm.snapshot()
        rss = {k: peak_rss_mb(p.pid) for k, p in procs.items()}
    finally:
        for blk in (fm, em):
            if blk is not None:
                blk.close(unlink=False)
        for p in procs.values():
            stop_child(p)
        seg_mod.unlink_instance(instance)
    processed = int(e["ticks_total"])
    dt = t_end - t_first
    return {"rows_published": int(f["messages_total"]), "rows_processed": processed,
            "lost": int(e["ring_lost_ticks_total"]), "complete": processed == rows,
            "feed_ready_s": round(feed_ready, 3), "first_tick_s": round(t_first - t0, 3),
            "seconds": round(dt, 3), "processed_per_s": round(processed / dt) if dt > 0 else 0,
            "peak_rss_mb": {k: round(v, 1) if v is not None else None for k, v in rss.items()}}


def run_bench_replay(cfg, args) -> int:
    from bog.bench import machine
    from bog.replaygen import write_book_csv

    rows = int(args.rows)
    workdir = tempfile.mkdtemp(prefix="bog-bench-replay-")
    try:
        path = os.path.join(workdir, "book_snapshot_10.csv")
        if not args.json:
            print(f"writing a {rows:,}-row book_snapshot_10 file ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        size = write_book_csv(path, rows, levels=10)
        gen_s = time.perf_counter() - t0
        if not args.json:
            print("measuring the stream rate, then feed + engine at --speed max ...",
                  file=sys.stderr, flush=True)
        report = {"machine": machine(), "rows": rows, "file_mb": round(size / 1e6, 1),
                  "generated_s": round(gen_s, 2), "stream": stream_rate(path),
                  "end_to_end": end_to_end(path, rows, workdir, args.config),
                  "ring_capacity": cfg.feed.ring_capacity, "targets": TARGETS}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else format_replay(report))
    return 0


def format_replay(r: dict) -> str:
    s, e, t = r["stream"], r["end_to_end"], r["targets"]
    rss = e["peak_rss_mb"]

    def vs(ok: bool) -> str:
        return "meets the target" if ok else "BELOW the target"

    feed_rss = rss.get("feed") or 0.0
    return "\n".join([
        f"bog bench --replay: {r['rows']:,} rows of book_snapshot_10 ({r['file_mb']:,} MB), "
        f"ring {r['ring_capacity']:,} slots",
        f"  stream     {s['rows_per_s']:,} rows/s ({s['mb_per_s']} MB/s), first block in "
        f"{s['first_block_s'] * 1000:.1f} ms (read, parse, validate; in the bench process)",
        f"  processed  {e['processed_per_s']:,} ticks/s end to end at --speed max "
        f"({e['rows_processed']:,} of {e['rows_published']:,} published, lost {e['lost']}); "
        f"target >= {t['processed_per_s']:,}: {vs(e['processed_per_s'] >= t['processed_per_s'])}",
        f"  first tick {e['first_tick_s']:.3f} s after launching feed and engine (feed ready "
        f"{e['feed_ready_s']:.3f} s); target <= {t['first_tick_s']} s: "
        f"{vs(e['first_tick_s'] <= t['first_tick_s'])}",
        f"  peak RSS   feed {feed_rss:.0f} MB, engine {rss.get('engine') or 0:.0f} MB; "
        f"feed target <= {t['feed_peak_rss_mb']} MB: {vs(feed_rss <= t['feed_peak_rss_mb'])}",
    ])
