"""``bog fake-venue``: a local process that speaks Lighter's market-data protocol.

What the tests, ``bog bench --feed lighter`` and a user without network run the lighter feed
against. It listens on 127.0.0.1 only and serves, as the venue does (``bog.venue.lighter``):

- REST ``GET /api/v1/orderBooks`` (the market list) and ``GET /api/v1/orderBookDetails``;
- WebSocket ``/stream``: ``connected`` first, then per subscription (``order_book/<id>``,
  ``trade/<id>``) a full snapshot and updates on a ``begin_nonce``/``nonce`` chain (nonces
  step by 1..3, as a real chain need not be consecutive), trades, server ``ping`` frames,
  ``shutdown`` and ``error`` frames.

Each market is a seeded random walk (``FakeMarket``): levels are added, resized and removed
(size ``0``) around a moving touch, takers consume the best level (a trade), and the depth
per side wanders between one level and ~40 so thin books happen. Same seed, same market.

Faults (``FAULTS``), scheduled at start (``--faults gap@5,stall@10:3``: kind@seconds[:arg]) or
triggered at run time with ``POST /fake/fault {"kind": ..., "arg": ...}``. That endpoint and
the others under ``/fake/`` exist only on the fake: ``GET /fake/stats``, ``POST /fake/tape``
(one trade frame carrying several trades, for the feed's multi-trade frames),
``POST /fake/position`` (a position change no channel reports) and
``POST /fake/books {"market_id": N, "ts_us": [...]}``, which returns the fake's own top 10 at
the book time ``last_updated_at`` (unique per update), so a test can compare what the feed
published with the book the venue really had.

Structure for the live-execution work: the app is built from a ``FakeVenue`` (markets,
connections, channel handlers keyed by channel name, frame handlers keyed by frame type, REST
routes); orders and accounts add a handler per channel/frame type and routes, not a new server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bog.shm.layouts import DEPTH, FIXED
from bog.venue import lighter as L
from bog.venue.fakeorders import OrderDesk, TxError

log = logging.getLogger("bog.venue.fake")

HISTORY_UPDATES = 200_000  # book states kept per market for /fake/books
SEND_QUEUE_MAX = 200_000  # frames queued for one slow client before it is disconnected
FAULTS = ("gap", "stall", "disconnect", "malformed", "crossed", "error", "shutdown",
          "nan_price", "negative_size", "zero_price", "missing_field", "bad_type",
          "unknown_type", "thin", "account_drop", "reject", "tx_stall")
# account_drop: close every socket with an account subscription; reject: refuse the next ARG
# transactions (with "code", default 21506); tx_stall: transactions wait ARG s for a reply


@dataclass(frozen=True)
class MarketSpec:
    symbol: str
    market_id: int
    size_decimals: int
    price_decimals: int
    start_price: str  # human units
    min_base: str
    min_quote: str = "10.000000"


# ETH is market 0 (size 4 / price 2 decimals) and BTC market 1 (5 / 1), as on the venue
MARKETS = (
    MarketSpec("ETH", 0, 4, 2, "2325.00", "0.0050"),
    MarketSpec("BTC", 1, 5, 1, "60000.0", "0.00020"),
)


def fmt_units(units: int, decimals: int) -> str:
    """Integer units of 10^-decimals -> the venue's decimal string ("2325.00")."""
    if decimals == 0:
        return str(units)
    q, r = divmod(units, 10 ** decimals)
    return f"{q}.{r:0{decimals}d}"


def now_us() -> int:
    return time.time_ns() // 1000


