"""``VenueSession`` against ``bog fake-venue``: both real processes, loopback only.

The fake runs in its own process (a fake in the session's loop would deadlock on the SDK's
synchronous sign calls); every transaction is signed by the real SDK signer with a throwaway
key. The fake's ``--rate 0`` keeps its synthetic book still, so a test decides what fills with
``POST /fake/trade``; the fake's truth is ``GET /fake/account``. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import lighter  # noqa: E402  the lighter extra (./scripts/setup --test): missing = an error, never a skip

from test_fake_orders import FakeVenue  # noqa: E402  (the fake in its own process)

from bog.gateway import venue as V  # noqa: E402
from bog.gateway.signer import Signer  # noqa: E402
from bog.venue import lighter as L  # noqa: E402

pytestmark = pytest.mark.timeout(90)

ACCT, KEY, BTC = 11, 2, 1
# BTC in the fake: price 60000.0 (1 decimal), size 5 decimals, minimum 0.00020 (20 units)
FAR_BID = 500_000  # 50000.0: rests, nothing reaches it
CROSSING_BID = 700_000  # 70000.0: above every ask, a post-only is refused (canceled-post-only)


@pytest.fixture(scope="module")
def key():
    from lighter.signer_client import create_api_key
    priv, _pub, err = create_api_key()
    assert err is None
    return priv


@pytest.fixture
def fake(tmp_path):
    f = FakeVenue(tmp_path)
    yield f
    f.proc.stop()


class Run:
    """One session in this process's loop, its events collected."""

    def __init__(self, fake, key, **kw):
        self.fake, self.key, self.kw = fake, key, kw
        self.events: list = []

    async def __aenter__(self):
        self.signer = Signer(url=self.fake.http, private_key=self.key, account_index=ACCT,
                             api_key_index=KEY)
        kw = dict(backoff_initial_s=0.05, backoff_max_s=0.2)
        kw.update(self.kw)
        self.s = V.VenueSession(ws_url=self.fake.ws, account_index=ACCT, api_key_index=KEY,
                                market_index=BTC, signer=self.signer,
                                on_event=self.events.append, **kw)
        self.task = asyncio.create_task(self.s.run())
        await self.s.wait_connected(15)
        return self

    async def __aexit__(self, *exc):
        await self.s.close()
        await asyncio.wait_for(self.task, 10)
        await self.signer.close()

    def of(self, cls, coi=None):
        return [e for e in self.events
                if isinstance(e, cls) and (coi is None or e.client_order_index == coi)]

    async def wait(self, pred, timeout=10.0, what="event"):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = pred()
            if r:
                return r
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; events: {self.events[-10:]}")

    def truth(self):
        return self.fake.get(f"/fake/account?account={ACCT}")

    async def atruth(self):
        return await asyncio.to_thread(self.truth)

    async def taker(self, taker_buys, price, size):
        return await asyncio.to_thread(self.fake.post, "/fake/trade", {
            "market_id": BTC, "taker_buys": taker_buys, "price": price, "size": size})


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 80))


def test_place_ack_partial_full_fill_and_cancel(fake, key):
    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=101, is_ask=False, price=FAR_BID, base_amount=60)
            acked = await r.wait(lambda: r.of(V.Acked, 101), what="ack")
            assert acked[0].order_index >= L.ORDER_INDEX_BASE
            assert r.s.open_orders() == {101: acked[0].order_index}
            await r.taker(False, FAR_BID, 20)  # partial
            await r.wait(lambda: r.of(V.Filled, 101), what="partial fill")
            await r.taker(False, FAR_BID, 100)  # the rest (40)
            fills = await r.wait(lambda: len(r.of(V.Filled, 101)) == 2 and r.of(V.Filled, 101))
            assert [(f.base_amount, f.price, f.is_ask, f.is_maker) for f in fills] == \
                [(20, FAR_BID, False, True), (40, FAR_BID, False, True)]
            assert len({f.trade_id for f in fills}) == 2
            await r.wait(lambda: not r.s.open_orders(), what="filled order leaves the table")
            # cancel of a resting order
            await r.s.place(client_order_index=102, is_ask=True, price=800_000, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 102), what="ack 102")
            await r.s.cancel(102)
            c = await r.wait(lambda: r.of(V.Cancelled, 102), what="cancel")
            assert c[0].reason == "canceled"
            truth = await r.atruth()
            assert truth["open_orders"] == [] and truth["positions"] == {str(BTC): 60}
            snap = await r.s.reconcile()
            assert snap == V.PositionSnapshot(60, {})
            st = r.s.stats
            assert st.fills_total == 2 and st.acked_total == 2 and st.cancelled_total == 1
            assert st.last_sign_ns > 0 and st.rejected_total == 0 and st.in_flight == 0
    run(main())


