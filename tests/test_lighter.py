"""The lighter feed source against ``bog fake-venue``: both real processes on loopback.

The fake runs in its own process (as the venue would); faults are triggered through its
fake-only control endpoint. Book exactness is checked against the fake's own book: every
published snapshot's exchange time is the venue's ``last_updated_at`` (unique per update on
the fake), and ``POST /fake/books`` returns the fake's top 10 at that time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from support import FAST, Pipeline, Proc, free_port, merge, unique_instance, wait_for, \
    cleanup_segments

from bog.shm.codes import VENUE_DOWN, VENUE_FRAME, VENUE_REJECT
from bog.shm.layouts import FLAG_BOOK_INVALID, FLAG_FULL_SNAPSHOT, RING_TICK_FIXED
from bog.shm.metrics import ENGINE, FEED
from bog.shm.ring import READ_OK, TicksRing

pytestmark = pytest.mark.timeout(120)


class Fake:
    """``bog fake-venue`` in its own process on a free port."""

    def __init__(self, tmp_path, rate=200.0, seed=7, extra=()):
        self.port = free_port()
        argv = [sys.executable, "-m", "bog.cli", "fake-venue", "--port", str(self.port),
                "--rate", str(rate), "--seed", str(seed), *extra]
        self.proc = Proc(argv, dict(os.environ), tmp_path / f"fake{self.port}.out")
        self.url = f"ws://127.0.0.1:{self.port}/stream"
        wait_for(lambda: self._up(), 30, what="fake venue up")

    def _up(self):
        if not self.proc.alive():
            raise AssertionError(f"fake venue exited:\n{self.proc.output()}")
        try:
            return self.get("/api/v1/orderBooks")
        except OSError:
            return None

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path, doc):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(doc).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def fault(self, kind, arg=None):
        return self.post("/fake/fault", {"kind": kind, "arg": arg})

    def books(self, market_id, ts_us):
        out = {}
        for i in range(0, len(ts_us), 2000):
            out.update(self.post("/fake/books", {"market_id": market_id,
                                                 "ts_us": ts_us[i:i + 2000]})["books"])
        return out

    def stop(self):
        self.proc.stop()


def venue_config(fake: Fake, market="BTC", **venue) -> dict:
    v = {"url": fake.url, "market": market, "stall_timeout_s": 2.0, "backoff_initial_s": 0.1,
         "backoff_max_s": 1.0}
    v.update(venue)
    # quotes inside the fake's ~5 bps market spread, so real trades fill them on paper
    return merge(FAST, {"feed": {"source": "lighter"}, "venue": v,
                        "strategy": {"spread_bps": 2.0, "min_best_size_btc": 0.0,
                                     "order_size_btc": 0.001, "requote_bps": 0.5},
                        "execution": {"maker_latency_ms": 50.0}})


@pytest.fixture
def fake(tmp_path):
    f = Fake(tmp_path)
    yield f
    f.stop()


@pytest.fixture
def pipe(pipeline_factory):
    """A pipeline on the fake venue (started, stopped and cleaned up by pipeline_factory)."""
    return lambda fake, **kw: pipeline_factory(venue_config(fake, **kw))


def ring_slots(pipe) -> np.ndarray:
    """Every snapshot still in the ticks ring, oldest first."""
    ring = TicksRing.attach(pipe.names.ticks)
    try:
        head = ring.head
        out = []
        for pos in range(max(0, head - ring.capacity), head):
            status, rec = ring.read(pos)
            assert status == READ_OK
            out.append(rec)
        return np.array(out) if out else np.zeros(0)
    finally:
        ring.close(unlink=False)


def compare_with_fake(fake: Fake, slots, market_id=1) -> tuple[int, int]:
    """Every published book snapshot equals the fake's top 10 at its update.
    Returns (compared, thin: snapshots with fewer than 10 levels on a side)."""
    books = [s for s in slots if s["flags"] & FLAG_FULL_SNAPSHOT and s["trade_sz"] == 0]
    ts = [int(s["exchange_ts_ns"]) // 1000 for s in books]
    truth = fake.books(market_id, ts)
    thin = 0
    for s, t in zip(books, ts):
        want = truth[str(t)]
        assert want is not None, f"snapshot at {t} us not in the fake's history"
        got = np.array([s["bid_px_l"], s["bid_sz_l"], s["ask_px_l"], s["ask_sz_l"]])
        assert got.tolist() == want["top"], f"book differs at nonce {want['nonce']}"
        assert s["bid_px"] == got[0, 0] and s["ask_px"] == got[2, 0]
        thin += int((got[0] == 0).any() or (got[2] == 0).any())
    return len(books), thin


def feed_m(pipe):
    return pipe.metrics(FEED)


def test_book_exact_after_thousands_of_updates(tmp_path, pipe):
    """Thousands of random updates (adds, resizes, removals, thin phases): every published
    top 10 equals the fake's own book at that update; nothing is rejected."""
    f = Fake(tmp_path, rate=800.0, seed=11)
    try:
        p = pipe(f)
        p.start(FEED)
        wait_for(lambda: int(feed_m(p)["messages_total"]) > 1500, 40, what="1500 snapshots")
        f.fault("thin", 1)  # both sides down to one level, then the walk deepens them again
        wait_for(lambda: int(feed_m(p)["messages_total"]) > 4000, 40, what="4000 snapshots")
        m = feed_m(p)
        slots = ring_slots(p)
        compared, thin = compare_with_fake(f, slots)
        assert compared > 3000
        assert thin > 0  # thin books were published (and compared) too
        assert int(m["venue_frames_rejected_total"].sum()) == 0
        assert int(m["venue_frames_total"][VENUE_FRAME.BOOK_UPDATE]) > 3000
        # sequence numbers are contiguous: nothing lost between frames and ring
        seqs = slots["sequence"]
        assert (np.diff(seqs) == 1).all()
        # the engine's tick size and minimum order come from the venue (BTC: 1 price decimal)
        ring = TicksRing.attach(p.names.ticks)
        assert int(ring.ctrl[RING_TICK_FIXED]) == 100_000_000
        ring.close(unlink=False)
    finally:
        f.stop()


