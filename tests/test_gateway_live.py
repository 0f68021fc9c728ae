"""``bog run`` pieces in execution.mode = "live" against ``bog fake-venue``: all real processes.

The fake runs in its own process on 127.0.0.1 and is both the market data (the lighter feed,
``venue.url``) and the venue for orders (``gateway.url``, network ``testnet`` named, as a live
configuration must). The gateway signs every transaction with the real SDK signer and a
throwaway key (``lighter.create_api_key()``) in a 0600 file; the fake parses, never verifies.
The fake's own truth is ``GET /fake/account``. Every wait has a timeout; pids are checked
before they are signalled (``bog.process.signal_pid``).

``BOG_LIVE_SESSION_S`` (default 45) sets the randomized session's length, e.g. 600 for the
issue's 10 minutes: ``BOG_LIVE_SESSION_S=600 .venv/bin/python -m pytest -q
tests/test_gateway_live.py -k randomized --timeout 900``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import orjson
import pytest
from support import FAST, merge, wait_for
from test_fill_accounting import bogctl

import lighter  # noqa: E402  the lighter extra (./scripts/setup --test): missing = an error, never a skip

from test_fake_orders import FakeVenue  # noqa: E402  (the fake in its own process)

from bog.process import signal_pid  # noqa: E402
from bog.shm.codes import CANCEL_ALL_WHY, VENUE_EVENT  # noqa: E402
from bog.shm.layouts import FIXED  # noqa: E402
from bog.venue import lighter as L  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ACCT, KEY, BTC = 21, 4, 1
SZ = FIXED // 10 ** 5  # fixed units per venue size unit (BTC in the fake: 5 size decimals)
PX = FIXED // 10  # fixed units per venue price unit (1 price decimal)
QUIET = 4.0  # book updates/s: the engine needs a live feed (stale after 5 s), few requotes
SESSION_S = float(os.environ.get("BOG_LIVE_SESSION_S", "45"))


@pytest.fixture(scope="module")
def api_key():
    from lighter.signer_client import create_api_key
    priv, _pub, err = create_api_key()
    assert err is None
    return priv


@pytest.fixture
def key_file(tmp_path, api_key):
    p = tmp_path / "api.key"
    p.write_text(api_key + "\n")
    os.chmod(p, 0o600)
    return str(p)


def live_config(fake, key_file, **over) -> dict:
    cfg = merge(FAST, {
        "feed": {"source": "lighter"},
        "venue": {"url": fake.ws, "market": "BTC", "stall_timeout_s": 5.0,
                  "backoff_initial_s": 0.1, "backoff_max_s": 1.0},
        # quotes well outside the fake's ~5 bps spread: its synthetic flow rarely reaches
        # them, the tests' takers (POST /fake/trade) decide what fills
        "strategy": {"spread_bps": 30.0, "min_best_size_btc": 0.0, "order_size_btc": 0.001,
                     "requote_bps": 20.0},
        "execution": {"mode": "live"},
        "gateway": {"network": "testnet", "url": fake.ws, "account_index": ACCT,
                    "api_key_index": KEY, "api_key_file": key_file, "dead_man_window_s": 6.0,
                    "reconcile_every_s": 0.5},
    })
    return merge(cfg, over)


@pytest.fixture
def fake(tmp_path):
    fakes = []

    def make(rate=0.0, extra=()):
        f = FakeVenue(tmp_path, rate=rate, extra=extra)
        fakes.append(f)
        return f

    yield make
    for f in fakes:
        f.proc.stop()


def journal(pl):
    p = pl.journal_path()
    return [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()] if p.exists() else []


def fills(pl):
    return [d for d in journal(pl) if d["type"] == "Fill"]


def truth(fake):
    return fake.get(f"/fake/account?account={ACCT}")


def venue_pos_fixed(fake) -> int:
    return int(truth(fake)["positions"].get(str(BTC), 0)) * SZ


def tracked_fixed(pl) -> int:
    return round(float(pl.metrics()["position_btc"]) * FIXED)


def exact_realized(venue_fills) -> float:
    """Average-cost realized PnL (USD) of the venue's fills, in exact fractions."""
    from fractions import Fraction

    pos, entry, pnl = 0, Fraction(0), Fraction(0)
    for x in sorted(venue_fills, key=lambda x: x["trade_id"]):
        side = -1 if x["is_ask"] else 1
        px, q = Fraction(x["price"], 10), x["size"]
        if pos == 0 or (pos > 0) == (side > 0):
            entry = (entry * abs(pos) + px * q) / (abs(pos) + q)
            pos += side * q
        else:
            closing = min(q, abs(pos))
            pnl += (px - entry) * (1 if pos > 0 else -1) * closing / 10 ** 5
            pos += side * q
            if q > closing:
                entry = px
            elif pos == 0:
                entry = Fraction(0)
    return float(pnl)


