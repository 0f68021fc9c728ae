"""The fake venue's order and account side, driven by the real ``lighter-sdk`` signer.

``bog fake-venue`` runs in its own process (as the venue would); every transaction it receives
is signed by the official SDK's native signer with a throwaway key (``lighter.create_api_key``),
so these tests prove the fake understands real signed transactions (it parses ``tx_info``, it
does not verify signatures). Account frames are read over a real WebSocket; the fake's own
truth comes from its fake-only ``GET /fake/account``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from support import Proc, free_port, wait_for

from bog.venue import lighter as L

import lighter  # noqa: E402  the lighter extra (./scripts/setup --test): missing = an error, never a skip
from websockets.sync.client import connect as ws_connect  # noqa: E402

pytestmark = pytest.mark.timeout(120)

ACCT = 7
KEY = 3
BTC = 1  # market 1 in the fake: 5 size / 1 price decimals


class FakeVenue:
    """``bog fake-venue`` in its own process; --rate 0 keeps the synthetic book still so tests
    choose what fills (``POST /fake/trade``)."""

    def __init__(self, tmp_path, rate=0.0, extra=()):
        self.port = free_port()
        argv = [sys.executable, "-m", "bog.cli", "fake-venue", "--port", str(self.port),
                "--rate", str(rate), "--seed", "5", *extra]
        self.proc = Proc(argv, dict(os.environ), tmp_path / f"fake{self.port}.out")
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/stream"
        wait_for(self._up, 30, what="fake venue up")

    def _up(self):
        if not self.proc.alive():
            raise AssertionError(f"fake venue exited:\n{self.proc.output()}")
        try:
            return self.get("/api/v1/orderBooks")
        except OSError:
            return None

    def request(self, path, data=None, headers=None, method=None):
        """(status, json body) of one request; HTTP errors are returned, not raised."""
        req = urllib.request.Request(self.http + path, data=data, headers=headers or {},
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(self, path):
        status, doc = self.request(path)
        assert status == 200, (path, status, doc)
        return doc

    def post(self, path, doc):
        return self.request(path, json.dumps(doc).encode(), method="POST")[1]

    def send_tx(self, tx_type, tx_info):
        body = urllib.parse.urlencode({"tx_type": tx_type, "tx_info": tx_info}).encode()
        return self.request("/api/v1/sendTx", body,
                            {"Content-Type": "application/x-www-form-urlencoded"}, "POST")

    def nonce(self, acct=ACCT, key=KEY):
        return self.get(f"/api/v1/nextNonce?account_index={acct}&api_key_index={key}")["nonce"]

    def truth(self, acct=ACCT):
        return self.get(f"/fake/account?account={acct}")

    def book(self):
        """(best bid, best ask) of BTC in venue units, from the fake's order book frame."""
        with ws_connect(self.ws, open_timeout=10) as ws:
            json.loads(ws.recv(timeout=10))  # connected
            ws.send(json.dumps({"type": "subscribe", "channel": f"order_book/{BTC}"}))
            snap = json.loads(ws.recv(timeout=10))["order_book"]
        bb = max(int(x["price"].replace(".", "")) for x in snap["bids"])
        ba = min(int(x["price"].replace(".", "")) for x in snap["asks"])
        return bb, ba

    def stop(self):
        self.proc.stop()


class Signer:
    """The SDK's SignerClient, built inside a running loop (as it must be) and pointed at the
    fake's http URL; signing itself is a synchronous ctypes call."""

    def __init__(self, url, acct=ACCT, key=KEY):
        priv, _pub, err = lighter.create_api_key()
        assert err is None
        self.loop = asyncio.new_event_loop()

        async def make():
            return lighter.SignerClient(url=url, account_index=acct, api_private_keys={key: priv})

        self.client = self.loop.run_until_complete(make())
        self.key = key

    def order(self, coi, base, price, is_ask, nonce, tif=L.TIF_POST_ONLY):
        t, info, _h, err = self.client.sign_create_order(
            BTC, coi, base, price, is_ask, L.ORDER_TYPE_LIMIT, tif,
            order_expiry=L.ORDER_EXPIRY_IOC if tif == L.TIF_IOC else L.ORDER_EXPIRY_28_DAYS,
            nonce=nonce, api_key_index=self.key)
        assert err is None, err
        return t, info

    def cancel(self, index, nonce):
        t, info, _h, err = self.client.sign_cancel_order(BTC, index, nonce=nonce,
                                                         api_key_index=self.key)
        assert err is None, err
        return t, info

    def cancel_all(self, tif, at_ms, nonce):
        t, info, _h, err = self.client.sign_cancel_all_orders(tif, at_ms, nonce=nonce,
                                                              api_key_index=self.key)
        assert err is None, err
        return t, info

    def token(self, secs=600):
        tok, err = self.client.create_auth_token_with_expiry(secs, api_key_index=self.key)
        assert err is None, err
        return tok

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self):
        self.run(self.client.close())
        self.loop.close()