def rejects(m, reason):
    return int(m["venue_frames_rejected_total"][getattr(VENUE_REJECT, reason)])


def markers(slots):
    return [s for s in slots if s["flags"] & FLAG_BOOK_INVALID]


def wait_whole(p, after_resyncs=0, timeout=20):
    def ok():
        m = feed_m(p)
        return int(m["venue_book_valid"]) == 1 and int(m["venue_connected"]) == 1 and \
            int(m["venue_book_resyncs_total"]) >= after_resyncs
    wait_for(ok, timeout, what="venue book whole")


def test_nonce_gap_resyncs_and_engine_sees_it(fake, pipe):
    """A withheld update: the feed counts the gap, logs it, publishes one invalid-book marker
    (a skipped sequence number), resubscribes; the engine counts a sequence gap and cancels its
    quotes; the book is exact again afterwards."""
    p = pipe(fake)
    p.start(FEED)
    p.start(ENGINE)
    wait_for(lambda: int(p.metrics(ENGINE)["orders_placed_total"].sum()) > 0, 30,
             what="engine quoting")
    fake.fault("gap", 1)
    wait_for(lambda: rejects(feed_m(p), "NONCE_GAP") >= 1, 20, what="gap counted")
    wait_whole(p, after_resyncs=1)
    time.sleep(1.0)
    m = feed_m(p)
    assert rejects(m, "NONCE_GAP") == 1
    assert int(m["venue_book_resyncs_total"]) == 1
    slots = ring_slots(p)
    mk = markers(slots)
    assert len(mk) == 1 and mk[0]["bid_px"] == 0 and mk[0]["ask_px"] == 0
    i = int(np.flatnonzero(slots["flags"] & FLAG_BOOK_INVALID)[0])
    assert slots[i]["sequence"] == slots[i - 1]["sequence"] + 2  # the engine sees a gap
    assert slots[i + 1]["sequence"] == slots[i]["sequence"] + 1
    compare_with_fake(fake, slots[i + 1:])  # exact again after the fresh snapshot
    e = p.metrics(ENGINE)
    assert int(e["sequence_gaps_total"]) == 1
    assert int(e["orders_cancelled_total"]) >= 1
    assert int(e["ticks_rejected_total"].sum()) == 0  # the marker is not a bad tick
    log = p.log_text()
    assert "Sequence gap: venue order book order_book:1 expected begin_nonce" in log
    assert "Sequence gap: expected" in log  # the engine's line