def start_live(pl):
    pl.start_all()
    pl.start("gateway")
    wait_for(lambda: int(pl.metrics("gateway")["connected"]) == 1, 60, what="gateway connected")
    return pl


def kill9(pl, name):
    p = pl.procs[name]
    assert p.alive() and signal_pid(p.pid, signal.SIGKILL)
    p.p.wait(timeout=10)


def resting(fake):
    return [o for o in truth(fake)["open_orders"] if o["market_id"] == BTC]


def test_live_order_life_place_ack_partial_full_fill(fake, key_file, pipeline_factory):
    """The engine's quotes rest at the fake (acked); a taker fills our bid partly, then fully:
    each fill reaches the journal once with its venue trade id and the tracked position equals
    the venue's exactly; the dead-man switch is armed."""
    f = fake(rate=QUIET)
    pl = start_live(pipeline_factory(live_config(f, key_file)))
    wait_for(lambda: len(resting(f)) == 2, 60, what="two quotes resting at the venue")
    wait_for(lambda: int(pl.metrics()["venue_events_total"][VENUE_EVENT.ACKED]) >= 2, 10,
             what="acks applied by the engine")
    g = pl.metrics("gateway")
    assert int(g["dead_man_armed"]) == 1 and int(g["dead_man_arms_total"]) >= 1
    assert truth(f)["cancel_all_at_ms"] > time.time() * 1000  # the venue holds it scheduled
    bid = next(o for o in resting(f) if not o["is_ask"])
    assert bid["initial"] == 100  # 0.001 BTC
    f.post("/fake/trade", {"market_id": BTC, "taker_buys": False, "price": bid["price"],
                           "size": 30})
    wait_for(lambda: len(fills(pl)) == 1, 15, what="the partial fill journaled")
    wait_for(lambda: tracked_fixed(pl) == 30 * SZ, 10, what="position after the partial fill")
    f.post("/fake/trade", {"market_id": BTC, "taker_buys": False, "price": bid["price"],
                           "size": 500})
    wait_for(lambda: len(fills(pl)) == 2, 15, what="the rest filled")
    wait_for(lambda: tracked_fixed(pl) == 100 * SZ, 10, what="position after the full fill")
    fs = fills(pl)
    venue_fills = truth(f)["fills"]
    assert sorted(d["trade_id"] for d in fs) == sorted(x["trade_id"] for x in venue_fills)
    assert [d["qty_fixed"] for d in fs] == [30 * SZ, 70 * SZ]
    assert all(d["order_id"] == bid["client_order_index"] and d["side"] == "buy"
               and d["liquidity"] == "maker" and d["price_fixed"] == bid["price"] * PX
               for d in fs)
    assert tracked_fixed(pl) == venue_pos_fixed(f) == 100 * SZ
    # the filled bid is requoted; the venue's reconciliation finds no drift
    wait_for(lambda: len(resting(f)) == 2, 30, what="the bid requoted")
    wait_for(lambda: int(pl.metrics("gateway")["venue_position_fixed"]) == 100 * SZ, 10,
             what="reconciled venue position")
    assert int(pl.metrics()["position_corrections_total"]) == 0
    assert "Position correction" not in pl.log_text()
    # a clean stop: the engine's cancel-all, then the gateway's, and the dead-man disarmed
    assert pl.procs["engine"].stop() == 0
    wait_for(lambda: resting(f) == [], 15, what="nothing resting after the engine's stop")
    aborts = truth(f)["cancel_all_aborts"]
    assert pl.procs["gateway"].stop() == 0
    assert truth(f)["cancel_all_at_ms"] == 0 and "dead-man switch disarmed" in pl.log_text()
    # the disarm itself reached the venue (the shutdown's cancel-all alone also clears the
    # fake's scheduled one: the venue's behaviour there is unknown)
    assert truth(f)["cancel_all_aborts"] == aborts + 1