class Account:
    """A WebSocket subscribed to the account's orders, trades and positions channels."""

    CHANNELS = (L.CH_ACCOUNT_ALL_ORDERS, L.CH_ACCOUNT_ALL_TRADES, L.CH_ACCOUNT_ALL_POSITIONS)

    def __init__(self, fake, token, acct=ACCT):
        self._cm = ws_connect(fake.ws, open_timeout=10)
        self.ws = self._cm.__enter__()
        assert json.loads(self.ws.recv(timeout=10))["type"] == L.T_CONNECTED
        self.frames = []
        for ch in self.CHANNELS:
            self.ws.send(json.dumps({"type": "subscribe", "channel": f"{ch}/{acct}",
                                     "auth": token}))
        self.wait(lambda: all(any(f["type"] == L.T_SUBSCRIBED_PREFIX + ch for f in self.frames)
                              for ch in self.CHANNELS), "the three account snapshots")

    def pump(self, timeout=0.05):
        try:
            while True:
                self.frames.append(json.loads(self.ws.recv(timeout=timeout)))
        except TimeoutError:
            pass

    def wait(self, pred, what, timeout=15.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump()
            if pred():
                return
        raise AssertionError(f"timed out waiting for {what}; frames: {self.frames[-5:]}")

    def orders(self, coi):
        """Every order frame entry of client order ``coi``, in order."""
        return [o for f in self.frames if f["type"].endswith(L.CH_ACCOUNT_ALL_ORDERS)
                for lst in f[L.F_ORDERS].values() for o in lst
                if o[L.O_CLIENT_ORDER_INDEX] == coi]

    def status(self, coi):
        os_ = self.orders(coi)
        return os_[-1][L.O_STATUS] if os_ else None

    def trades(self):
        """Trades of update frames (the subscribe snapshot repeats recent ones), by id."""
        out = {}
        for f in self.frames:
            if f["type"] == L.T_UPDATE_PREFIX + L.CH_ACCOUNT_ALL_TRADES:
                for lst in f[L.F_TRADES].values():
                    for t in lst:
                        assert t[L.TR_TRADE_ID] not in out, f"trade id twice: {t}"
                        out[t[L.TR_TRADE_ID]] = t
        return out

    def close(self):
        self._cm.__exit__(None, None, None)


@pytest.fixture
def fake(tmp_path):
    f = FakeVenue(tmp_path)
    yield f
    f.stop()


@pytest.fixture
def signer(fake):
    s = Signer(fake.http)
    yield s
    s.close()


def units(s: str) -> int:
    return int(s.replace(".", ""))


def test_place_ack_partial_and_full_fill_with_account_frames(fake, signer):
    acct = Account(fake, signer.token())
    bb, ba = fake.book()
    n = fake.nonce()
    # a post-only bid inside the spread rests: acked on account_all_orders with its indices
    status, rep = fake.send_tx(*signer.order(11, 300, bb + 1, False, n))
    assert status == 200 and rep["code"] == L.CODE_OK and len(rep["tx_hash"]) == 80, rep
    acct.wait(lambda: acct.status(11) == L.ST_OPEN, "the ack")
    ack = acct.orders(11)[-1]
    assert ack[L.O_ORDER_INDEX] >= L.ORDER_INDEX_BASE and ack[L.O_REMAINING_BASE] == "0.00300"
    # a taker sells 100 at our price: partial; then 500 more: the remaining 200 fill
    assert fake.post("/fake/trade", {"market_id": BTC, "taker_buys": False, "price": bb + 1,
                                     "size": 100})["fills"] == 1
    acct.wait(lambda: acct.orders(11)[-1][L.O_REMAINING_BASE] == "0.00200", "the partial")
    assert acct.status(11) == L.ST_OPEN
    fake.post("/fake/trade", {"market_id": BTC, "taker_buys": False, "price": bb, "size": 500})
    acct.wait(lambda: acct.status(11) == L.ST_FILLED, "the full fill")
    # a GTT buy through the synthetic best ask takes liquidity at once (taker fill)
    status, rep = fake.send_tx(*signer.order(12, 50, ba, False, n + 1, tif=L.TIF_GTT))
    assert status == 200, rep
    acct.wait(lambda: acct.status(12) == L.ST_FILLED, "the taker fill")
    acct.wait(lambda: len(acct.trades()) == 3, "three trades")
    trades = acct.trades()
    mine = sorted(trades.values(), key=lambda t: t[L.TR_TRADE_ID])
    assert [(t[L.TR_BID_CLIENT_ID], units(t[L.TR_SIZE]), units(t[L.TR_PRICE]),
             t[L.TR_IS_MAKER_ASK]) for t in mine] == [
        (11, 100, bb + 1, False), (11, 200, bb + 1, False), (12, 50, ba, True)]
    # the venue's truth, its REST account state and the frames agree
    truth = fake.truth()
    assert sorted(f["trade_id"] for f in truth["fills"]) == sorted(trades)
    assert truth["positions"] == {str(BTC): 350} and truth["open_orders"] == []
    doc = fake.get(f"/api/v1/account?by=index&value={ACCT}")["accounts"][0]
    pos = doc["positions"][0]
    assert (pos["sign"], units(pos["position"])) == (1, 350)
    last_pos = [f for f in acct.frames
                if f["type"] == L.T_UPDATE_PREFIX + L.CH_ACCOUNT_ALL_POSITIONS][-1]
    assert last_pos["positions"][str(BTC)] == pos
    acct.close()


def test_cancel_post_only_reject_and_active_orders(fake, signer):
    acct = Account(fake, signer.token())
    bb, ba = fake.book()
    n = fake.nonce()
    for i, (coi, px) in enumerate(((21, bb - 5), (22, ba + 5))):
        assert fake.send_tx(*signer.order(coi, 100, px, coi == 22, n + i))[0] == 200
    # post-only that would take is accepted, then cancelled as such (nothing filled)
    assert fake.send_tx(*signer.order(23, 100, ba, False, n + 2))[0] == 200
    acct.wait(lambda: acct.status(23) == L.ST_CANCELED_POST_ONLY, "the post-only cancel")
    acct.wait(lambda: acct.status(21) == acct.status(22) == L.ST_OPEN, "two acks")
    # REST open orders (auth token in the header, as the SDK sends it) = the frames' view
    tok = signer.token()
    status, doc = fake.request(f"/api/v1/accountActiveOrders?account_index={ACCT}&market_id={BTC}",
                               headers={"authorization": tok})
    assert status == 200 and sorted(o[L.O_CLIENT_ORDER_INDEX] for o in doc["orders"]) == [21, 22]
    assert fake.request(f"/api/v1/accountActiveOrders?account_index={ACCT}")[0] == 400
    # cancel by venue order index and by client order index
    oi = acct.orders(21)[-1][L.O_ORDER_INDEX]
    assert fake.send_tx(*signer.cancel(oi, n + 3))[0] == 200
    assert fake.send_tx(*signer.cancel(22, n + 4))[0] == 200
    acct.wait(lambda: acct.status(21) == acct.status(22) == L.ST_CANCELED, "two cancels")
    # cancelling it again: refused, the nonce is not consumed
    status, rep = fake.send_tx(*signer.cancel(22, n + 5))
    assert (status, rep["code"]) == (400, L.ERR_ORDER_NOT_ACTIVE)
    assert fake.nonce() == n + 5
    t = fake.truth()
    assert t["open_orders"] == [] and t["fills"] == [] and t["positions"] == {}
    acct.close()


def test_invalid_nonce_over_http_and_websocket(fake, signer):
    n = fake.nonce()
    status, rep = fake.send_tx(*signer.order(31, 100, 100, False, n + 3))
    assert (status, rep["code"]) == (400, L.ERR_INVALID_NONCE), rep
    assert fake.nonce() == n  # unchanged: refetch and resend
    assert fake.send_tx(*signer.order(31, 100, 100, False, n))[0] == 200
    assert fake.nonce() == n + 1
    with ws_connect(fake.ws, open_timeout=10) as ws:
        ws.recv(timeout=10)
        t, info = signer.order(32, 100, 100, False, n)  # stale
        ws.send(json.dumps({"type": L.T_SEND_TX, "data": {"id": "a1", "tx_type": t,
                                                          "tx_info": json.loads(info)}}))
        rep = json.loads(ws.recv(timeout=10))
        assert (rep["type"], rep["id"], rep["code"]) == (L.T_ERROR, "a1", L.ERR_INVALID_NONCE)
        t, info = signer.order(32, 100, 100, False, n + 1)
        ws.send(json.dumps({"type": L.T_SEND_TX, "data": {"id": "a2", "tx_type": t,
                                                          "tx_info": info}}))
        rep = json.loads(ws.recv(timeout=10))
        assert (rep["type"], rep["id"], rep["code"]) == (L.T_SEND_TX, "a2", L.CODE_OK), rep
    assert fake.nonce() == n + 2


def test_batch_over_http_with_the_sdk_and_over_websocket(fake, signer):
    """A requote as one batch: the SDK's own send_tx_batch (its form encoding) and the socket's
    jsonapi/sendtxbatch; a batch with one bad nonce is refused whole."""
    acct = Account(fake, signer.token())
    bb, _ba = fake.book()
    n = fake.nonce()
    t1, i1 = signer.order(41, 100, bb - 10, False, n)
    t2, i2 = signer.order(42, 100, bb - 11, False, n + 1)
    rep = signer.run(signer.client.send_tx_batch([t1, t2], [i1, i2]))
    assert rep.code == L.CODE_OK and len(rep.tx_hash) == 2
    acct.wait(lambda: acct.status(41) == acct.status(42) == L.ST_OPEN, "two acks")
    tc, ic = signer.cancel(41, n + 2)
    tp, ip = signer.order(43, 100, bb - 9, False, n + 4)  # nonce gap: the batch is refused
    with ws_connect(fake.ws, open_timeout=10) as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": L.T_SEND_TX_BATCH, "data": {
            "id": 9, "tx_types": json.dumps([tc, tp]), "tx_infos": json.dumps([ic, ip])}}))
        rep = json.loads(ws.recv(timeout=10))
        assert (rep["type"], rep["id"], rep["code"]) == (L.T_ERROR, 9, L.ERR_INVALID_NONCE)
        assert acct.status(41) == L.ST_OPEN and fake.nonce() == n + 2
        tp, ip = signer.order(43, 100, bb - 9, False, n + 3)
        ws.send(json.dumps({"type": L.T_SEND_TX_BATCH, "data": {
            "id": 10, "tx_types": json.dumps([tc, tp]), "tx_infos": json.dumps([ic, ip])}}))
        rep = json.loads(ws.recv(timeout=10))
        assert rep["code"] == L.CODE_OK and len(rep["tx_hash"]) == 2, rep
    acct.wait(lambda: acct.status(41) == L.ST_CANCELED and acct.status(43) == L.ST_OPEN,
              "cancel + place")
    assert sorted(o["client_order_index"] for o in fake.truth()["open_orders"]) == [42, 43]
    acct.close()