def test_every_trade_of_a_multi_trade_frame_is_published_in_order(tmp_path, pipe):
    """One trade frame carrying three trades (``POST /fake/tape``): three ticks, in the frame's
    order, at consecutive ring positions with consecutive sequence numbers, each carrying the
    current book and its own trade (price, size, side, exchange time); trades_total counts
    three. A frame with one bad trade among good ones is rejected whole: counted, logged,
    none of it published. (No random walk: rate 0, so every trade in the ring is ours.)"""
    f = Fake(tmp_path, rate=0.0)
    try:
        p = pipe(f)
        p.start(FEED)
        wait_whole(p)
        # BTC: price 1 decimal, size 5 decimals (venue units -> fixed x1e9)
        px_scale, sz_scale = 10 ** 8, 10 ** 4
        t0 = int(time.time() * 1e6)
        tape = [{"taker_buys": True, "price": 600_011, "size": 123, "ts_us": t0},
                {"taker_buys": False, "price": 600_007, "size": 45_600, "ts_us": t0 + 5},
                {"taker_buys": True, "price": 600_013, "size": 7, "ts_us": t0 + 9}]
        f.post("/fake/tape", {"market_id": 1, "trades": tape})
        wait_for(lambda: int(feed_m(p)["trades_total"]) >= 3, 10, what="three trades")
        time.sleep(0.3)
        m = feed_m(p)
        assert int(m["trades_total"]) == 3
        assert int(m["venue_frames_total"][VENUE_FRAME.TRADE_UPDATE]) == 1
        assert int(m["venue_frames_rejected_total"].sum()) == 0
        slots = ring_slots(p)
        idx = np.flatnonzero(slots["trade_sz"] > 0)
        assert len(idx) == 3 and (np.diff(idx) == 1).all() and idx[0] >= 1
        assert (np.diff(slots["sequence"]) == 1).all()  # one sequence number each, no gap
        book_fields = ("bid_px", "bid_sz", "ask_px", "ask_sz", "bid_px_l", "bid_sz_l",
                       "ask_px_l", "ask_sz_l", "flags")
        before = slots[idx[0] - 1]  # the book as it stood when the frame came
        assert before["trade_sz"] == 0 and before["bid_px"] > 0
        for k, t in zip(idx, tape):
            s = slots[k]
            assert (int(s["trade_px"]), int(s["trade_sz"]), int(s["trade_side"])) == (
                t["price"] * px_scale, t["size"] * sz_scale, 1 if t["taker_buys"] else -1)
            assert int(s["exchange_ts_ns"]) == t["ts_us"] * 1000
            for name in book_fields:
                assert np.array_equal(s[name], before[name]), name
        # the next book update carries on from the last trade's sequence number
        n = int(feed_m(p)["messages_total"])
        f.fault("thin", 3)
        wait_for(lambda: int(feed_m(p)["messages_total"]) > n, 10, what="a book update")
        slots = ring_slots(p)
        assert slots[-1]["trade_sz"] == 0 and (np.diff(slots["sequence"]) == 1).all()
        # a bad trade in the middle: the whole frame is refused, nothing of it published
        bad = [{"taker_buys": True, "price": 600_021, "size": 10},
               {"taker_buys": False, "price": 600_022, "size": 0},
               {"taker_buys": True, "price": 600_023, "size": 10}]
        f.post("/fake/tape", {"market_id": 1, "trades": bad})
        wait_for(lambda: rejects(feed_m(p), "ZERO_SIZE") >= 1, 10, what="bad frame rejected")
        time.sleep(0.3)
        m = feed_m(p)
        assert int(m["trades_total"]) == 3 and rejects(m, "ZERO_SIZE") == 1
        assert (ring_slots(p)["trade_sz"] > 0).sum() == 3
        assert "Venue frame rejected: zero_trade_size: trade 2 of 3 size" in p.log_text()
    finally:
        f.stop()