def test_live_requote_replace_post_only_and_nonce_recovery(fake, key_file, pipeline_factory,
                                                           api_key):
    """A moving book: requotes (cancels confirmed, then placements) and the venue never holds
    more than our two quotes; a quote the book moved through is cancelled post-only and the engine frees
    it; another holder of the key spends a nonce: the gateway refetches it and goes on."""
    f = fake(rate=40.0)
    pl = start_live(pipeline_factory(live_config(f, key_file, strategy={"spread_bps": 1.0,
                                                                     "requote_bps": 0.2})))
    wait_for(lambda: int(pl.metrics()["venue_events_total"][VENUE_EVENT.CANCELLED]) >= 6, 90,
             what="requotes (cancels confirmed by the venue)")
    assert len(resting(f)) <= 2
    # (today's engine requotes by cancelling both sides and placing once the venue confirmed:
    # never a cancel and a place in one read, so the gateway's replace batch stays unused)
    log = pl.log_text()
    assert "Venue send fell back to HTTP" not in log

    # another holder of the same key spends the next nonce behind the gateway's back
    async def spend():
        from bog.gateway.signer import Signer
        s = Signer(url=f.http, private_key=api_key, account_index=ACCT, api_key_index=KEY)
        try:
            n = f.nonce(ACCT, KEY)
            # (an abort of the scheduled cancel-all: the gateway re-arms it within a third
            # of its window)
            return f.send_tx(*s.cancel_all(time_in_force=L.CANCEL_ALL_ABORT, time_ms=0,
                                           nonce=n))
        finally:
            await s.close()

    status, doc = asyncio.run(asyncio.wait_for(spend(), 30))
    assert status == 200, doc
    before = int(pl.metrics("gateway")["intents_sent_total"])
    wait_for(lambda: int(pl.metrics("gateway")["nonce_refetches_total"]) >= 1, 60,
             what="the nonce refetched")
    wait_for(lambda: int(pl.metrics("gateway")["intents_sent_total"]) > before + 4, 60,
             what="orders flowing again after the refetch")
    assert "Venue nonce refetched" in pl.log_text()
    e = pl.metrics()
    assert int(e["intents_dropped_total"]) == 0
    assert int(pl.metrics("gateway")["events_dropped_total"]) == 0


def test_live_disconnect_with_resting_orders_view_equals_venue(fake, key_file, pipeline_factory):
    f = fake(rate=QUIET)
    pl = start_live(pipeline_factory(live_config(f, key_file)))
    wait_for(lambda: len(resting(f)) == 2, 60, what="two quotes resting")
    f.post("/fake/fault", {"kind": "account_drop"})
    wait_for(lambda: int(pl.metrics("gateway")["reconnects_total"]) >= 1, 30, what="reconnect")
    wait_for(lambda: int(pl.metrics("gateway")["connected"]) == 1, 30, what="connected again")

    def same():
        g, v = pl.metrics("gateway"), resting(f)
        return int(g["open_orders"]) == len(v) == int(g["venue_open_orders"]) == 2
    wait_for(same, 20, what="the gateway's view equals the venue's after the reconnect")
    assert int(pl.metrics()["open_orders"]) == 2


def test_gateway_kill9_the_venues_dead_man_cancels_everything(fake, key_file, pipeline_factory):
    f = fake(rate=QUIET)
    window = 6.0
    pl = start_live(pipeline_factory(live_config(f, key_file)))
    wait_for(lambda: len(resting(f)) == 2, 60, what="two quotes resting")
    wait_for(lambda: int(pl.metrics("gateway")["dead_man_armed"]) == 1, 10, what="armed")
    kill9(pl, "gateway")
    t0 = time.monotonic()
    wait_for(lambda: resting(f) == [], window + 5, what="the venue's dead-man cancel-all")
    assert time.monotonic() - t0 <= window + 2
    assert truth(f)["cancel_all_fired"]
    wait_for(lambda: "Gateway down" in pl.log_text(), 10, what="the engine stops quoting")