def test_post_only_reject_and_refused_tx(fake, key, caplog):
    caplog.set_level(logging.WARNING, "bog.gateway.venue")

    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=201, is_ask=False, price=CROSSING_BID,
                            base_amount=20)
            # the venue refuses it with a status (canceled-post-only): a rejection with
            # bog's code for that status, counted by code
            c = await r.wait(lambda: r.of(V.Rejected, 201), what="post-only refusal")
            assert c[0].code == L.STATUS_REJECT_CODES[L.ST_CANCELED_POST_ONLY] == -201
            assert not r.of(V.Acked, 201) and not r.of(V.Cancelled, 201)
            assert r.s.stats.rejects_by_code == {-201: 1} and r.s.stats.in_flight == 0
            # refused at sendTx (below the minimum size): Rejected with the venue's code,
            # the nonce stays usable
            await r.s.place(client_order_index=202, is_ask=False, price=FAR_BID, base_amount=1)
            rej = r.of(V.Rejected, 202)
            assert rej and rej[0].code == L.ERR_INVALID_BASE_AMOUNT
            assert r.s.stats.rejects_by_code == {-201: 1, L.ERR_INVALID_BASE_AMOUNT: 1}
            await r.s.place(client_order_index=203, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 203), what="ack after a refusal")
            assert r.s.stats.nonce_refetches_total == 0
    run(main())
    assert "Venue order rejected: client order 202 code 21701" in caplog.text


def test_invalid_nonce_refetched_and_resent_once(fake, key, caplog):
    caplog.set_level(logging.WARNING, "bog.gateway.venue")

    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=301, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 301))
            # another holder of the same key spends the next nonce behind the session's back
            n = fake.get(f"/api/v1/nextNonce?account_index={ACCT}&api_key_index={KEY}")["nonce"]
            tx = r.signer.cancel_all(time_in_force=L.CANCEL_ALL_ABORT, time_ms=0, nonce=n)
            status, doc = await asyncio.to_thread(fake.send_tx, *tx)
            assert status == 200, doc
            await r.s.place(client_order_index=302, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 302), what="ack after the nonce refetch")
            assert r.s.stats.nonce_refetches_total == 1 and not r.of(V.Rejected)
            truth = await r.atruth()
            assert sorted(o["client_order_index"] for o in truth["open_orders"]) == [301, 302]
    run(main())
    assert "Venue nonce refetched" in caplog.text


def test_rate_limit_reply_is_rejected_and_counted(fake, key, caplog):
    caplog.set_level(logging.WARNING, "bog.gateway.venue")

    async def main():
        async with Run(fake, key) as r:
            fake.post("/fake/config", {"rate_limit_per_min": 12})  # two sendTx (weight 6)
            for coi in (401, 402, 403):
                await r.s.place(client_order_index=coi, is_ask=False, price=FAR_BID,
                                base_amount=20)
            rej = r.of(V.Rejected, 403)
            assert rej and rej[0].code == L.ERR_TOO_MANY_REQUESTS
            await r.wait(lambda: r.of(V.Acked, 402))
            assert r.s.stats.rate_limited_total == 1
            assert r.s.stats.rejects_by_code == {L.ERR_TOO_MANY_REQUESTS: 1}
    run(main())
    assert "Venue rate limited" in caplog.text