def test_silent_stall_reconnects_engine_goes_stale_and_recovers(fake, pipe):
    """The socket stays open but nothing arrives: after venue.stall_timeout_s the feed
    reconnects; the engine goes Stale (quotes cancelled) and is Fresh again after."""
    p = pipe(fake, stall_timeout_s=2.5)
    p.start(FEED)
    p.start(ENGINE)
    wait_whole(p)
    fake.fault("stall", 8.0)
    wait_for(lambda: int(feed_m(p)["venue_reconnects_total"]) >= 1, 20, what="reconnect")
    wait_whole(p)
    m = feed_m(p)
    assert int(m["venue_last_error"]) == VENUE_DOWN.STALL
    e = p.metrics(ENGINE)
    assert int(e["stale_data_total"]) >= 1
    wait_for(lambda: int(p.metrics(ENGINE)["feed_state"]) == 0, 10, what="engine fresh again")
    assert "Venue silent: no frame for" in p.log_text()
    compare_with_fake(fake, ring_slots(p)[-200:])


def test_disconnect_backs_off_and_reconnects(fake, pipe):
    p = pipe(fake)
    p.start(FEED)
    wait_whole(p)
    fake.fault("disconnect")
    wait_for(lambda: int(feed_m(p)["venue_reconnects_total"]) >= 1, 20, what="reconnect")
    wait_whole(p)
    m = feed_m(p)
    assert int(m["venue_last_error"]) == VENUE_DOWN.CLOSED
    assert len(markers(ring_slots(p))) == 1
    log = p.log_text()
    assert "Venue disconnected: closed_by_venue" in log and "reconnecting in 0." in log
    compare_with_fake(fake, ring_slots(p)[-200:])


def test_shutdown_frame_is_a_planned_reconnect(fake, pipe):
    p = pipe(fake)
    p.start(FEED)
    wait_whole(p)
    fake.fault("shutdown", 300)
    wait_for(lambda: int(feed_m(p)["venue_reconnects_total"]) >= 1, 20, what="reconnect")
    wait_whole(p)
    m = feed_m(p)
    assert int(m["venue_frames_total"][VENUE_FRAME.SHUTDOWN]) == 1
    assert int(m["venue_last_error"]) == VENUE_DOWN.SHUTDOWN
    assert "reconnecting in 0.00 s" in p.log_text()


def test_bad_frames_counted_never_published(fake, pipe):
    """Malformed JSON, bad fields, unknown types, a crossed update and an error frame: each is
    counted by reason and logged; nothing invalid reaches the ring; a crossed book resyncs and
    an error frame reconnects."""
    p = pipe(fake)
    p.start(FEED)
    wait_whole(p)
    expect = {"malformed": "MALFORMED_JSON", "nan_price": "NAN", "negative_size":
              "NEGATIVE_SIZE", "zero_price": "ZERO_PRICE", "missing_field": "MISSING_FIELD",
              "bad_type": "BAD_TYPE", "unknown_type": "UNKNOWN_TYPE"}
    for kind, reason in expect.items():
        fake.fault(kind)
        wait_for(lambda: rejects(feed_m(p), reason) >= 1, 10, what=f"{kind} rejected")
    m = feed_m(p)
    assert int(m["venue_book_resyncs_total"]) == 0  # bad frames alone do not break the book
    fake.fault("crossed")
    wait_for(lambda: rejects(feed_m(p), "CROSSED") >= 1, 10, what="crossed rejected")
    wait_whole(p, after_resyncs=1)
    fake.fault("error")
    wait_for(lambda: int(feed_m(p)["venue_reconnects_total"]) >= 1, 20, what="reconnect")
    wait_whole(p)
    m = feed_m(p)
    for reason in expect.values():
        assert rejects(m, reason) == 1, reason
    assert rejects(m, "CROSSED") == 1 and rejects(m, "ERROR_FRAME") == 1
    assert int(m["venue_last_error"]) == VENUE_DOWN.ERROR_FRAME
    slots = ring_slots(p)
    good = slots[(slots["flags"] & FLAG_BOOK_INVALID) == 0]
    assert (good["bid_px"] > 0).all() and (good["ask_px"] > good["bid_px"]).all()
    assert (good["bid_sz_l"] >= 0).all() and (good["ask_sz_l"] >= 0).all()
    compare_with_fake(fake, slots)
    log = p.log_text()
    for reason in ("malformed_json", "nan_or_inf", "negative_size", "zero_price",
                   "missing_field", "bad_type", "unknown_type", "crossed_book", "error_frame"):
        assert f"Venue frame rejected: {reason}:" in log, reason


