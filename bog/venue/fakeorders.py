"""The fake venue's order and account side (``bog fake-venue``; served by ``bog.venue.fake``).

It accepts the transactions the official signer (``lighter-sdk``) produces, as the venue does
(``bog.venue.lighter``, "orders and accounts"): it parses ``tx_info`` and never verifies the
signature. Per account it keeps the expected nonce of each API key, the resting orders, the
position, every fill and a scheduled cancel-all (the dead-man switch).

Matching, the fake's own model (the real engine's details are unknown):
- An incoming order first takes liquidity from the market's synthetic book (the random walk of
  ``FakeMarket``) at each level's price, up to its limit; the levels it took shrink in the
  published book (an ``update/order_book`` on the nonce chain) and the trade appears on
  ``trade/<id>``. Post-only orders that would take are cancelled (``canceled-post-only``),
  IOC remainders are cancelled, the rest rests.
- Resting orders are not shown in the published book. They fill as maker when the synthetic
  trade flow takes their side at their price or through it (a taker buying at p fills our asks
  priced <= p, best first, up to the taker's size) and when the synthetic book moves through
  them (an ask at or below our bid fills it entirely at our price). ``POST /fake/trade`` injects
  a taker of a given side, price and size, so tests choose exactly what fills.
- Orders of different accounts never match each other; fees are zero (a standard account).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import orjson

from bog.venue import lighter as L

log = logging.getLogger("bog.venue.fake")

FILLS_KEPT = 100_000  # fills kept per account for /fake/account
TRADES_ON_SUBSCRIBE = 50  # recent fills in the subscribed/account_all_trades snapshot [fake]
FAKE_COUNTERPARTY = 1  # account index of the synthetic market's side of every own fill
NONCE_START = 1  # the first expected nonce of an (account, api key) never seen [fake]


class TxError(Exception):
    """A transaction refused before it is applied (nonce untouched): HTTP 400 {code, message}."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Order:
    order_index: int
    client_order_index: int
    account: int
    market_id: int
    is_ask: bool
    price: int  # venue units
    initial: int  # base units
    order_type: int
    tif: int
    nonce: int
    expiry_ms: int
    reduce_only: bool
    remaining: int = 0
    filled: int = 0
    filled_quote: int = 0  # sum price*size in venue units
    status: str = L.ST_OPEN
    created_us: int = 0
    updated_us: int = 0

    def active(self) -> bool:
        return self.status in L.ST_ACTIVE


@dataclass
class Fill:
    trade_id: int
    market_id: int
    order_index: int
    client_order_index: int
    is_ask: bool  # our side
    price: int
    size: int
    is_maker: bool
    fee: int
    ts_us: int
    tx_hash: str


@dataclass
class Account:
    index: int
    nonces: dict = field(default_factory=dict)  # api key -> next expected nonce
    orders: dict = field(default_factory=dict)  # order_index -> Order (active only)
    by_client: dict = field(default_factory=dict)  # client_order_index -> Order (active only)
    position: dict = field(default_factory=dict)  # market_id -> signed base units
    entry_quote: dict = field(default_factory=dict)  # market_id -> |pos| * avg entry (units)
    realized: dict = field(default_factory=dict)  # market_id -> realized pnl (price*size units)
    fills: deque = field(default_factory=lambda: deque(maxlen=FILLS_KEPT))
    cancel_all_at_ms: int = 0
    cancel_all_handle: asyncio.TimerHandle | None = None
    total_orders: int = 0
    cancel_all_fired: int = 0
    cancel_all_aborts: int = 0  # abort transactions (TIF 2) taken, a scheduled one or not


def tx_hash_of(tx_type: int, tx_info: str) -> str:
    """80 hex characters, like the venue's [read: the signer's tx hash is 40 bytes]."""
    return hashlib.blake2b(f"{tx_type}:{tx_info}".encode(), digest_size=40).hexdigest()