def test_disconnect_with_resting_orders_view_equals_venue(fake, key):
    """Orders rest, the venue drops the account sockets, fills and a cancel happen while the
    session is away; after the reconnect its view equals the fake's truth, and no trade id is
    delivered twice (the trades snapshot on resubscribe replays recent fills)."""

    async def main():
        async with Run(fake, key) as r:
            for coi, px in ((501, FAR_BID), (502, FAR_BID - 10), (503, FAR_BID - 20)):
                await r.s.place(client_order_index=coi, is_ask=False, price=px, base_amount=40)
            await r.wait(lambda: len(r.of(V.Acked)) == 3)
            await r.taker(False, FAR_BID, 20)  # seen live
            await r.wait(lambda: r.of(V.Filled, 501))
            fake.post("/fake/fault", {"kind": "account_drop"})
            await r.wait(lambda: r.s.stats.reconnects_total >= 1 and r.s.stats.connected,
                         15, "reconnect")
            await r.taker(False, FAR_BID - 10, 60)  # fills 501's rest and 502's 40
            fake.post("/fake/fault", {"kind": "account_drop"})
            await r.wait(lambda: r.s.stats.reconnects_total >= 2 and r.s.stats.connected,
                         15, "second reconnect")
            truth = await r.atruth()
            await r.wait(lambda: len(r.of(V.Filled)) == len(truth["fills"]), what="fills")
            snap = await r.s.reconcile()
            assert snap.open_orders == {o["client_order_index"]: o["order_index"]
                                        for o in truth["open_orders"]}
            assert r.s.open_orders() == snap.open_orders == {503: snap.open_orders[503]}
            fills = r.of(V.Filled)
            assert sorted(f.trade_id for f in fills) == sorted(f["trade_id"]
                                                              for f in truth["fills"])
            assert len({f.trade_id for f in fills}) == len(fills)  # none twice
            assert r.s.stats.fills_duplicate_total >= 1  # the snapshot did replay them
            assert snap.base_amount == sum(f.base_amount for f in fills) == \
                truth["positions"][str(BTC)] == 80
    run(main())


def test_seen_trade_ids_survive_a_restart(fake, key):
    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=601, is_ask=True, price=800_000, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 601))
            await r.taker(True, 800_000, 20)
            fills = await r.wait(lambda: r.of(V.Filled, 601))
            assert (fills[0].is_ask, fills[0].base_amount) == (True, 20)
            assert (await r.s.reconcile()).base_amount == -20  # short
            seen = set(r.s.seen_trade_ids)
        # a new session (a gateway restart) seeded from the journal's trade ids
        async with Run(fake, key, seen_trade_ids=seen) as r2:
            await asyncio.sleep(0.5)  # the trades snapshot arrives on subscribe
            assert not r2.of(V.Filled) and r2.s.stats.fills_duplicate_total >= 1
        async with Run(fake, key) as r3:  # not seeded: the snapshot's fill would come again
            f = await r3.wait(lambda: r3.of(V.Filled))
            assert f[0].trade_id == fills[0].trade_id
    run(main())


def test_auth_token_renewed_before_expiry(fake, key):
    """A 4 s token: renewed (and the account channels resubscribed) at 3 s; fills still
    arrive after the first token expired, REST calls get a fresh token, nothing doubles."""

    async def main():
        async with Run(fake, key, auth_expiry_s=4) as r:
            await r.s.place(client_order_index=651, is_ask=False, price=FAR_BID, base_amount=60)
            await r.wait(lambda: r.of(V.Acked, 651))
            await r.taker(False, FAR_BID, 20)
            await r.wait(lambda: r.of(V.Filled, 651))
            await r.wait(lambda: r.s.stats.auth_renewals_total >= 2, 10, "two renewals")
            await r.taker(False, FAR_BID, 20)  # > 4 s after the first token
            await r.wait(lambda: len(r.of(V.Filled, 651)) == 2, what="fill after renewal")
            snap = await r.s.reconcile()
            assert snap.base_amount == 40 and list(snap.open_orders) == [651]
            assert len({f.trade_id for f in r.of(V.Filled)}) == 2 == len(r.of(V.Filled))
            assert r.s.stats.frames_rejected_total == 0
            assert fake.get("/fake/stats").get("auth_refused_total", 0) == 0
    run(main())