def test_kill_feed_restarted_feed_resyncs_engine_carries_on(fake, pipe):
    p = pipe(fake)
    feed = p.start(FEED)
    p.start(ENGINE)
    wait_whole(p)
    wait_for(lambda: int(p.metrics(ENGINE)["ticks_total"]) > 100, 20, what="engine ticks")
    assert feed.alive() and feed.pid > 0
    os.kill(feed.pid, signal.SIGKILL)
    feed.p.wait(10)
    p.start(FEED)
    wait_whole(p)
    t0 = int(p.metrics(ENGINE)["ticks_accepted_total"])
    wait_for(lambda: int(p.metrics(ENGINE)["ticks_accepted_total"]) > t0 + 100, 20,
             what="engine carries on")
    assert int(p.metrics(ENGINE)["feed_restarts_total"]) == 1
    compare_with_fake(fake, ring_slots(p))


def test_unknown_market_is_one_line(fake, tmp_path):
    p = Pipeline(tmp_path, unique_instance("lt"), venue_config(fake, market="DOGE"))
    proc = p.start(FEED, wait=False)
    code = proc.p.wait(60)
    out = proc.output()
    assert code == 1
    assert "market 'DOGE' is not listed by http://127.0.0.1:" in out
    assert "available: ETH (0), BTC (1)" in out
    assert "Traceback" not in out
    cleanup_segments(p.instance)