def test_engine_kill9_gateway_cancels_everything_restart_position_exact(fake, key_file,
                                                                        pipeline_factory):
    f = fake(rate=QUIET)
    pl = start_live(pipeline_factory(live_config(f, key_file)))
    wait_for(lambda: len(resting(f)) == 2, 60, what="two quotes resting")
    bid = next(o for o in resting(f) if not o["is_ask"])
    f.post("/fake/trade", {"market_id": BTC, "taker_buys": False, "price": bid["price"],
                           "size": 40})
    wait_for(lambda: len(fills(pl)) == 1, 15, what="a fill journaled")
    kill9(pl, "engine")
    wait_for(lambda: resting(f) == [], 15, what="the gateway's cancel-all after the engine died")
    assert "CRITICAL engine heartbeat lost" in pl.log_text()
    assert int(pl.metrics("gateway")["heartbeat_cancel_alls_total"]) == 1
    pl.start("engine")
    wait_for(lambda: len(resting(f)) == 2, 60, what="the restarted engine quotes again")
    assert tracked_fixed(pl) == venue_pos_fixed(f) == 40 * SZ
    # the gateway restarts too: the venue replays recent trades, none is applied again
    assert pl.procs["gateway"].stop() == 0
    pl.start("gateway")
    wait_for(lambda: int(pl.metrics("gateway")["connected"]) == 1, 60, what="gateway back")
    wait_for(lambda: len(resting(f)) == 2, 60, what="quoting after the gateway restart")
    assert len(fills(pl)) == 1 and tracked_fixed(pl) == 40 * SZ
    # the journal's trade ids seeded the new gateway: the replay is recognised there
    # (the venue's trade snapshot may arrive after the quotes are back: wait for it)
    wait_for(lambda: int(pl.metrics("gateway")["venue_fills_duplicate_total"]) >= 1, 15,
             what="the venue's replayed trade recognised as a duplicate")
    g = pl.metrics("gateway")
    assert int(g["events_total"][VENUE_EVENT.FILLED]) == 0
    assert len(fills(pl)) == 1 and tracked_fixed(pl) == 40 * SZ
    wait_for(lambda: int(pl.metrics("gateway")["reconciles_total"]) >= 2, 10, what="reconciled")
    assert int(pl.metrics()["position_corrections_total"]) == 0