def test_sdk_create_order_with_its_nonce_manager(fake, signer):
    """The SDK's own path end to end: nextNonce (its NextNonce model), sendTx (its form and
    RespSendTx model)."""
    bb, _ba = fake.book()
    created, rep, err = signer.run(signer.client.create_order(
        BTC, 51, 100, bb - 20, False, L.ORDER_TYPE_LIMIT, L.TIF_POST_ONLY))
    assert err is None and rep.code == L.CODE_OK, (rep, err)
    assert [o["client_order_index"] for o in fake.truth()["open_orders"]] == [51]


def test_scheduled_cancel_all_fires_rearms_and_aborts(fake, signer):
    acct = Account(fake, signer.token())
    bb, _ba = fake.book()
    n = fake.nonce()
    now_ms = time.time_ns() // 1_000_000
    assert fake.send_tx(*signer.order(61, 100, bb - 10, False, n))[0] == 200
    assert fake.send_tx(*signer.cancel_all(L.CANCEL_ALL_SCHEDULED, now_ms + 1500, n + 1))[0] == 200
    assert fake.get(f"/api/v1/account?by=index&value={ACCT}")["accounts"][0][
        L.A_CANCEL_ALL_TIME] == now_ms + 1500
    # re-armed before it fires: pushed to +4 s
    assert fake.send_tx(*signer.cancel_all(L.CANCEL_ALL_SCHEDULED, now_ms + 4000, n + 2))[0] == 200
    time.sleep(max(0.0, (now_ms + 2500) / 1000 - time.time()))
    acct.pump()
    assert acct.status(61) == L.ST_OPEN and fake.truth()["cancel_all_fired"] == 0
    acct.wait(lambda: acct.status(61) == L.ST_CANCELED, "the dead-man cancel", timeout=5)
    fired_ms = time.time_ns() // 1_000_000
    assert fired_ms >= now_ms + 4000
    t = fake.truth()
    assert t["cancel_all_fired"] == 1 and t["open_orders"] == [] and t["cancel_all_at_ms"] == 0
    # armed, then aborted: never fires
    now_ms = time.time_ns() // 1_000_000
    assert fake.send_tx(*signer.order(62, 100, bb - 10, False, n + 3))[0] == 200
    assert fake.send_tx(*signer.cancel_all(L.CANCEL_ALL_SCHEDULED, now_ms + 1000, n + 4))[0] == 200
    assert fake.send_tx(*signer.cancel_all(L.CANCEL_ALL_ABORT, 0, n + 5))[0] == 200
    time.sleep(1.5)
    t = fake.truth()
    assert t["cancel_all_fired"] == 1 and [o["client_order_index"] for o in t["open_orders"]] == [62]
    # a schedule in the past is refused
    status, rep = fake.send_tx(*signer.cancel_all(L.CANCEL_ALL_SCHEDULED, now_ms - 1, n + 6))
    assert (status, rep["code"]) == (400, L.ERR_INVALID_CANCEL_ALL_TIME)
    acct.close()