@pytest.mark.slow
def run_lighter_runbook(cwd, env, port: int) -> dict[str, str]:
    """Run every bash block of docs/runbook.md's lighter-feed sections from ``cwd``; each
    command must work (exit 0, or 1 = nothing found). Returns section -> all output."""
    import subprocess

    from support import LIGHTER_RUNBOOK, USAGE_ERROR, runbook_blocks

    out = {}
    for title, blocks in runbook_blocks().items():
        if LIGHTER_RUNBOOK not in title:
            continue
        text = ""
        for cmd in (c for b in blocks for c in b):
            run = cmd.replace("localhost:9090", f"127.0.0.1:{port}")
            r = subprocess.run(["bash", "-o", "pipefail", "-c", run], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode in (0, 1) and not USAGE_ERROR.search(r.stdout + r.stderr), (
                cmd, r.returncode, r.stdout, r.stderr)
            text += r.stdout
        out[title.split(" (")[0]] = text
    assert len(out) == 2, sorted(out)
    return out


def test_bog_run_on_the_fake_venue_trades_on_paper(fake, tmp_path):
    """``bog run --feed lighter --venue-url ...`` against the fake: quotes and paper fills on
    real (fake) trades, venue metrics and /health venue section live, and a storm of venue gaps
    shows as the guide's sequence gaps and puts SequenceGapStorm pending."""
    import subprocess

    from support import to_toml

    inst = unique_instance("lrun")
    port = free_port()
    cfgp = tmp_path / "bog.toml"
    cfg = venue_config(fake)
    del cfg["venue"]["url"]
    cfgp.write_text(to_toml(cfg))
    # logs where the runbook looks for them (logs/bog.log under the working directory)
    env = dict(os.environ, BOG_STATE_DIR=str(tmp_path / "s"), BOG_LOG_DIR=str(tmp_path / "logs"))
    out = open(tmp_path / "run.out", "wb")
    sup = subprocess.Popen([sys.executable, "-m", "bog.cli", "run", "--instance", inst,
                            "--config", str(cfgp), "--feed", "lighter", "--market", "BTC",
                            "--venue-url", fake.url, "--port", str(port)], env=env,
                           stdout=out, stderr=subprocess.STDOUT)

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            return e.read().decode()
        except OSError:
            return ""

    import urllib.error

    journal = tmp_path / "s" / inst / "journal.jsonl"
    try:
        wait_for(lambda: b"pipeline up" in (tmp_path / "run.out").read_bytes(), 120,
                 what="bog run: pipeline up")
        wait_for(lambda: journal.exists() and '"type": "Fill"' in journal.read_text()
                 or journal.exists() and '"type":"Fill"' in journal.read_text(), 45,
                 what="a paper fill")
        for _ in range(7):
            fake.fault("gap", 1)
            time.sleep(0.4)
        def storm():
            a = json.loads(get("/alerts") or "{}")
            return any(x["name"] == "SequenceGapStorm" for x in
                       a.get("pending", []) + a.get("firing", []))
        wait_for(storm, 15, what="SequenceGapStorm pending")
        metrics = get("/metrics")
        assert "bog_venue_connected 1.0" in metrics
        nonce_gaps = [ln for ln in metrics.splitlines()
                      if ln.startswith('bog_venue_frames_rejected_total{reason="nonce_gap"}')]
        assert nonce_gaps == ['bog_venue_frames_rejected_total{reason="nonce_gap"} 7.0']
        gaps = [ln for ln in metrics.splitlines() if ln.startswith("bog_sequence_gaps_total")]
        assert gaps and float(gaps[0].split()[-1]) >= 7
        assert 'bog_feed_latency_us_count' in metrics
        health = json.loads(get("/health"))
        assert health["venue"]["connected"] is True
        assert health["venue"]["market_index"] == 1
        # bogctl status shows the venue connection, read from the feed's shared memory
        ctl = [sys.executable, "-m", "bog.ctl", "status", "--instance", inst]
        s = json.loads(subprocess.run(ctl + ["--json"], capture_output=True, text=True,
                                      env=env, timeout=60).stdout)
        assert s["venue"]["connected"] is True and s["venue"]["market_index"] == 1
        text = subprocess.run(ctl, capture_output=True, text=True, env=env, timeout=60).stdout
        assert re.search(r"^venue: +connected \(\d+ s\)", text, re.M), text
        # the runbook's lighter sections, run as written (the monitor's port substituted)
        ran = run_lighter_runbook(tmp_path, env, port)
        assert "Sequence gap: venue" in ran["Venue gaps and resyncs"]
        assert "bog_venue_book_resyncs_total" in ran["Venue gaps and resyncs"]
        assert '"connected": true' in ran["Venue disconnected or silent"]
        assert "bog_fills_received_total" in metrics
    finally:
        sup.send_signal(signal.SIGTERM)
        code = sup.wait(60)
        out.close()
        cleanup_segments(inst)
    assert code == 0, (tmp_path / "run.out").read_text()[-3000:]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"ts_us": [1]}',
                                  b'{"market_id": 999, "ts_us": [1]}',
                                  b'{"market_id": 1, "ts_us": ["x"]}'])
def test_fake_books_answers_a_malformed_request_with_400_naming_the_body(fake, body):
    """A test control of the fake answers a bad request with 400 and what it expects, never a
    500 with a traceback."""
    req = urllib.request.Request(f"http://127.0.0.1:{fake.port}/fake/books", data=body,
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    assert "market_id" in json.loads(e.value.read())["error"]
    assert fake.books(1, []) == {}  # and the fake still answers