class FakeMarket:
    """One market's book: {price units: size units} per side, a nonce chain and history."""

    def __init__(self, spec: MarketSpec, seed: int, trade_ids=None):
        self.spec = spec
        self.trade_ids = trade_ids if trade_ids is not None else itertools.count(1)
        self.rng = random.Random(seed * 1000 + spec.market_id)
        pd, sd = spec.price_decimals, spec.size_decimals
        self.px_scale = 10 ** (9 - pd)  # units -> fixed x1e9
        self.sz_scale = 10 ** (9 - sd)
        mid = int(spec.start_price.replace(".", ""))
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.min_base_units = int(spec.min_base.replace(".", ""))
        self.lot = max(1, self.min_base_units)  # typical size unit
        self.half_spread = max(1, mid // 4_000)  # ~2.5 bps each side
        for k in range(20):
            self.bids[mid - self.half_spread - 3 * k] = self._size()
            self.asks[mid + self.half_spread + 3 * k] = self._size()
        self.target = [20, 20]
        self.nonce = self.rng.randint(1_000, 1_000_000)
        self.offset = 0
        self.ts_us = now_us()
        self.trade_id = 0
        self.history: dict[int, tuple[int, bytes]] = {}  # ts_us -> (nonce, top 10 as int64)
        self.history_order: deque[int] = deque()
        self._record()

    # -- the random walk ---------------------------------------------------------------------
    def _size(self) -> int:
        return self.lot * self.rng.randint(1, 400)

    def new_trade_id(self) -> int:
        """Trade ids are unique over the whole venue (every market, own fills too)."""
        self.trade_id = next(self.trade_ids)
        return self.trade_id

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None

    def step(self) -> tuple[dict, dict, tuple | None]:
        """Next update: (bid changes, ask changes, trade or None); sizes 0 remove a level.
        Not applied yet: ``apply`` does that (so faults can change or withhold it)."""
        r = self.rng
        bc: dict[int, int] = {}
        ac: dict[int, int] = {}
        trade = None
        if r.random() < 0.002:  # new depth targets: sometimes thin (1-3 levels), mostly deep
            self.target = [r.choice((1, 2, 3, 8, 20, 40)) for _ in range(2)]
        if r.random() < 0.15 and self.bids and self.asks:  # a taker hits the touch
            if r.random() < 0.5:
                p = self.best_ask()
                q = min(self.asks[p], self.lot * r.randint(1, 200))
                ac[p] = self.asks[p] - q
                trade = (p, q, True)  # the ask was the maker: the taker bought
            else:
                p = self.best_bid()
                q = min(self.bids[p], self.lot * r.randint(1, 200))
                bc[p] = self.bids[p] - q
                trade = (p, q, False)
        inside = False  # at most one new level inside the spread per update: never crossed
        for _ in range(r.randint(1, 3)):
            side = r.randint(0, 1)
            book, ch = (self.bids, bc) if side == 0 else (self.asks, ac)
            n = len(book)
            if n < self.target[side] or n == 0:
                p, improves = self._new_price(side, not inside)
                inside = inside or improves
                if p > 0 and p not in book:
                    ch[p] = self._size()
            elif n > self.target[side] and n > 1:
                ch[r.choice(list(book))] = 0
            else:
                ch[r.choice(list(book))] = self._size()
        for side, book, ch in ((0, self.bids, bc), (1, self.asks, ac)):
            left = sum(1 for p in book if ch.get(p, 1) != 0) + sum(
                1 for p, s in ch.items() if s and p not in book)
            if left == 0:  # never empty a side: a new level behind the old touch
                p, _ = self._new_price(side, False)
                ch[p if p > 0 else 1] = self._size()
        return bc, ac, trade

    def _new_price(self, side: int, may_improve: bool) -> tuple[int, bool]:
        """(price for a new level, inside the spread?): mostly behind the touch."""
        r = self.rng
        bb, ba = self.best_bid(), self.best_ask()
        if bb is not None and ba is not None and may_improve and r.random() < 0.3 \
                and ba - bb > 1:
            return r.randint(bb + 1, ba - 1), True  # improves the touch, crosses nothing
        if side == 0:
            if bb is None:
                return (ba if ba is not None else 2 * self.half_spread) - self.half_spread, False
            return bb - int(r.expovariate(1 / 8)) - 1, False
        if ba is None:
            return (bb if bb is not None else 0) + self.half_spread, False
        return ba + int(r.expovariate(1 / 8)) + 1, False

    def apply(self, bc: dict, ac: dict) -> tuple[int, int, int]:
        """Apply one update; returns (begin_nonce, nonce, ts_us) and records the new top 10."""
        for book, ch in ((self.bids, bc), (self.asks, ac)):
            for p, s in ch.items():
                if s == 0:
                    book.pop(p, None)
                else:
                    book[p] = s
        begin = self.nonce
        self.nonce += self.rng.randint(1, 3)
        self.offset += 1
        self.ts_us = max(now_us(), self.ts_us + 1)  # unique per update: the history key
        self._record()
        return begin, self.nonce, self.ts_us

    def consume_nonce(self) -> tuple[int, int, int]:
        """An update in the chain that the fake's own book does not take (crossed fault)."""
        begin = self.nonce
        self.nonce += 1
        self.ts_us = max(now_us(), self.ts_us + 1)
        self.history[self.ts_us] = self.history[self.history_order[-1]]
        self.history_order.append(self.ts_us)
        return begin, self.nonce, self.ts_us

    def top(self) -> np.ndarray:
        """Top DEPTH levels as fixed point: [bid px, bid sz, ask px, ask sz] x DEPTH (0 = none)."""
        out = np.zeros((4, DEPTH), np.int64)
        for k, p in enumerate(sorted(self.bids, reverse=True)[:DEPTH]):
            out[0, k], out[1, k] = p * self.px_scale, self.bids[p] * self.sz_scale
        for k, p in enumerate(sorted(self.asks)[:DEPTH]):
            out[2, k], out[3, k] = p * self.px_scale, self.asks[p] * self.sz_scale
        return out

    def _record(self) -> None:
        self.history[self.ts_us] = (self.nonce, self.top().tobytes())
        self.history_order.append(self.ts_us)
        while len(self.history_order) > HISTORY_UPDATES:
            self.history.pop(self.history_order.popleft(), None)

    # -- frames --------------------------------------------------------------------------------
    def levels(self, ch: dict, decimals_px: int, decimals_sz: int, reverse: bool) -> list:
        return [{L.F_PRICE: fmt_units(p, decimals_px), L.F_SIZE: fmt_units(s, decimals_sz)}
                for p, s in sorted(ch.items(), reverse=reverse)]

    def book_frame(self, typ: str, bc: dict, ac: dict, begin: int, nonce: int, ts_us: int) -> dict:
        pd, sd = self.spec.price_decimals, self.spec.size_decimals
        return {
            L.F_TYPE: typ,
            L.F_CHANNEL: L.reply_channel(L.CH_BOOK, self.spec.market_id),
            L.F_ORDER_BOOK: {
                L.F_CODE: 0,
                L.F_ASKS: self.levels(ac, pd, sd, False),
                L.F_BIDS: self.levels(bc, pd, sd, True),
                L.F_OFFSET: self.offset,
                L.F_NONCE: nonce,
                L.F_BEGIN_NONCE: begin,
                L.F_LAST_UPDATED_US: ts_us,
            },
            L.F_TIMESTAMP_MS: ts_us // 1000,
            L.F_LAST_UPDATED_US: ts_us,
        }

    def snapshot_frame(self) -> dict:
        return self.book_frame(L.T_BOOK_SNAPSHOT, dict(self.bids), dict(self.asks), self.nonce,
                               self.nonce, self.ts_us)

    def trade_frame(self, typ: str, trades: list[tuple]) -> dict:
        pd, sd = self.spec.price_decimals, self.spec.size_decimals
        out = []
        for p, q, maker_ask, ts_us, *tid in trades:
            out.append({"trade_id": tid[0] if tid else self.new_trade_id(),
                        L.F_TRADE_PRICE: fmt_units(p, pd),
                        L.F_TRADE_SIZE: fmt_units(q, sd), L.F_TRADE_IS_MAKER_ASK: maker_ask,
                        L.F_TRADE_TIME_MS: ts_us // 1000, L.F_TRADE_TIME_US: ts_us,
                        "bid_client_id": 0, "ask_client_id": 0, "taker_fee": 0,
                        "maker_fee": 0, "type": "trade"})
        return {L.F_TYPE: typ, L.F_CHANNEL: L.reply_channel(L.CH_TRADE, self.spec.market_id),
                L.F_TRADES: out, "liquidation_trades": [], L.F_NONCE: self.trade_id}

    def rest_entry(self, details: bool = False) -> dict:
        s = self.spec
        doc = {L.F_SYMBOL: s.symbol, L.F_MARKET_ID: s.market_id, L.F_MARKET_TYPE: "perp",
               L.F_STATUS: "active", L.F_TAKER_FEE: "0.0000", L.F_MAKER_FEE: "0.0000",
               L.F_MIN_BASE: s.min_base, L.F_MIN_QUOTE: s.min_quote,
               L.F_SIZE_DECIMALS: s.size_decimals, L.F_PRICE_DECIMALS: s.price_decimals}
        if details:
            doc.update({L.F_DETAIL_SIZE_DECIMALS: s.size_decimals,
                        L.F_DETAIL_PRICE_DECIMALS: s.price_decimals,
                        "last_trade_price": float(fmt_units(self.best_bid() or 0,
                                                            s.price_decimals))})
        return doc


@dataclass(eq=False)
class Conn:
    """One WebSocket client: its subscriptions, its send queue and its fault state."""

    ws: WebSocket
    cid: int
    queue: deque = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    subs: set = field(default_factory=set)  # (channel, market_id)
    skip_updates: int = 0  # gap fault: book updates withheld from this client
    stall_until: float = 0.0  # stall fault: nothing is sent (not even pings) until then
    closed: bool = False
    pongs: int = 0

    def send(self, text: str) -> bool:
        if self.closed:
            return False
        if len(self.queue) >= SEND_QUEUE_MAX:
            return False
        self.queue.append(text)
        self.wake.set()
        return True


def dumps(doc: dict) -> str:
    return orjson.dumps(doc).decode()


class FakeVenue:
    """Markets, connections and the handlers that serve them (see the module docstring)."""

    def __init__(self, rate_per_s: float = 50.0, seed: int = 1, ping_every_s: float = 30.0,
                 faults: list[tuple[str, float, float | None]] | None = None,
                 markets: tuple[MarketSpec, ...] = MARKETS):
        self.rate_per_s = rate_per_s
        self.seed = seed
        self.ping_every_s = ping_every_s
        self.scheduled = sorted(faults or [], key=lambda f: f[1])
        self.trade_ids = itertools.count(1)
        self.markets = {s.market_id: FakeMarket(s, seed, self.trade_ids) for s in markets}
        self.conns: set[Conn] = set()
        self._next_cid = 0
        self.stats = {"connections_total": 0, "updates_total": 0, "trades_total": 0,
                      "frames_sent_total": 0, "faults_total": {}, "slow_clients_dropped": 0,
                      "pongs_total": 0, "subscribes_total": 0}
        self.frame_handlers = {L.T_SUBSCRIBE: self.on_subscribe,
                               L.T_UNSUBSCRIBE: self.on_unsubscribe, L.T_PING: self.on_ping,
                               L.T_PONG: self.on_pong}
        self.channels = {L.CH_BOOK: self.subscribe_book, L.CH_TRADE: self.subscribe_trade}
        # orders and accounts (bog.venue.fakeorders)
        self.desk = OrderDesk(self)
        self._tx_tasks: set[asyncio.Task] = set()
        self.frame_handlers[L.T_SEND_TX] = self.on_send_tx
        self.frame_handlers[L.T_SEND_TX_BATCH] = self.on_send_tx
        self.account_channels = (L.CH_ACCOUNT_ALL_ORDERS, L.CH_ACCOUNT_ALL_TRADES,
                                 L.CH_ACCOUNT_ALL_POSITIONS)
        self._tasks: list[asyncio.Task] = []
        self.started = time.monotonic()

    # -- app -----------------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [
            Route(L.REST_PREFIX + L.REST_ORDER_BOOKS, self.rest_order_books),
            Route(L.REST_PREFIX + L.REST_ORDER_BOOK_DETAILS, self.rest_order_book_details),
            WebSocketRoute(L.WS_PATH, self.ws_endpoint),
            Route("/fake/fault", self.fake_fault, methods=["POST"]),
            Route("/fake/stats", self.fake_stats),
            Route("/fake/books", self.fake_books, methods=["POST"]),
            # orders and accounts
            Route(L.REST_PREFIX + L.REST_NEXT_NONCE, self.rest_next_nonce),
            Route(L.REST_PREFIX + L.REST_SEND_TX, self.rest_send_tx, methods=["POST"]),
            Route(L.REST_PREFIX + L.REST_SEND_TX_BATCH, self.rest_send_tx_batch,
                  methods=["POST"]),
            Route(L.REST_PREFIX + L.REST_ACCOUNT, self.rest_account),
            Route(L.REST_PREFIX + L.REST_ACTIVE_ORDERS, self.rest_active_orders),
            Route("/fake/account", self.fake_account),
            Route("/fake/trade", self.fake_trade, methods=["POST"]),
            Route("/fake/tape", self.fake_tape, methods=["POST"]),
            Route("/fake/config", self.fake_config, methods=["POST"]),
            Route("/fake/position", self.fake_position, methods=["POST"]),
        ]
        return Starlette(routes=routes, lifespan=self.lifespan)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self._tasks = [asyncio.create_task(self.run_market(m)) for m in self.markets.values()]
        self._tasks.append(asyncio.create_task(self.run_schedule()))
        yield
        for t in self._tasks:
            t.cancel()

    # -- REST ----------------------------------------------------------------------------------
    async def rest_order_books(self, request: Request) -> Response:
        return JSONResponse({L.F_CODE: 200, L.MARKETS_KEY: [m.rest_entry() for m in
                                                            self.markets.values()]})

    async def rest_order_book_details(self, request: Request) -> Response:
        mid = request.query_params.get("market_id")
        ms = list(self.markets.values())
        if mid is not None:
            try:
                ms = [self.markets[int(mid)]]
            except (ValueError, KeyError):
                return JSONResponse({L.F_CODE: 21100, L.F_MESSAGE: "invalid market id"}, 400)
        return JSONResponse({L.F_CODE: 200, L.DETAILS_KEY: [m.rest_entry(True) for m in ms]})

    # -- REST: orders and accounts ---------------------------------------------------------------
    def _limited(self, request: Request, weight: int = 1) -> Response | None:
        addr = request.client.host if request.client else "?"
        if self.desk.rate_limited(addr, weight):
            return JSONResponse({L.F_CODE: L.ERR_TOO_MANY_REQUESTS,
                                 L.F_MESSAGE: "Too Many Requests!"}, L.HTTP_RATE_LIMITED)
        return None

    @staticmethod
    def _bad(code: int, message: str) -> Response:
        return JSONResponse({L.F_CODE: code, L.F_MESSAGE: message}, 400)

    async def rest_next_nonce(self, request: Request) -> Response:
        if (r := self._limited(request)) is not None:
            return r
        try:
            acct = int(request.query_params[L.Q_ACCOUNT_INDEX])
            key = int(request.query_params[L.Q_API_KEY_INDEX])
        except (KeyError, ValueError):
            return self._bad(20001, "account_index and api_key_index are required integers")
        return JSONResponse({L.F_CODE: L.CODE_OK, L.F_NEXT_NONCE: self.desk.next_nonce(acct, key)})

    async def _form(self, request: Request) -> dict:
        """The SDK posts application/x-www-form-urlencoded [read]; JSON bodies work too."""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                doc = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                return {}
            return doc if isinstance(doc, dict) else {}
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[-1] for k, v in urllib.parse.parse_qs(body).items()}

    async def rest_send_tx(self, request: Request) -> Response:
        if (r := self._limited(request, L.SENDTX_WEIGHT)) is not None:
            return r
        form = await self._form(request)
        await self.desk.stall()
        try:
            hashes = self.desk.submit([(form.get(L.FORM_TX_TYPE), form.get(L.FORM_TX_INFO))])
        except TxError as e:
            return self._bad(e.code, e.message)
        return JSONResponse(self._tx_reply(hashes[0]))

    async def rest_send_tx_batch(self, request: Request) -> Response:
        if (r := self._limited(request, L.SENDTX_WEIGHT)) is not None:
            return r
        form = await self._form(request)
        await self.desk.stall()
        try:
            hashes = self.desk.submit(_batch_items(form.get(L.FORM_TX_TYPES),
                                                   form.get(L.FORM_TX_INFOS)))
        except TxError as e:
            return self._bad(e.code, e.message)
        return JSONResponse(self._tx_reply(hashes))

    async def rest_account(self, request: Request) -> Response:
        if (r := self._limited(request)) is not None:
            return r
        q = request.query_params
        if q.get(L.Q_BY, "index") != "index":
            return self._bad(20001, "the fake serves by=index only")
        try:
            acct = int(q[L.Q_VALUE])
        except (KeyError, ValueError):
            return self._bad(20001, "value must be an account index")
        return JSONResponse({L.F_CODE: L.CODE_OK, L.A_TOTAL: 1,
                             L.A_ACCOUNTS: [self.desk.account_doc(acct)]})

    async def rest_active_orders(self, request: Request) -> Response:
        if (r := self._limited(request)) is not None:
            return r
        q = request.query_params
        try:
            acct = int(q[L.Q_ACCOUNT_INDEX])
            mid = int(q[L.Q_MARKET_ID]) if L.Q_MARKET_ID in q else None
        except (KeyError, ValueError):
            return self._bad(20001, "account_index (and market_id) must be integers")
        tok = L.parse_auth_token(request.headers.get(L.H_AUTHORIZATION) or q.get(L.Q_AUTH))
        if tok is None or tok[1] != acct or tok[0] < time.time():
            return self._bad(L.ERR_AUTH, "missing, malformed or expired auth token")
        a = self.desk.account(acct)
        orders = [self.desk.order_doc(o) for o in a.orders.values()
                  if mid is None or o.market_id == mid]
        return JSONResponse({L.F_CODE: L.CODE_OK, L.F_ORDERS: orders})

    # -- fake-only control ---------------------------------------------------------------------
    async def fake_fault(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            kind = body["kind"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return JSONResponse({"error": "body must be {\"kind\": ..., \"arg\": ...}"}, 400)
        if kind not in FAULTS:
            return JSONResponse({"error": f"unknown fault {kind!r}; known: {', '.join(FAULTS)}"},
                                400)
        if kind == "reject" and body.get("code") is not None:
            self.desk.reject_code = int(body["code"])
        n = await self.inject(kind, body.get("arg"), body.get("market_id"))
        return JSONResponse({"kind": kind, "connections": n})

    async def fake_account(self, request: Request) -> Response:
        """``GET /fake/account?account=N``: the fake's truth (venue integer units)."""
        try:
            acct = int(request.query_params["account"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "?account=N is required"}, 400)
        return JSONResponse(self.desk.truth(acct))

    async def fake_trade(self, request: Request) -> Response:
        """``POST /fake/trade {"market_id", "taker_buys", "price", "size"}``: a synthetic taker
        (venue units) that fills resting orders priced at or through ``price``."""
        try:
            body = orjson.loads(await request.body())
            m = self.markets[int(body["market_id"])]
            price, size = int(body["price"]), int(body["size"])
            taker_buys = bool(body["taker_buys"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return JSONResponse({"error": "body must be {\"market_id\", \"taker_buys\", "
                                          "\"price\", \"size\"} (venue units)"}, 400)
        before = self.desk.stats["fills_total"]
        self.desk.on_taker(m, price, size, taker_buys)
        return JSONResponse({"fills": self.desk.stats["fills_total"] - before})

    async def fake_tape(self, request: Request) -> Response:
        """``POST /fake/tape {"market_id", "trades": [{"taker_buys", "price", "size"}, ...]}``:
        broadcast ONE ``update/trade`` frame carrying these trades, in order (venue units; each
        stamped now + its index in µs, or its own ``ts_us``). Public tape only: the book and
        resting orders are not touched. A size of 0 makes a bad trade (tests of rejects)."""
        try:
            body = orjson.loads(await request.body())
            m = self.markets[int(body["market_id"])]
            now = now_us()
            trades = [(int(t["price"]), int(t["size"]), bool(t["taker_buys"]),
                       int(t.get("ts_us") or now + i)) for i, t in enumerate(body["trades"])]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return JSONResponse({"error": "body must be {\"market_id\", \"trades\": "
                                          "[{\"taker_buys\", \"price\", \"size\"}, ...]} "
                                          "(venue units)"}, 400)
        # maker_ask: the ask was the maker, i.e. the taker bought
        frame = m.trade_frame(L.T_TRADE_UPDATE, trades)
        self.stats["trades_total"] += len(trades)
        self.broadcast(L.CH_TRADE, m.spec.market_id, dumps(frame))
        return JSONResponse({"trades": [t["trade_id"] for t in frame[L.F_TRADES]]})

    async def fake_position(self, request: Request) -> Response:
        """``POST /fake/position {"account", "market_id", "size", "price"}``: books a trade of
        signed ``size`` at ``price`` (venue units) on the account with no frame on any
        channel: a position change the account's owner never hears of (a lost fill, a
        liquidation), which only the REST account state shows."""
        try:
            body = orjson.loads(await request.body())
            acct = int(body["account"])
            mid = int(body["market_id"])
            if mid not in self.markets:
                raise ValueError(f"no market {mid}")
            size, price = int(body["size"]), int(body["price"])
            if size == 0 or price <= 0:
                raise ValueError("size must be nonzero and price positive")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            return JSONResponse({"error": "body must be {\"account\", \"market_id\", "
                                          "\"size\" (signed), \"price\"} (venue units): "
                                          f"{e}"}, 400)
        pos = self.desk.book_silently(acct, mid, size, price)
        return JSONResponse({"account": acct, "market_id": mid, "position": pos})

    async def fake_config(self, request: Request) -> Response:
        """``POST /fake/config {"rate_limit_per_min": N}`` (0: off)."""
        try:
            body = orjson.loads(await request.body())
            if "rate_limit_per_min" in body:
                self.desk.set_rate_limit(int(body["rate_limit_per_min"]))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return JSONResponse({"error": "body must be {\"rate_limit_per_min\": N}"}, 400)
        return JSONResponse({"rate_limit_per_min": self.desk.rate_limit_per_min})

    async def fake_stats(self, request: Request) -> Response:
        doc = dict(self.stats)
        doc["orders"] = dict(self.desk.stats)
        doc["connections"] = len(self.conns)
        doc["markets"] = {m.spec.symbol: {"nonce": m.nonce, "bids": len(m.bids),
                                          "asks": len(m.asks), "ts_us": m.ts_us}
                          for m in self.markets.values()}
        return JSONResponse(doc)

    async def fake_books(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            m = self.markets[int(body["market_id"])]
            stamps = [int(ts) for ts in body.get("ts_us", [])]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return JSONResponse({"error": "body must be {\"market_id\": N (a market of this "
                                          "fake), \"ts_us\": [microseconds, ...]}"}, 400)
        out = {}
        for ts in stamps:
            h = m.history.get(int(ts))
            out[str(ts)] = None if h is None else {
                "nonce": h[0], "top": np.frombuffer(h[1], np.int64).reshape(4, DEPTH).tolist()}
        return JSONResponse({"books": out})

    # -- WebSocket -----------------------------------------------------------------------------
    async def ws_endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        self._next_cid += 1
        conn = Conn(ws, self._next_cid)
        self.conns.add(conn)
        self.stats["connections_total"] += 1
        conn.send(dumps({L.F_TYPE: L.T_CONNECTED, "session_id": f"fake-{conn.cid}"}))
        sender = asyncio.create_task(self._sender(conn))
        pinger = asyncio.create_task(self._pinger(conn))
        try:
            while True:
                text = await ws.receive_text()
                try:
                    msg = orjson.loads(text)
                    handler = self.frame_handlers.get(msg.get(L.F_TYPE))
                except (orjson.JSONDecodeError, AttributeError):
                    handler = None
                    msg = None
                if handler is None:
                    conn.send(dumps({L.F_TYPE: L.T_ERROR, L.F_CODE: 30000,
                                     L.F_MESSAGE: f"invalid message: {text[:80]}"}))
                    continue
                handler(conn, msg)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            conn.closed = True
            self.conns.discard(conn)
            sender.cancel()
            pinger.cancel()

    async def _sender(self, conn: Conn) -> None:
        try:
            while True:
                if not conn.queue:
                    conn.wake.clear()
                    await conn.wake.wait()
                    continue
                text = conn.queue.popleft()
                if time.monotonic() < conn.stall_until:
                    continue  # stalled: the socket stays open, nothing arrives
                await conn.ws.send_text(text)
                self.stats["frames_sent_total"] += 1
        except (asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
            pass
        except Exception:  # a closed transport raises library-specific errors
            log.debug("sender for connection %d ended", conn.cid, exc_info=True)

    async def _pinger(self, conn: Conn) -> None:
        while not conn.closed:
            await asyncio.sleep(self.ping_every_s)
            conn.send(dumps({L.F_TYPE: L.T_PING}))

    def on_ping(self, conn: Conn, msg: dict) -> None:
        conn.send(dumps({L.F_TYPE: L.T_PONG}))

    def on_pong(self, conn: Conn, msg: dict) -> None:
        conn.pongs += 1
        self.stats["pongs_total"] += 1

    def on_subscribe(self, conn: Conn, msg: dict) -> None:
        channel = str(msg.get(L.F_CHANNEL, ""))
        name, _, market = channel.partition(L.SUB_SEP)
        if name in self.account_channels:
            self.subscribe_account(conn, msg, name, market)
            return
        handler = self.channels.get(name)
        try:
            m = self.markets[int(market)]
        except (ValueError, KeyError):
            m = None
        if handler is None or m is None:
            conn.send(dumps({L.F_TYPE: L.T_ERROR, L.F_CODE: 30001,
                             L.F_MESSAGE: f"invalid channel {channel!r}"}))
            return
        self.stats["subscribes_total"] += 1
        conn.subs.add((name, m.spec.market_id))
        handler(conn, m)

    def subscribe_account(self, conn: Conn, msg: dict, name: str, account: str) -> None:
        """An account channel: needs a well-formed auth token of the SDK's form for this
        account, not expired (the signature is not checked) [fake: the venue's error code for a
        bad token is unknown, ERR_AUTH]."""
        try:
            acct = int(account)
        except ValueError:
            acct = -1
        if acct < 0:
            conn.send(dumps({L.F_TYPE: L.T_ERROR, L.F_CODE: 30001,
                             L.F_MESSAGE: f"invalid channel {name}/{account!r}"}))
            return
        tok = L.parse_auth_token(msg.get(L.F_AUTH))
        why = None
        if tok is None:
            why = "missing or malformed auth token"
        elif tok[1] != acct:
            why = f"auth token is for account {tok[1]}, not {acct}"
        elif tok[0] < time.time():
            why = "auth token expired"
        if why is not None:
            self.stats["auth_refused_total"] = self.stats.get("auth_refused_total", 0) + 1
            log.warning("fake venue: %s/%s refused: %s", name, acct, why)
            conn.send(dumps({L.F_TYPE: L.T_ERROR, L.F_CODE: L.ERR_AUTH,
                             L.F_MESSAGE: f"{why} ({name}/{acct})"}))
            return
        self.stats["subscribes_total"] += 1
        conn.subs.add((name, acct))
        conn.send(dumps(self.desk.snapshot(name, acct)))

    # -- transactions over the socket ------------------------------------------------------------
    def on_send_tx(self, conn: Conn, msg: dict) -> None:
        t = asyncio.get_running_loop().create_task(self._send_tx_ws(conn, msg))
        self._tx_tasks.add(t)  # a reference until done, so it is not collected mid-way
        t.add_done_callback(self._tx_tasks.discard)

    async def _send_tx_ws(self, conn: Conn, msg: dict) -> None:
        """``jsonapi/sendtx`` / ``jsonapi/sendtxbatch``: the reply echoes the request's id
        [docs/others]; its shape is the fake's choice ([fake] in bog.venue.lighter)."""
        typ = msg.get(L.F_TYPE)
        data = msg.get(L.F_DATA)
        rid = data.get(L.F_ID, msg.get(L.F_ID)) if isinstance(data, dict) else msg.get(L.F_ID)
        await self.desk.stall()
        try:
            if not isinstance(data, dict):
                raise TxError(L.ERR_INVALID_TX_INFO, "invalid tx: no data")
            weight = L.SENDTX_WEIGHT
            if self.desk.rate_limited(f"ws:{conn.cid}", weight):
                raise TxError(L.ERR_TOO_MANY_REQUESTS, "Too Many Requests!")
            if typ == L.T_SEND_TX:
                items = [(data.get(L.FORM_TX_TYPE), data.get(L.FORM_TX_INFO))]
            else:
                items = _batch_items(data.get(L.FORM_TX_TYPES), data.get(L.FORM_TX_INFOS))
            hashes = self.desk.submit(items)
        except TxError as e:
            conn.send(dumps({L.F_TYPE: L.T_ERROR, L.F_ID: rid, L.F_CODE: e.code,
                             L.F_MESSAGE: e.message}))
            return
        reply = {L.F_TYPE: typ, L.F_ID: rid}
        reply.update(self._tx_reply(hashes if typ == L.T_SEND_TX_BATCH else hashes[0]))
        conn.send(dumps(reply))

    def _tx_reply(self, tx_hash) -> dict:
        return {L.F_CODE: L.CODE_OK, L.F_MESSAGE: "", L.F_TX_HASH: tx_hash,
                L.F_PREDICTED_MS: time.time_ns() // 1_000_000 + 5, L.F_VOLUME_QUOTA: 1_000_000}

    def on_unsubscribe(self, conn: Conn, msg: dict) -> None:
        name, _, market = str(msg.get(L.F_CHANNEL, "")).partition(L.SUB_SEP)
        try:
            conn.subs.discard((name, int(market)))
        except ValueError:
            pass

    def subscribe_book(self, conn: Conn, m: FakeMarket) -> None:
        conn.send(dumps(m.snapshot_frame()))

    def subscribe_trade(self, conn: Conn, m: FakeMarket) -> None:
        conn.send(dumps(m.trade_frame(L.T_TRADE_SNAPSHOT, [])))

    def broadcast(self, channel: str, market_id: int, text: str, update: bool = False) -> None:
        key = (channel, market_id)
        for c in list(self.conns):
            if key not in c.subs:
                continue
            if update and c.skip_updates > 0:
                c.skip_updates -= 1  # gap fault: this client never gets this update
                continue
            if not c.send(text):
                if not c.closed:
                    self.stats["slow_clients_dropped"] += 1
                    asyncio.get_running_loop().create_task(self._close(c, 1008))

    async def _close(self, conn: Conn, code: int) -> None:
        conn.closed = True
        try:
            await conn.ws.close(code)
        except Exception:  # already closing
            pass

    # -- markets -------------------------------------------------------------------------------
    def emit_update(self, m: FakeMarket) -> None:
        bc, ac, trade = m.step()
        begin, nonce, ts_us = m.apply(bc, ac)
        mid = m.spec.market_id
        if trade is not None:
            self.stats["trades_total"] += 1
            self.broadcast(L.CH_TRADE, mid, dumps(m.trade_frame(L.T_TRADE_UPDATE,
                                                                [trade + (ts_us,)])))
        self.broadcast(L.CH_BOOK, mid,
                       dumps(m.book_frame(L.T_BOOK_UPDATE, bc, ac, begin, nonce, ts_us)), True)
        self.stats["updates_total"] += 1
        if self.desk.resting:  # the trade flow and the moving book fill resting orders
            if trade is not None:
                self.desk.on_taker(m, trade[0], trade[1], trade[2])
            self.desk.on_book(m)

    def publish_book_change(self, m: FakeMarket, bc: dict, ac: dict) -> None:
        """Apply a change made by an order (levels it took) and publish it on the chain."""
        begin, nonce, ts_us = m.apply(bc, ac)
        self.broadcast(L.CH_BOOK, m.spec.market_id,
                       dumps(m.book_frame(L.T_BOOK_UPDATE, bc, ac, begin, nonce, ts_us)), True)
        self.stats["updates_total"] += 1

    def publish_trades(self, m: FakeMarket, trades: list[tuple]) -> None:
        """Own fills on the public tape: (price, size, maker_ask, ts_us, trade_id)."""
        self.stats["trades_total"] += len(trades)
        self.broadcast(L.CH_TRADE, m.spec.market_id,
                       dumps(m.trade_frame(L.T_TRADE_UPDATE, trades)))

    async def run_market(self, m: FakeMarket) -> None:
        """Updates at ``rate_per_s``, on schedule: late ones are sent in a burst (no drift)."""
        if self.rate_per_s <= 0:
            return
        interval = 1.0 / self.rate_per_s
        t0 = time.monotonic()
        sent = 0
        while True:
            due = int((time.monotonic() - t0) / interval) + 1
            if due - sent > self.rate_per_s:  # more than 1 s behind: rebase
                t0 = time.monotonic()
                sent = due = 1
            while sent < due:
                self.emit_update(m)
                sent += 1
            await asyncio.sleep(max(0.0, t0 + sent * interval - time.monotonic()))

    async def run_schedule(self) -> None:
        for kind, at_s, arg in self.scheduled:
            await asyncio.sleep(max(0.0, self.started + at_s - time.monotonic()))
            await self.inject(kind, arg, None)

    # -- faults --------------------------------------------------------------------------------
    async def inject(self, kind: str, arg, market_id) -> int:
        """Apply fault ``kind`` to every connected client; returns how many were affected."""
        ft = self.stats["faults_total"]
        ft[kind] = ft.get(kind, 0) + 1
        log.warning("fake venue: injecting fault %s (arg %s) into %d connections", kind, arg,
                    len(self.conns))
        conns = list(self.conns)
        markets = [self.markets[int(market_id)]] if market_id is not None else list(
            self.markets.values())
        if kind == "gap":
            for c in conns:
                c.skip_updates = int(arg or 1)
        elif kind == "stall":
            for c in conns:
                c.stall_until = time.monotonic() + float(arg or 5.0)
        elif kind == "disconnect":
            for c in conns:
                await self._close(c, 1011)
        elif kind == "account_drop":
            acct_chs = set(self.account_channels)
            for c in conns:
                if any(ch in acct_chs for ch, _ in c.subs):
                    await self._close(c, 1011)
        elif kind == "reject":
            self.desk.reject_next = int(arg or 1)
        elif kind == "tx_stall":
            self.desk.tx_stall_until = time.monotonic() + float(arg or 5.0)
        elif kind == "shutdown":
            ms = int(arg or 200)
            for c in conns:
                c.send(dumps({L.F_TYPE: L.T_SHUTDOWN, L.F_CLOSE_IN_MS: ms}))
            await asyncio.sleep(ms / 1000)
            for c in conns:
                await self._close(c, 1001)
        elif kind == "error":
            for c in conns:
                c.send(dumps({L.F_TYPE: L.T_ERROR, L.F_CODE: int(arg or 30002),
                              L.F_MESSAGE: "fake venue: injected error"}))
        elif kind == "malformed":
            for c in conns:
                c.send('{"type":"update/order_book","channel":"order_book:1","order_book":{')
        elif kind == "unknown_type":
            for c in conns:
                c.send(dumps({L.F_TYPE: "update/mystery", L.F_CHANNEL: "mystery:1"}))
        elif kind == "crossed":
            for m in markets:
                ba = m.best_ask()
                if ba is None:
                    continue
                begin, nonce, ts_us = m.consume_nonce()  # in the chain, not in the fake's book
                bad = {ba + 1: m.lot}
                self.broadcast(L.CH_BOOK, m.spec.market_id, dumps(
                    m.book_frame(L.T_BOOK_UPDATE, bad, {}, begin, nonce, ts_us)), True)
        elif kind == "thin":
            for m in markets:  # take each side down to ``arg`` levels (default 1)
                keep = int(arg or 1)
                m.target = [keep, keep]
                bc = {p: 0 for p in sorted(m.bids, reverse=True)[keep:]}
                ac = {p: 0 for p in sorted(m.asks)[keep:]}
                begin, nonce, ts_us = m.apply(bc, ac)
                self.broadcast(L.CH_BOOK, m.spec.market_id, dumps(
                    m.book_frame(L.T_BOOK_UPDATE, bc, ac, begin, nonce, ts_us)), True)
        else:  # bad field values: never applied, the chain is not advanced
            for m in markets:
                doc = m.book_frame(L.T_BOOK_UPDATE, {}, {}, m.nonce, m.nonce + 1, m.ts_us)
                ob = doc[L.F_ORDER_BOOK]
                bb = m.best_bid() or 1
                lvl = {L.F_PRICE: fmt_units(bb, m.spec.price_decimals), L.F_SIZE: "1"}
                if kind == "nan_price":
                    lvl[L.F_PRICE] = "NaN"
                elif kind == "negative_size":
                    lvl[L.F_SIZE] = "-1.5"
                elif kind == "zero_price":
                    lvl[L.F_PRICE] = "0.00"
                elif kind == "missing_field":
                    del ob[L.F_NONCE]
                elif kind == "bad_type":
                    lvl[L.F_PRICE] = 2325.5  # a JSON number, not a decimal string
                ob[L.F_BIDS] = [lvl]
                self.broadcast(L.CH_BOOK, m.spec.market_id, dumps(doc))
        return len(conns)


def _batch_items(tx_types, tx_infos) -> list[tuple]:
    """sendTxBatch's two lists, each a JSON string [read] (or already a list)."""
    try:
        types = orjson.loads(tx_types) if isinstance(tx_types, str) else tx_types
        infos = orjson.loads(tx_infos) if isinstance(tx_infos, str) else tx_infos
    except orjson.JSONDecodeError:
        raise TxError(L.ERR_INVALID_TX_INFO, "tx_types and tx_infos must be JSON lists") from None
    if not isinstance(types, list) or not isinstance(infos, list) or len(types) != len(infos) \
            or not types:
        raise TxError(L.ERR_INVALID_TX_INFO, "tx_types and tx_infos: two lists of one length")
    if len(types) > L.BATCH_MAX:
        raise TxError(L.ERR_INVALID_TX_INFO, f"at most {L.BATCH_MAX} transactions in a batch")
    return list(zip(types, infos))


def parse_faults(text: str) -> list[tuple[str, float, float | None]]:
    """``gap@5,stall@10:3`` -> [("gap", 5.0, None), ("stall", 10.0, 3.0)]; ValueError if bad."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, rest = item.partition("@")
        at, _, arg = rest.partition(":")
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r} in --faults; known: {', '.join(FAULTS)}")
        try:
            at_s = float(at) if at else 0.0
            arg_v = float(arg) if arg else None
        except ValueError:
            raise ValueError(f"--faults {item!r}: expected kind@seconds[:arg]") from None
        if not math.isfinite(at_s) or at_s < 0:
            raise ValueError(f"--faults {item!r}: time must be >= 0 s")
        out.append((kind, at_s, arg_v))
    return out


def serve(port: int, rate_per_s: float, seed: int, faults: str = "", ping_every_s: float = 30.0,
          host: str = "127.0.0.1", markets: str = "", rate_limit_per_min: int = 0) -> int:
    """Run the fake venue in this process until SIGINT/SIGTERM (uvicorn handles them)."""
    import uvicorn

    want = {m.strip().upper() for m in markets.split(",") if m.strip()}
    specs = tuple(s for s in MARKETS if not want or s.symbol in want) or MARKETS
    venue = FakeVenue(rate_per_s, seed, ping_every_s, parse_faults(faults), specs)
    venue.desk.set_rate_limit(rate_limit_per_min)
    log.info("fake venue on ws://%s:%d%s (REST http://%s:%d%s), %g updates/s per market, "
             "seed %d, markets %s", host, port, L.WS_PATH, host, port, L.REST_PREFIX, rate_per_s,
             seed, ", ".join(f"{m.spec.symbol}={m.spec.market_id}"
                             for m in venue.markets.values()))
    config = uvicorn.Config(venue.app(), host=host, port=port, ws="websockets-sansio",
                            log_level="warning", lifespan="on", ws_max_size=1 << 20,
                            ws_ping_interval=None)
    uvicorn.Server(config).run()
    return 0