def test_rate_limit_replies_as_the_venue(fake, signer):
    assert fake.post("/fake/config", {"rate_limit_per_min": 13})["rate_limit_per_min"] == 13
    n = fake.nonce()  # weight 1: 12 left, two sendTx of weight 6 fit, the third does not
    assert fake.send_tx(*signer.order(71, 100, 100, False, n))[0] == 200
    assert fake.send_tx(*signer.order(72, 100, 100, False, n + 1))[0] == 200
    status, rep = fake.send_tx(*signer.order(73, 100, 100, False, n + 2))
    assert (status, rep["code"]) == (L.HTTP_RATE_LIMITED, L.ERR_TOO_MANY_REQUESTS)
    assert fake.get("/fake/stats")["orders"]["rate_limited_total"] == 1
    fake.post("/fake/config", {"rate_limit_per_min": 0})
    assert fake.send_tx(*signer.order(73, 100, 100, False, n + 2))[0] == 200


def test_account_channels_need_a_well_formed_token(fake, signer):
    with ws_connect(fake.ws, open_timeout=10) as ws:
        ws.recv(timeout=10)
        for auth in (None, "not-a-token", signer.token().replace(f":{ACCT}:", ":8:")):
            frame = {"type": "subscribe", "channel": f"account_all_orders/{ACCT}"}
            if auth is not None:
                frame["auth"] = auth
            ws.send(json.dumps(frame))
            rep = json.loads(ws.recv(timeout=10))
            assert (rep["type"], rep["code"]) == (L.T_ERROR, L.ERR_AUTH), rep
        ws.send(json.dumps({"type": "subscribe", "channel": f"account_all_orders/{ACCT}",
                            "auth": signer.token()}))
        rep = json.loads(ws.recv(timeout=10))
        assert rep["type"] == "subscribed/account_all_orders" and rep["orders"] == {}