def test_dead_man_fires_when_not_rearmed(fake, key):
    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=701, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 701))
            t0 = time.time()
            await r.s.arm_dead_man(1.0)
            assert r.s.stats.dead_man_armed == 1
            assert abs(r.s.stats.dead_man_expiry_ms / 1000 - (t0 + 1.0)) < 0.5
            truth = await r.atruth()
            assert truth["cancel_all_at_ms"] == r.s.stats.dead_man_expiry_ms
            for _ in range(3):  # re-armed inside the window: nothing fires
                await asyncio.sleep(0.5)
                await r.s.arm_dead_man(1.0)
            assert (await r.atruth())["cancel_all_fired"] == 0 and not r.of(V.Cancelled)
            c = await r.wait(lambda: r.of(V.Cancelled, 701), 5, "the dead man's cancel-all")
            assert c[0].reason == "canceled"
            truth = await r.atruth()
            assert truth["cancel_all_fired"] == 1 and truth["open_orders"] == []
            assert time.time() - t0 >= 2.5  # not before the last window ran out
            await r.s.arm_dead_man(5.0)
            await r.s.disarm_dead_man()
            assert r.s.stats.dead_man_armed == 0
            assert (await r.atruth())["cancel_all_at_ms"] == 0
    run(main())


def test_replace_is_one_batch(fake, key):
    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=801, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 801))
            before = fake.get("/fake/stats")["orders"]["txs_total"]
            await r.s.replace(801, client_order_index=802, is_ask=False, price=FAR_BID + 10,
                              base_amount=20)
            await r.wait(lambda: r.of(V.Cancelled, 801) and r.of(V.Acked, 802))
            assert r.s.stats.batches_total == 1
            assert fake.get("/fake/stats")["orders"]["txs_total"] == before + 2
            assert [o["client_order_index"] for o in (await r.atruth())["open_orders"]] == [802]
    run(main())


def test_socket_down_or_silent_falls_back_to_http_never_doubled(fake, key, caplog):
    caplog.set_level(logging.WARNING, "bog.gateway.venue")

    async def main():
        async with Run(fake, key) as r:
            await r.s.place(client_order_index=901, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 901))
            ws, r.s.ws = r.s.ws, None  # as between a drop and the reconnect
            await r.s.place(client_order_index=902, is_ask=False, price=FAR_BID, base_amount=20)
            r.s.ws = ws
            assert r.s.stats.http_fallback_total == 1
            await r.wait(lambda: r.of(V.Acked, 902), what="ack of the HTTP-sent order")
            # the venue sits on transactions for 3 s: the socket copy gets no reply in 2 s, the
            # same signed bytes go over HTTP; one of the two lands, the other is refused by its
            # nonce, and the order is neither rejected nor placed twice
            fake.post("/fake/fault", {"kind": "tx_stall", "arg": 3})
            await r.s.place(client_order_index=903, is_ask=False, price=FAR_BID, base_amount=20)
            assert r.s.stats.http_fallback_total == 2
            await r.wait(lambda: r.of(V.Acked, 903), what="ack of the stalled order")
            await r.s.place(client_order_index=904, is_ask=False, price=FAR_BID, base_amount=20)
            await r.wait(lambda: r.of(V.Acked, 904), what="next order after the stall")
            truth = await r.atruth()
            assert sorted(o["client_order_index"] for o in truth["open_orders"]) == \
                [901, 902, 903, 904]
            assert truth["orders_total"] == 4 and not r.of(V.Rejected)
    run(main())
    assert "Venue send fell back to HTTP: socket down" in caplog.text
    assert "Venue send fell back to HTTP: no reply in time" in caplog.text