def test_randomized_live_session_zero_drift(fake, key_file, pipeline_factory):
    """The fake's synthetic flow fills our quotes; tests add random takers on both sides for
    SESSION_S seconds. At the end journal, tracked position and realized PnL equal the
    venue's account exactly; every venue fill is journaled once."""
    f = fake(rate=50.0)
    pl = start_live(pipeline_factory(live_config(
        f, key_file, risk={"max_position_btc": 1.0},
        strategy={"spread_bps": 2.0, "requote_bps": 0.5})))
    rnd = random.Random(int(os.environ.get("BOG_LIVE_SEED", "7")))
    end = time.monotonic() + SESSION_S
    while time.monotonic() < end:
        time.sleep(rnd.uniform(0.05, 0.5))
        orders = resting(f)
        if orders and rnd.random() < 0.6:
            o = rnd.choice(orders)
            f.post("/fake/trade", {"market_id": BTC, "taker_buys": o["is_ask"],
                                   "price": o["price"], "size": rnd.randint(10, 150)})
        assert pl.procs["gateway"].alive() and pl.procs["engine"].alive()
    # bogctl pause: the engine sends a cancel-all and keeps applying what the venue reports
    r = bogctl(pl, "pause")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: resting(f) == [], 15, what="nothing resting after the pause")
    wait_for(lambda: len(fills(pl)) == len(truth(f)["fills"]), 15, what="every fill journaled")
    wait_for(lambda: int(pl.metrics("gateway")["reconciles_total"]) >= 3, 10, what="reconciled")
    t = truth(f)
    fs = fills(pl)
    tids = [d["trade_id"] for d in fs]
    assert len(fs) >= 5, "the session should trade"
    assert len(tids) == len(set(tids)), "a fill applied twice"
    assert sorted(tids) == sorted(x["trade_id"] for x in t["fills"]), "a fill lost"
    pos = sum(d["qty_fixed"] * (1 if d["side"] == "buy" else -1) for d in fs)
    assert pos == int(t["positions"].get(str(BTC), 0)) * SZ == tracked_fixed(pl)
    # cash: the journal's fills against the venue's, in venue price*size units
    cash = sum((d["price_fixed"] // PX) * (d["qty_fixed"] // SZ)
               * (-1 if d["side"] == "buy" else 1) for d in fs)
    venue_cash = sum(x["price"] * x["size"] * (1 if x["is_ask"] else -1) for x in t["fills"])
    assert cash == venue_cash
    # realized PnL (average cost, as the engine's tracker) of the venue's own fills, exact;
    # (the fake's "realized_pnl" rounds its average entry to a price unit, so it is not used)
    assert abs(float(pl.metrics()["realized_pnl_usd"]) - exact_realized(t["fills"])) < 1e-6
    assert float(pl.metrics("gateway")["position_drift_btc"]) == 0.0
    assert int(pl.metrics()["position_corrections_total"]) == 0
    assert not any(d["type"] == "PositionCorrection" for d in journal(pl))
    assert "Position correction" not in pl.log_text()
    assert int(pl.metrics("gateway")["events_dropped_total"]) == 0
    assert int(pl.metrics()["fills_dropped_total"]) == 0
    assert any(d["type"] == "CancelAll" and d["reason"] == CANCEL_ALL_WHY[CANCEL_ALL_WHY.PAUSE]
               for d in journal(pl))


def corrections(pl):
    return [d for d in journal(pl) if d["type"] == "PositionCorrection"]


def executor_fixed(pl) -> int:
    return round(float(pl.metrics()["executor_position_btc"]) * FIXED)


def test_live_position_correction_moves_the_kernel_ledger(fake, key_file, pipeline_factory):
    """The account's position changes behind bog's back (a trade no channel reports: POST
    /fake/position). The engine journals one PositionCorrection; the tracked position and the
    kernel's ledger (``executor_position_btc``: what the strategy's skew and the position
    limit use) both equal the venue's; no second correction follows. A later one beyond
    ``risk.max_position_btc`` trips the position limit: the limit guards the venue's figure."""
    f = fake(rate=QUIET)
    pl = start_live(pipeline_factory(live_config(f, key_file, risk={"max_position_btc": 0.004})))
    wait_for(lambda: len(resting(f)) == 2, 60, what="two quotes resting")
    wait_for(lambda: int(pl.metrics("gateway")["reconciles_total"]) >= 2, 10, what="reconciled")
    assert tracked_fixed(pl) == executor_fixed(pl) == 0
    bid = next(o for o in resting(f) if not o["is_ask"])
    r = f.post("/fake/position", {"account": ACCT, "market_id": BTC, "size": 250,
                                  "price": bid["price"]})
    assert r["position"] == 250, r
    wait_for(lambda: len(corrections(pl)) == 1, 20, what="the correction journaled")
    c = corrections(pl)[0]
    assert c["delta_fixed"] == c["position_fixed"] == 250 * SZ
    wait_for(lambda: tracked_fixed(pl) == 250 * SZ, 10, what="tracked position corrected")
    wait_for(lambda: executor_fixed(pl) == 250 * SZ, 10, what="the kernel's ledger corrected")
    assert venue_pos_fixed(f) == 250 * SZ
    # more venue snapshots, each compared: nothing left to correct
    n = int(pl.metrics("gateway")["reconciles_total"])
    wait_for(lambda: int(pl.metrics("gateway")["reconciles_total"]) >= n + 5, 15,
             what="five more venue snapshots")
    time.sleep(0.5)  # the engine's reconcile (every 0.2 s) compared the last of them
    assert len(corrections(pl)) == 1
    assert int(pl.metrics()["position_corrections_total"]) == 1
    assert tracked_fixed(pl) == executor_fixed(pl) == venue_pos_fixed(f) == 250 * SZ
    assert pl.log_text().count("Position correction") == 1
    assert len(resting(f)) == 2  # still quoting
    # beyond the position limit (0.004 BTC): the kernel's ledger trips it
    f.post("/fake/position", {"account": ACCT, "market_id": BTC, "size": 200,
                              "price": bid["price"]})
    wait_for(lambda: len(corrections(pl)) == 2, 20, what="the second correction journaled")
    wait_for(lambda: "Circuit breaker tripped by risk: position limit breached"
             in pl.log_text(), 10, what="the position limit tripped on the corrected ledger")
    wait_for(lambda: resting(f) == [], 15, what="everything cancelled after the trip")
    wait_for(lambda: executor_fixed(pl) == tracked_fixed(pl) == 450 * SZ, 10,
             what="ledger and tracked position at the venue's")


def monitor_text(port) -> str:
    import httpx
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def gateway_rejects(pl) -> dict:
    g = pl.metrics("gateway")
    return {int(c): int(n) for c, n in zip(g["reject_codes"], g["rejects_by_code"]) if c}


def rejects(pl, code=None):
    return [d for d in journal(pl) if d["type"] == "OrderReject"
            and (code is None or d["code"] == code)]


def test_post_only_refusal_reaches_the_engine_as_a_reject(fake, key_file, pipeline_factory):
    """A post-only order that would take (the inventory strategy, told it is far too long,
    lowers its ask below the venue's best bid): the fake refuses it (canceled-post-only).
    The engine journals OrderReject with bog's code for it (-201), frees the slot, the
    monitor exports the count (bog_gateway_venue_rejects_by_code_total{code="-201"}) and the
    engine keeps quoting: its bid rests, further placements go out."""
    from support import free_port

    port = free_port()
    f = fake(rate=QUIET)
    pl = start_live(pipeline_factory(live_config(
        f, key_file, monitor={"port": port},
        strategy={"name": "inventory", "target_inventory_btc": -1000.0, "spread_bps": 2.0},
        risk={"max_price_distance_bps": 50.0})))
    pl.start("monitor", wait=False)
    wait_for(lambda: rejects(pl, -201), 60, what="a post-only refusal journaled")
    r = rejects(pl, -201)[0]
    assert r["reason"] == L.ST_CANCELED_POST_ONLY
    wait_for(lambda: [o for o in resting(f) if not o["is_ask"]], 30, what="the bid resting")
    assert not [o for o in resting(f) if o["is_ask"]]  # every ask was refused
    assert "Order rejected by the venue" in pl.log_text()
    wait_for(lambda: gateway_rejects(pl).get(-201, 0) >= 1, 10,
             what="the gateway counting the refusal by code")
    # the slots are freed: the engine holds at most its bid and one ask in flight
    assert int(pl.metrics()["open_orders"]) <= 2
    wait_for(lambda: 'bog_gateway_venue_rejects_by_code_total{code="-201"}'
             in monitor_text(port), 60, what="the monitor exporting the reject by code")
    # quoting goes on: more placements (the ask again), more refusals, the bid still rests
    n = len(rejects(pl, -201))
    placed = int(pl.metrics("gateway")["intents_total"][0])
    wait_for(lambda: len(rejects(pl, -201)) > n
             and int(pl.metrics("gateway")["intents_total"][0]) > placed, 30,
             what="the engine quoting on after the refusals")
    assert [o for o in resting(f) if not o["is_ask"]]
    assert int(pl.metrics()["fills_dropped_total"]) == 0


def test_rate_limit_reply_reaches_the_engine_as_a_reject(fake, key_file, pipeline_factory):
    """The venue answers placements with its rate-limit code (the fake's reject fault with
    23000): the engine journals OrderReject code 23000, frees the slot, the gateway counts it
    by code, and quoting resumes once the venue takes orders again."""
    f = fake(rate=QUIET)
    pl = start_live(pipeline_factory(live_config(f, key_file, gateway={
        "dead_man_window_s": 60.0})))  # no re-arm in between: the refusals hit placements
    wait_for(lambda: len(resting(f)) == 2, 60, what="two quotes resting")
    bid = next(o for o in resting(f) if not o["is_ask"])
    f.post("/fake/fault", {"kind": "reject", "arg": 2, "code": L.ERR_TOO_MANY_REQUESTS})
    f.post("/fake/trade", {"market_id": BTC, "taker_buys": False, "price": bid["price"],
                           "size": 500})  # the bid fills: the engine places a new one
    wait_for(lambda: rejects(pl, L.ERR_TOO_MANY_REQUESTS), 30, what="the rate-limit reject")
    assert "reason" not in rejects(pl, L.ERR_TOO_MANY_REQUESTS)[0]  # the venue's own code
    wait_for(lambda: len(resting(f)) == 2, 30, what="quoting resumed after the refusals")
    wait_for(lambda: gateway_rejects(pl).get(L.ERR_TOO_MANY_REQUESTS, 0) >= 1, 10,
             what="the gateway counting the refusal by code")
    assert int(pl.metrics("gateway")["venue_rate_limited_total"]) >= 1
    assert int(pl.metrics()["open_orders"]) == 2
    assert tracked_fixed(pl) == venue_pos_fixed(f) == 100 * SZ