def test_faults_reject_next_and_account_drop(fake, signer):
    acct = Account(fake, signer.token())
    n = fake.nonce()
    fake.post("/fake/fault", {"kind": "reject", "arg": 2, "code": L.ERR_TOO_MANY_PENDING})
    for _ in range(2):
        status, rep = fake.send_tx(*signer.order(81, 100, 100, False, n))
        assert (status, rep["code"]) == (400, L.ERR_TOO_MANY_PENDING)
    assert fake.send_tx(*signer.order(81, 100, 100, False, n))[0] == 200
    assert fake.post("/fake/fault", {"kind": "account_drop"})["connections"] >= 1
    with pytest.raises(Exception):
        acct.wait(lambda: False, "the socket to close", timeout=5)
    acct.close()


def test_own_trade_flow_fills_resting_orders_with_unique_ids(tmp_path):
    """With the synthetic market moving, orders at the touch fill from its trade flow; every
    trade id is unique and the frames carry exactly the fake's fills."""
    fake = FakeVenue(tmp_path, rate=200.0)
    signer = Signer(fake.http)
    try:
        acct = Account(fake, signer.token())
        n = fake.nonce()
        coi = 100
        end = time.monotonic() + 20
        while time.monotonic() < end and len(fake.truth()["fills"]) < 6:
            bb, ba = fake.book()
            for is_ask, px in ((False, bb), (True, ba)):
                if fake.send_tx(*signer.order(coi, 100, px, is_ask, n))[0] == 200:
                    n += 1
                coi += 1
            time.sleep(0.3)
        acct.pump(0.5)
        truth = fake.truth()
        assert len(truth["fills"]) >= 6
        acct.wait(lambda: len(acct.trades()) == len(fake.truth()["fills"]), "every fill")
        ids = [f["trade_id"] for f in fake.truth()["fills"]]
        assert len(set(ids)) == len(ids) and set(ids) == set(acct.trades())
        acct.close()
    finally:
        signer.close()
        fake.stop()