class OrderDesk:
    """Accounts, orders and matching for a ``FakeVenue`` (``venue``): its markets, connections
    and ``broadcast``/``publish_book_change`` are used to emit frames."""

    def __init__(self, venue):
        self.venue = venue
        self.accounts: dict[int, Account] = {}
        self.next_order_index = L.ORDER_INDEX_BASE + 1
        self.resting = 0  # active resting orders over all accounts: 0 skips the market hooks
        self.reject_next = 0  # fault: refuse the next N transactions ...
        self.reject_code = L.ERR_TOO_MANY_PENDING  # ... with this code
        self.tx_stall_until = 0.0  # fault: transactions wait until then before being handled
        self.rate_limit_per_min = 0  # weighted requests a minute per client address; 0: off
        self._buckets: dict[str, list[float]] = {}  # addr -> [tokens, last refill (monotonic)]
        self.stats = {"txs_total": 0, "txs_rejected": {}, "orders_total": 0, "fills_total": 0,
                      "cancel_all_fired_total": 0, "rate_limited_total": 0,
                      "silent_trades_total": 0}

    # -- accounts ------------------------------------------------------------------------------
    def account(self, index: int) -> Account:
        a = self.accounts.get(index)
        if a is None:
            a = self.accounts[index] = Account(index)
        return a

    def next_nonce(self, account: int, api_key: int) -> int:
        return self.account(account).nonces.get(api_key, NONCE_START)

    # -- rate limit ----------------------------------------------------------------------------
    def rate_limited(self, addr: str, weight: int) -> bool:
        """Token bucket of ``rate_limit_per_min`` weighted requests a minute per address."""
        cap = self.rate_limit_per_min
        if cap <= 0:
            return False
        now = time.monotonic()
        b = self._buckets.get(addr)
        if b is None:
            b = self._buckets[addr] = [float(cap), now]
        b[0] = min(float(cap), b[0] + (now - b[1]) * cap / 60.0)
        b[1] = now
        if b[0] < weight:
            self.stats["rate_limited_total"] += 1
            log.warning("fake venue: rate limited %s (%d a minute)", addr, cap)
            return True
        b[0] -= weight
        return False

    def set_rate_limit(self, per_min: int) -> None:
        self.rate_limit_per_min = int(per_min)
        self._buckets.clear()

    # -- transactions --------------------------------------------------------------------------
    async def stall(self) -> None:
        wait = self.tx_stall_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def _count_reject(self, code: int) -> None:
        r = self.stats["txs_rejected"]
        r[str(code)] = r.get(str(code), 0) + 1

    @staticmethod
    def parse_tx(tx_type, tx_info) -> tuple[int, dict, str]:
        """(tx type, tx_info dict, tx_info text) or TxError(ERR_INVALID_TX_INFO)."""
        try:
            t = int(tx_type)
        except (TypeError, ValueError):
            raise TxError(L.ERR_UNSUPPORTED_TX_TYPE, f"invalid tx type {tx_type!r}") from None
        if isinstance(tx_info, dict):
            info, text = tx_info, orjson.dumps(tx_info).decode()
        else:
            text = tx_info if isinstance(tx_info, str) else ""
            try:
                info = orjson.loads(text)
            except orjson.JSONDecodeError:
                info = None
        if not isinstance(info, dict):
            raise TxError(L.ERR_INVALID_TX_INFO, "invalid tx info")
        return t, info, text

    def check(self, t: int, info: dict, nonces: dict) -> tuple[Account, int, int]:
        """Validate the envelope of one tx against ``nonces`` ((account, key) -> expected, the
        batch's running view). Returns (account, api key, nonce); TxError if refused."""
        if t not in (L.TX_CREATE_ORDER, L.TX_CANCEL_ORDER, L.TX_CANCEL_ALL):
            raise TxError(L.ERR_UNSUPPORTED_TX_TYPE, f"tx type {t} is not supported by the fake")
        try:
            acct = _int(info, L.TXI_ACCOUNT)
            key = _int(info, L.TXI_API_KEY)
            nonce = _int(info, L.TXI_NONCE)
            expired_at = _int(info, L.TXI_EXPIRED_AT)
        except (KeyError, TypeError, ValueError) as e:
            raise TxError(L.ERR_INVALID_TX_INFO, f"invalid tx info: {e}") from None
        if not isinstance(info.get(L.TXI_SIG), str) or not info[L.TXI_SIG]:
            raise TxError(L.ERR_INVALID_TX_INFO, "invalid tx info: no signature")
        if self.reject_next > 0:
            self.reject_next -= 1
            raise TxError(self.reject_code, "fake venue: injected rejection")
        if expired_at < time.time_ns() // 1_000_000:
            raise TxError(L.ERR_INVALID_EXPIRY, "transaction expired")
        a = self.account(acct)
        want = nonces.get((acct, key), a.nonces.get(key, NONCE_START))
        if nonce != want:
            raise TxError(L.ERR_INVALID_NONCE, f"invalid nonce: expected {want}, got {nonce}")
        return a, key, nonce

    def submit(self, items: list[tuple]) -> list[str]:
        """Apply transactions [(tx_type, tx_info)] all or nothing: every one is checked (nonces
        in sequence) before any is applied [fake: the venue's batch semantics are unknown].
        Returns their tx hashes; TxError if one is refused (nothing applied, nonces untouched)."""
        parsed = []
        nonces: dict = {}
        try:
            for tx_type, tx_info in items:
                t, info, text = self.parse_tx(tx_type, tx_info)
                a, key, nonce = self.check(t, info, nonces)
                self.validate(t, info, a)
                nonces[(a.index, key)] = nonce + 1
                parsed.append((t, info, text, a))
        except TxError as e:
            self.stats["txs_total"] += len(items)
            self._count_reject(e.code)
            log.warning("fake venue: tx refused: %d %s", e.code, e.message)
            raise
        for (acct, key), n in nonces.items():
            self.account(acct).nonces[key] = n
        hashes = []
        for t, info, text, a in parsed:
            self.stats["txs_total"] += 1
            h = tx_hash_of(t, text)
            hashes.append(h)
            if t == L.TX_CREATE_ORDER:
                self.create(a, info, h)
            elif t == L.TX_CANCEL_ORDER:
                self.cancel(a, info)
            else:
                self.cancel_all(a, info)
        return hashes

    def validate(self, t: int, info: dict, a: Account) -> None:
        """Refusals that leave the nonce untouched [fake: the venue may accept some of these
        and fail the tx later]."""
        try:
            if t == L.TX_CREATE_ORDER:
                mid = _int(info, L.TXI_MARKET)
                if mid not in self.venue.markets:
                    raise TxError(L.ERR_INVALID_MARKET, f"invalid market index {mid}")
                coi = _int(info, L.TXI_CLIENT_ORDER)
                if not 0 <= coi <= L.CLIENT_ORDER_INDEX_MAX:
                    raise TxError(L.ERR_INVALID_CLIENT_ORDER_INDEX, "invalid client order index")
                if coi in a.by_client:
                    raise TxError(L.ERR_CLIENT_ORDER_INDEX_EXISTS,
                                  "client order index already exists")
                base = _int(info, L.TXI_BASE_AMOUNT)
                if base <= 0 or base < self.venue.markets[mid].min_base_units:
                    raise TxError(L.ERR_INVALID_BASE_AMOUNT, "invalid base amount")
                price = _int(info, L.TXI_PRICE)
                if not 1 <= price <= L.PRICE_MAX:
                    raise TxError(L.ERR_INVALID_PRICE, "invalid price")
                if _int(info, L.TXI_ORDER_TYPE) not in (L.ORDER_TYPE_LIMIT, L.ORDER_TYPE_MARKET):
                    raise TxError(L.ERR_INVALID_ORDER_TYPE, "order type not supported by the fake")
                if _int(info, L.TXI_TIF) not in (L.TIF_IOC, L.TIF_GTT, L.TIF_POST_ONLY):
                    raise TxError(L.ERR_INVALID_TIF, "invalid time in force")
                _int(info, L.TXI_IS_ASK)
            elif t == L.TX_CANCEL_ORDER:
                _int(info, L.TXI_MARKET)
                idx = _int(info, L.TXI_ORDER_INDEX)
                o = a.orders.get(idx) or a.by_client.get(idx)
                if o is None or not o.active():
                    raise TxError(L.ERR_ORDER_NOT_ACTIVE, "given order is not an active order")
            else:
                tif = _int(info, L.TXI_TIF)
                if tif not in (L.CANCEL_ALL_NOW, L.CANCEL_ALL_SCHEDULED, L.CANCEL_ALL_ABORT):
                    raise TxError(L.ERR_INVALID_CANCEL_ALL_TIF, "invalid cancel all time in force")
                if tif == L.CANCEL_ALL_SCHEDULED and \
                        _int(info, L.TXI_TIME) <= time.time_ns() // 1_000_000:
                    raise TxError(L.ERR_INVALID_CANCEL_ALL_TIME, "invalid cancel all time")
        except (KeyError, TypeError, ValueError) as e:
            raise TxError(L.ERR_INVALID_TX_INFO, f"invalid tx info: {e}") from None

    # -- orders --------------------------------------------------------------------------------
    def create(self, a: Account, info: dict, tx_hash: str) -> None:
        now = _now_us()
        m = self.venue.markets[int(info[L.TXI_MARKET])]
        base = int(info[L.TXI_BASE_AMOUNT])
        o = Order(self.next_order_index, int(info[L.TXI_CLIENT_ORDER]), a.index,
                  m.spec.market_id, bool(int(info[L.TXI_IS_ASK])), int(info[L.TXI_PRICE]), base,
                  int(info[L.TXI_ORDER_TYPE]), int(info[L.TXI_TIF]), int(info[L.TXI_NONCE]),
                  int(info.get(L.TXI_ORDER_EXPIRY, 0)), bool(info.get(L.TXI_REDUCE_ONLY, 0)),
                  remaining=base, created_us=now, updated_us=now)
        self.next_order_index += 1
        a.total_orders += 1
        self.stats["orders_total"] += 1
        ioc = o.tif == L.TIF_IOC or o.order_type == L.ORDER_TYPE_MARKET
        # what it would take from the synthetic book
        book = m.bids if o.is_ask else m.asks
        levels = sorted(book, reverse=o.is_ask)
        crossing = [p for p in levels if (p >= o.price if o.is_ask else p <= o.price)]
        if crossing and o.tif == L.TIF_POST_ONLY:
            o.status = L.ST_CANCELED_POST_ONLY
            self.emit_orders(a, [o])
            return
        fills = []
        changes = {}
        left = base
        for p in crossing:
            if left == 0:
                break
            q = min(book[p], left)
            changes[p] = book[p] - q
            fills.append((p, q))
            left -= q
        if not ioc:  # it rests (unless its fills below take all of it)
            a.orders[o.order_index] = o
            a.by_client[o.client_order_index] = o
            self.resting += 1
        if fills:
            bc, ac = (changes, {}) if o.is_ask else ({}, changes)
            self.venue.publish_book_change(m, bc, ac)
        self.emit_orders(a, [o])  # the ack (open) first, then its fills
        for p, q in fills:
            self.fill(a, o, p, q, is_maker=False, tx_hash=tx_hash)
        if ioc and o.remaining > 0:  # an IOC's rest is cancelled [fake: status name unknown]
            self.finish(a, o, L.ST_CANCELED)
            self.emit_orders(a, [o])

    def cancel(self, a: Account, info: dict) -> None:
        idx = int(info[L.TXI_ORDER_INDEX])
        o = a.orders.get(idx) or a.by_client.get(idx)
        if o is not None and o.active():
            self.finish(a, o, L.ST_CANCELED)
            self.emit_orders(a, [o])

    def cancel_all(self, a: Account, info: dict) -> None:
        tif = int(info[L.TXI_TIF])
        # [fake: whether an immediate cancel-all also drops a scheduled one is unknown; the
        # fake drops it. So that a disarm (abort) after it stays observable, aborts are
        # counted in /fake/account "cancel_all_aborts"]
        if a.cancel_all_handle is not None:  # re-armed, aborted or superseded by "now"
            a.cancel_all_handle.cancel()
            a.cancel_all_handle = None
            a.cancel_all_at_ms = 0
        if tif == L.CANCEL_ALL_NOW:
            self.cancel_everything(a, "cancel-all")
        elif tif == L.CANCEL_ALL_SCHEDULED:
            at_ms = int(info[L.TXI_TIME])
            a.cancel_all_at_ms = at_ms
            delay = max(0.0, at_ms / 1000 - time.time())
            a.cancel_all_handle = asyncio.get_running_loop().call_later(
                delay, self.fire_cancel_all, a)
            log.info("fake venue: account %d: cancel-all scheduled in %.3f s", a.index, delay)
        else:
            a.cancel_all_aborts += 1
            log.info("fake venue: account %d: scheduled cancel-all aborted", a.index)

    def fire_cancel_all(self, a: Account) -> None:
        a.cancel_all_handle = None
        a.cancel_all_at_ms = 0
        a.cancel_all_fired += 1
        self.stats["cancel_all_fired_total"] += 1
        n = self.cancel_everything(a, "scheduled cancel-all")
        log.warning("fake venue: account %d: scheduled cancel-all fired, %d orders cancelled",
                    a.index, n)

    def cancel_everything(self, a: Account, why: str) -> int:
        done = [o for o in list(a.orders.values()) if o.active()]
        for o in done:
            self.finish(a, o, L.ST_CANCELED)
        if done:
            self.emit_orders(a, done)
        return len(done)

    def finish(self, a: Account, o: Order, status: str) -> None:
        o.status = status
        o.updated_us = _now_us()
        if a.orders.pop(o.order_index, None) is not None:
            self.resting -= 1
        a.by_client.pop(o.client_order_index, None)

    def fill(self, a: Account, o: Order, price: int, size: int, *, is_maker: bool,
             tx_hash: str) -> Fill:
        m = self.venue.markets[o.market_id]
        ts = _now_us()
        tid = m.new_trade_id()
        f = Fill(tid, o.market_id, o.order_index, o.client_order_index, o.is_ask, price, size,
                 is_maker, 0, ts, tx_hash)
        o.remaining -= size
        o.filled += size
        o.filled_quote += price * size
        o.updated_us = ts
        if o.remaining == 0:
            self.finish(a, o, L.ST_FILLED)
        self._position(a, o.market_id, -size if o.is_ask else size, price)
        a.fills.append(f)
        self.stats["fills_total"] += 1
        self.emit_trade(a, f)
        self.emit_orders(a, [o])
        self.emit_position(a, o.market_id)
        # the public trade tape shows it too (maker side: ours if we rested)
        maker_ask = o.is_ask if is_maker else not o.is_ask
        self.venue.publish_trades(m, [(price, size, maker_ask, ts, tid)])
        return f

    def book_silently(self, account: int, mid: int, size: int, price: int) -> int:
        """``POST /fake/position``: the account's position moves by ``size`` at ``price`` and
        no frame says so (only the REST account state shows it). Returns the new position."""
        a = self.account(account)
        self._position(a, mid, size, price)
        self.stats["silent_trades_total"] += 1
        log.warning("fake venue: account %d: position moved by %d at %d, unreported (now %d)",
                    a.index, size, price, a.position[mid])
        return a.position[mid]

    def _position(self, a: Account, mid: int, delta: int, price: int) -> None:
        pos = a.position.get(mid, 0)
        eq = a.entry_quote.get(mid, 0)
        new = pos + delta
        if pos == 0 or (pos > 0) == (delta > 0):  # opening or adding
            eq += abs(delta) * price
        else:
            closed = min(abs(delta), abs(pos))
            avg_eq = eq * closed // abs(pos)
            pnl = closed * price - avg_eq if pos > 0 else avg_eq - closed * price
            a.realized[mid] = a.realized.get(mid, 0) + pnl
            eq -= avg_eq
            if abs(delta) > abs(pos):  # flipped: the rest opens at this price
                eq = (abs(delta) - abs(pos)) * price
        a.position[mid] = new
        a.entry_quote[mid] = eq if new else 0

    # -- the market's hooks (called by FakeVenue on every synthetic update) --------------------
    def on_taker(self, m, price: int, size: int, taker_buys: bool) -> None:
        """A synthetic taker of ``size`` at ``price`` (its worst price): fills our resting orders
        on the other side priced at or through it, best first, up to ``size``."""
        if self.resting == 0:
            return
        mid = m.spec.market_id
        cands = [(a, o) for a in self.accounts.values() for o in a.orders.values()
                 if o.market_id == mid and o.is_ask == taker_buys and
                 (o.price <= price if taker_buys else o.price >= price)]
        cands.sort(key=lambda ao: (ao[1].price if taker_buys else -ao[1].price,
                                   ao[1].order_index))
        left = size
        for a, o in cands:
            if left <= 0:
                break
            q = min(left, o.remaining)
            left -= q
            self.fill(a, o, o.price, q, is_maker=True,
                      tx_hash=tx_hash_of(0, f"taker:{mid}:{m.nonce}:{o.order_index}"))

    def on_book(self, m) -> None:
        """After a synthetic update: our orders the book moved through fill entirely."""
        if self.resting == 0:
            return
        bb, ba = m.best_bid(), m.best_ask()
        mid = m.spec.market_id
        for a in list(self.accounts.values()):
            for o in list(a.orders.values()):
                if o.market_id != mid or not o.active():
                    continue
                if (not o.is_ask and ba is not None and ba <= o.price) or \
                        (o.is_ask and bb is not None and bb >= o.price):
                    self.fill(a, o, o.price, o.remaining, is_maker=True,
                              tx_hash=tx_hash_of(0, f"cross:{mid}:{m.nonce}:{o.order_index}"))

    # -- frames --------------------------------------------------------------------------------
    def order_doc(self, o: Order) -> dict:
        s = self.venue.markets[o.market_id].spec
        pd, sd = s.price_decimals, s.size_decimals
        return {
            L.O_ORDER_INDEX: o.order_index, L.O_CLIENT_ORDER_INDEX: o.client_order_index,
            L.O_ORDER_ID: str(o.order_index), L.O_CLIENT_ORDER_ID: str(o.client_order_index),
            L.O_MARKET_INDEX: o.market_id, L.O_OWNER: o.account,
            L.O_INITIAL_BASE: _fmt(o.initial, sd), L.O_PRICE: _fmt(o.price, pd),
            L.O_NONCE: o.nonce, L.O_REMAINING_BASE: _fmt(o.remaining, sd),
            L.O_IS_ASK: o.is_ask, L.O_BASE_SIZE: o.remaining, L.O_BASE_PRICE: o.price,
            L.O_FILLED_BASE: _fmt(o.filled, sd),
            L.O_FILLED_QUOTE: _fmt(o.filled_quote, sd + pd),
            L.O_SIDE: "ask" if o.is_ask else "bid",
            L.O_TYPE: L.ORDER_TYPE_NAMES.get(o.order_type, "limit"),
            L.O_TIF: L.TIF_NAMES.get(o.tif, "Unknown"), L.O_REDUCE_ONLY: o.reduce_only,
            L.O_TRIGGER_PRICE: _fmt(0, pd), L.O_ORDER_EXPIRY: o.expiry_ms, L.O_STATUS: o.status,
            L.O_TIMESTAMP: o.updated_us // 1_000_000, L.O_CREATED_AT: o.created_us // 1000,
            L.O_UPDATED_AT: o.updated_us // 1000, L.O_TRANSACTION_TIME: o.updated_us,
        }

    def trade_doc(self, a: Account, f: Fill) -> dict:
        s = self.venue.markets[f.market_id].spec
        pd, sd = s.price_decimals, s.size_decimals
        maker_ask = f.is_ask if f.is_maker else not f.is_ask
        ours = (f.order_index, a.index, f.client_order_index)
        theirs = (0, FAKE_COUNTERPARTY, 0)
        ask, bid = (ours, theirs) if f.is_ask else (theirs, ours)
        return {
            L.TR_TRADE_ID: f.trade_id, L.TR_TX_HASH: f.tx_hash, L.TR_TYPE: "trade",
            L.TR_MARKET_ID: f.market_id, L.TR_SIZE: _fmt(f.size, sd),
            L.TR_PRICE: _fmt(f.price, pd), L.TR_USD_AMOUNT: _fmt(f.price * f.size, pd + sd),
            L.TR_ASK_ID: ask[0], L.TR_BID_ID: bid[0], L.TR_ASK_ACCOUNT: ask[1],
            L.TR_BID_ACCOUNT: bid[1], L.TR_ASK_CLIENT_ID: ask[2], L.TR_BID_CLIENT_ID: bid[2],
            L.TR_IS_MAKER_ASK: maker_ask, L.TR_BLOCK_HEIGHT: f.trade_id,
            L.TR_TIMESTAMP: f.ts_us // 1000, L.TR_TRANSACTION_TIME: f.ts_us,
            # taker_fee / maker_fee: omitted when zero, as the venue does [docs]
        }

    def position_doc(self, a: Account, mid: int) -> dict:
        s = self.venue.markets[mid].spec
        pd, sd = s.price_decimals, s.size_decimals
        pos = a.position.get(mid, 0)
        eq = a.entry_quote.get(mid, 0)
        avg = (eq // abs(pos)) if pos else 0
        n = sum(1 for o in a.orders.values() if o.market_id == mid)
        return {
            L.P_MARKET_ID: mid, L.P_SYMBOL: s.symbol, "initial_margin_fraction": "0.00",
            L.P_OPEN_ORDER_COUNT: n, L.P_PENDING_ORDER_COUNT: 0,
            "position_tied_order_count": 0, L.P_SIGN: (pos > 0) - (pos < 0),
            L.P_POSITION: _fmt(abs(pos), sd), L.P_AVG_ENTRY: _fmt(avg, pd),
            L.P_POSITION_VALUE: _fmt(abs(pos) * avg, sd + pd), L.P_UNREALIZED_PNL: "0.000000",
            L.P_REALIZED_PNL: _fmt_signed(a.realized.get(mid, 0), sd + pd),
            "liquidation_price": "0", "margin_mode": 0, "allocated_margin": "0.000000",
        }

    def emit_orders(self, a: Account, orders: list[Order]) -> None:
        by_market: dict = {}
        for o in orders:
            by_market.setdefault(str(o.market_id), []).append(self.order_doc(o))
        self._emit(L.CH_ACCOUNT_ALL_ORDERS, a.index, {L.F_ORDERS: by_market})

    def emit_trade(self, a: Account, f: Fill) -> None:
        self._emit(L.CH_ACCOUNT_ALL_TRADES, a.index,
                   {L.F_TRADES: {str(f.market_id): [self.trade_doc(a, f)]}})

    def emit_position(self, a: Account, mid: int) -> None:
        self._emit(L.CH_ACCOUNT_ALL_POSITIONS, a.index,
                   {L.F_POSITIONS: {str(mid): self.position_doc(a, mid)}, "shares": []})

    def _emit(self, channel: str, account: int, body: dict) -> None:
        doc = {L.F_TYPE: L.T_UPDATE_PREFIX + channel,
               L.F_CHANNEL: L.account_reply_channel(channel, account), L.F_ACCOUNT: account}
        doc.update(body)
        self.venue.broadcast(channel, account, orjson.dumps(doc).decode())

    def snapshot(self, channel: str, account: int) -> dict:
        a = self.account(account)
        doc = {L.F_TYPE: L.T_SUBSCRIBED_PREFIX + channel,
               L.F_CHANNEL: L.account_reply_channel(channel, account), L.F_ACCOUNT: account}
        if channel == L.CH_ACCOUNT_ALL_ORDERS:
            by_market: dict = {}
            for o in a.orders.values():
                by_market.setdefault(str(o.market_id), []).append(self.order_doc(o))
            doc[L.F_ORDERS] = by_market
        elif channel == L.CH_ACCOUNT_ALL_TRADES:
            by_market = {}
            for f in list(a.fills)[-TRADES_ON_SUBSCRIBE:]:
                by_market.setdefault(str(f.market_id), []).append(self.trade_doc(a, f))
            doc[L.F_TRADES] = by_market
        else:
            doc[L.F_POSITIONS] = {str(mid): self.position_doc(a, mid) for mid in a.position}
            doc["shares"] = []
        return doc

    # -- REST documents ------------------------------------------------------------------------
    def account_doc(self, index: int) -> dict:
        a = self.account(index)
        return {
            L.F_CODE: 0, "account_type": 0, L.A_INDEX: a.index, "l1_address": "",
            L.A_CANCEL_ALL_TIME: a.cancel_all_at_ms, L.A_TOTAL_ORDER_COUNT: len(a.orders),
            "total_isolated_order_count": 0, "pending_order_count": 0,
            "available_balance": "1000000.000000", "status": 1,
            L.A_COLLATERAL: "1000000.000000", L.A_ACCOUNT_INDEX: a.index, "name": "",
            "description": "", L.A_POSITIONS: [self.position_doc(a, mid) for mid in a.position],
            "assets": [], "total_asset_value": "1000000.000000",
            "cross_asset_value": "1000000.000000", "shares": [],
            "transaction_time": _now_us(),
        }

    def truth(self, index: int) -> dict:
        """``GET /fake/account``: the fake's own view, integers in venue units."""
        a = self.account(index)
        return {
            "account": a.index,
            "positions": {str(k): v for k, v in a.position.items()},
            "realized_pnl": {str(k): v for k, v in a.realized.items()},
            "open_orders": [{"order_index": o.order_index,
                             "client_order_index": o.client_order_index,
                             "market_id": o.market_id, "is_ask": o.is_ask, "price": o.price,
                             "initial": o.initial, "remaining": o.remaining,
                             "status": o.status} for o in a.orders.values()],
            "fills": [f.__dict__ for f in a.fills],
            "nonces": {str(k): v for k, v in a.nonces.items()},
            "cancel_all_at_ms": a.cancel_all_at_ms, "cancel_all_fired": a.cancel_all_fired,
            "cancel_all_aborts": a.cancel_all_aborts,
            "orders_total": a.total_orders,
        }


def _int(info: dict, key: str) -> int:
    v = info[key]
    if type(v) is bool or not isinstance(v, int):
        raise TypeError(f"{key} is not an integer")
    return v


def _fmt(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    q, r = divmod(units, 10 ** decimals)
    return f"{q}.{r:0{decimals}d}"


def _fmt_signed(units: int, decimals: int) -> str:
    return ("-" if units < 0 else "") + _fmt(abs(units), decimals)


def _now_us() -> int:
    return time.time_ns() // 1000