def test_dry_run_signs_logs_and_sends_nothing(fake, key, caplog):
    caplog.set_level(logging.INFO, "bog.gateway.venue")

    async def main():
        async with Run(fake, key, dry_run=True) as r:
            await r.s.place(client_order_index=1001, is_ask=False, price=FAR_BID,
                            base_amount=20)
            await r.s.cancel(1001)
            await r.s.arm_dead_man(5.0)
            await r.s.cancel_all()
            assert r.s.stats.dry_run_total == 4 and r.s.stats.sent_total == 0
            assert r.s.stats.last_sign_ns > 0
            assert not r.of(V.Rejected) and not r.of(V.Acked)
    run(main())
    stats = fake.get("/fake/stats")["orders"]
    assert stats["txs_total"] == 0 and stats["orders_total"] == 0
    lines = [ln for ln in caplog.text.splitlines() if "dry-run: would send" in ln]
    assert len(lines) == 4 and '"ClientOrderIndex":1001' in lines[0]
    body = key[2:]
    assert body[:16] not in caplog.text and body[-16:] not in caplog.text


class SlowSigner:
    """The real signer with a delay added to every signature, where the signature runs (fault
    injection: a signature made on the event loop would hold the loop that long). Records
    the thread and the interval of each signature."""

    def __init__(self, signer, delay_s):
        self.s, self.delay_s = signer, delay_s
        self.calls: list[tuple[int, float, float]] = []  # (thread id, start, end)

    def _slow(self, fn, **kw):
        import threading
        t0 = time.monotonic()
        time.sleep(self.delay_s)
        try:
            return fn(**kw)
        finally:
            self.calls.append((threading.get_ident(), t0, time.monotonic()))

    def create_order(self, **kw):
        return self._slow(self.s.create_order, **kw)

    def cancel_order(self, **kw):
        return self._slow(self.s.cancel_order, **kw)

    def cancel_all(self, **kw):
        return self._slow(self.s.cancel_all, **kw)

    def auth_token(self, expiry_s):
        return self.s.auth_token(expiry_s)


def test_signing_runs_off_the_loop_nonces_stay_in_order(fake, key):
    """Signatures run in the session's signing thread: the loop keeps running (a 5 ms poller,
    like the gateway's intent reader, wakes during every signature) while three placements
    issued at once go out signed with consecutive nonces, in order, none refused."""
    import threading

    async def main():
        async with Run(fake, key) as r:
            slow = SlowSigner(r.signer, 0.2)
            r.s.signer = slow
            ticks: list[float] = []

            async def poller():
                while True:
                    await asyncio.sleep(0.005)
                    ticks.append(time.monotonic())

            p = asyncio.create_task(poller())
            n0 = fake.get(f"/api/v1/nextNonce?account_index={ACCT}&api_key_index={KEY}")["nonce"]
            await asyncio.gather(*(r.s.place(client_order_index=c, is_ask=False,
                                             price=FAR_BID - c, base_amount=20)
                                   for c in (501, 502, 503)))
            p.cancel()
            assert len(slow.calls) == 3
            loop_thread = threading.get_ident()
            assert all(tid != loop_thread for tid, _, _ in slow.calls)
            for _, a, b in slow.calls:  # the loop ran during each signature
                assert any(a < t < b for t in ticks), (a, b, ticks[:5])
            await r.wait(lambda: all(r.of(V.Acked, c) for c in (501, 502, 503)), what="acks")
            assert not r.of(V.Rejected) and r.s.stats.nonce_refetches_total == 0
            truth = await r.atruth()
            assert truth["nonces"][str(KEY)] == n0 + 3
            # placed in the order issued: venue order indices ascend with the client's
            idx = {o["client_order_index"]: o["order_index"] for o in truth["open_orders"]}
            assert idx[501] < idx[502] < idx[503]
    run(main())
