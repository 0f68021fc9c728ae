"""``VenueSession``: bog's side of Lighter's order protocol, for the gateway process.

Lifecycle (one asyncio loop, the gateway's):

1. ``VenueSession(...)``, then ``run()`` as a task: resolve the market's decimals (REST
   ``/orderBooks``), fetch the nonce (``/nextNonce``), connect the WebSocket, wait for
   ``connected``, make an auth token and subscribe to ``account_all_orders/<acct>`` and
   ``account_all_trades/<acct>``; keepalive (an application ping when quiet), a reconnect with
   capped jittered back-off on any loss (``bog.venue.ws``), the token renewed (and the account
   channels resubscribed) at 3/4 of its life. ``close()`` ends it.
2. ``place`` / ``cancel`` / ``replace`` / ``cancel_all`` / ``arm_dead_man`` /
   ``disarm_dead_man``: sign with an explicit local nonce (the native sign call, ~0.4 ms, runs in
   one signing thread so the loop keeps reading meanwhile; measured into
   ``stats.last_sign_ns``), send over the WebSocket
   (``jsonapi/sendtx``, ``jsonapi/sendtxbatch``) and, when the socket is down or does not
   answer in time, the same signed bytes over HTTP (``/sendTx``, ``/sendTxBatch``). Txs go one
   at a time (a lock covers sign -> reply) so nonces reach the venue in order. An
   invalid-nonce reply (21104) refetches the nonce and re-signs and resends once; any other
   refusal leaves the nonce where it was (the venue did not take it).
3. Frames of the account channels become events for ``on_event`` (see below): an order seen
   resting is ``Acked``; ``canceled`` / ``canceled-expired`` are ``Cancelled``; any other final
   ``canceled-...`` status is the venue refusing the order (a post-only that would take, ...):
   ``Rejected`` with bog's code for it (``L.STATUS_REJECT_CODES``, counted by code); every trade of ours is ``Filled`` exactly once per venue trade id (ids seen are
   kept across reconnects, ``seen_trade_ids`` seeds them after a restart).
4. ``reconcile()``: the venue's REST account state (position, open orders) as a
   ``PositionSnapshot``; orders bog believes open that the venue no longer lists (and that no
   frame mentioned for a grace period) are reported ``Cancelled(reason="gone")``.

``dry_run=True``: every tx is signed and logged ("dry-run: would send ...", never key
material) and nothing is sent; the session still reads (nonce, account channels).

Every refusal, error or oddity is counted in ``stats`` and logged with a greppable line
("Venue order rejected", "Venue nonce refetched", "Venue send fell back to HTTP",
"Venue account frame rejected", "Venue session disconnected", ...). All ints in events are
venue integers (``base_amount = size * 10**size_decimals``, ``price = price *
10**price_decimals``), never bog's FIXED.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterable

import orjson

from bog.log import RateLimiter
from bog.venue import lighter as L
from bog.venue.ws import Backoff, connect_options

log = logging.getLogger("bog.gateway.venue")

WS_REPLY_TIMEOUT_S = 2.0  # a sendtx without a reply this long goes again over HTTP
HTTP_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
STALL_TIMEOUT_S = 30.0  # account channels can be quiet: pings at half of it keep it honest
AUTH_RENEW_FRACTION = 0.75  # renew the auth token at 3/4 of its life
GONE_GRACE_S = 2.0  # an order absent from REST this long after its last news is gone
CODE_TRANSPORT = -1  # Rejected.code when neither the socket nor HTTP got an answer
CODE_UNKNOWN = -2  # the socket copy may have landed: wait for the account channel/reconcile
CODE_DRY_RUN = 0


def _timed(sign, nonce: int):
    """(signed tx, ns it took): run in the signing thread."""
    t = time.perf_counter_ns()
    tx = sign(nonce)
    return tx, time.perf_counter_ns() - t


# ---- events (passed to on_event) ------------------------------------------------------------
@dataclass(frozen=True)
class Connected:
    up: bool
    why: str


@dataclass(frozen=True)
class Acked:
    client_order_index: int
    order_index: int
    ts_ns: int


@dataclass(frozen=True)
class Rejected:
    client_order_index: int
    code: int
    message: str


@dataclass(frozen=True)
class Cancelled:
    client_order_index: int
    reason: str  # "canceled" (by us or a cancel-all), "expired", "gone" (refusals: Rejected)


@dataclass(frozen=True)
class Filled:
    trade_id: int
    client_order_index: int
    is_ask: bool
    price: int
    base_amount: int
    fee: int
    is_maker: bool
    ts_ns: int


@dataclass(frozen=True)
class PositionSnapshot:
    base_amount: int  # signed: long > 0
    open_orders: dict[int, int]  # client_order_index -> venue order_index


@dataclass
class VenueStats:
    """Plain counters and gauges the gateway copies into its metrics block."""

    connected: int = 0
    sent_total: int = 0  # txs handed to the venue (each tx of a batch counts)
    batches_total: int = 0
    acked_total: int = 0
    rejected_total: int = 0
    rejects_by_code: dict = field(default_factory=dict)
    cancelled_total: int = 0
    fills_total: int = 0
    fills_duplicate_total: int = 0  # trade ids seen again (replays after a resubscribe)
    nonce_refetches_total: int = 0
    reconnects_total: int = 0
    http_fallback_total: int = 0
    send_errors_total: int = 0  # neither socket nor HTTP answered
    rate_limited_total: int = 0
    frames_rejected_total: int = 0
    auth_renewals_total: int = 0
    dry_run_total: int = 0  # txs signed and logged, not sent
    gone_total: int = 0  # orders reconcile found missing on the venue
    dead_man_armed: int = 0
    dead_man_expiry_ms: int = 0
    last_sign_ns: int = 0
    sign_ns_total: int = 0
    signs_total: int = 0
    in_flight: int = 0  # orders placed, not yet acked/rejected
    open_orders: int = 0
    last_send_ns: int = 0  # intent handed to place() -> bytes written (excl. signing)


@dataclass
class _Order:
    client_order_index: int
    is_ask: bool
    price: int
    base_amount: int
    order_index: int = -1  # the venue's, once seen
    acked: bool = False
    last_news: float = 0.0  # monotonic: last tx sent or frame seen about it


class VenueError(RuntimeError):
    """A venue request that cannot be answered (one line)."""


class VenueSession:
    def __init__(self, *, ws_url: str, account_index: int, api_key_index: int,
                 market_index: int, signer, on_event: Callable[[object], None],
                 dry_run: bool = False, seen_trade_ids: Iterable[int] = (),
                 size_decimals: int | None = None, price_decimals: int | None = None,
                 auth_expiry_s: int = L.AUTH_DEFAULT_S, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 30.0):
        if signer is None and not dry_run:
            raise ValueError("VenueSession needs a signer to trade")
        self.ws_url = ws_url
        self.rest = L.rest_base(ws_url)
        self.account_index = int(account_index)
        self.api_key_index = int(api_key_index)
        self.market_index = int(market_index)
        self.signer = signer
        self.on_event = on_event
        self.dry_run = dry_run
        self.size_decimals, self.price_decimals = size_decimals, price_decimals
        self.auth_expiry_s = int(auth_expiry_s)
        self.backoff = Backoff(backoff_initial_s, backoff_max_s)
        self.stats = VenueStats()
        self.seen_trade_ids: set[int] = set(int(t) for t in seen_trade_ids)
        self.orders: dict[int, _Order] = {}  # client_order_index -> order, while active
        self.by_index: dict[int, int] = {}  # venue order_index -> client_order_index
        self.nonce: int | None = None  # the next nonce to use
        self.ws = None
        self.token: str | None = None
        self.token_renew_at = 0.0  # monotonic: make a new token from then on
        self.sub_renew_at = 0.0  # monotonic: resubscribe the account channels then
        self.closing = False
        self.limiter = RateLimiter(burst=5, period_s=10.0)
        self._tx_lock = asyncio.Lock()
        # signing (native code, ~0.4 ms per tx here, ~3 ms on the main thread) runs off the
        # loop in this one thread: signed in order
        self._sign_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="bog-sign")
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._ch_orders = L.account_reply_channel(L.CH_ACCOUNT_ALL_ORDERS, self.account_index)
        self._ch_trades = L.account_reply_channel(L.CH_ACCOUNT_ALL_TRADES, self.account_index)
        self._up = asyncio.Event()
        self.last_frame = time.monotonic()
        self.last_sent = time.monotonic()

    def __repr__(self) -> str:
        return (f"VenueSession(account={self.account_index}, key={self.api_key_index}, "
                f"market={self.market_index}, url={self.ws_url!r}, dry_run={self.dry_run})")

    # ---- public: orders ----------------------------------------------------------------------
    async def place(self, *, client_order_index: int, is_ask: bool, price: int,
                    base_amount: int, post_only: bool = True) -> None:
        t0 = time.perf_counter_ns()
        o = _Order(client_order_index, bool(is_ask), int(price), int(base_amount))
        self.orders[client_order_index] = o
        o.last_news = time.monotonic()
        self.stats.in_flight += 1

        def sign(n):
            return self.signer.create_order(
                market_index=self.market_index, client_order_index=client_order_index,
                base_amount=o.base_amount, price=o.price, is_ask=o.is_ask,
                post_only=post_only, nonce=n)

        code, msg = await self._submit([sign], f"place {client_order_index}", t0)
        if code not in (L.CODE_OK, CODE_DRY_RUN, CODE_UNKNOWN):
            self._reject(client_order_index, code, msg)

    async def cancel(self, client_order_index: int) -> None:
        o = self.orders.get(client_order_index)
        # the venue order index once known; before that, the client order index names it
        idx = o.order_index if o is not None and o.order_index >= 0 else client_order_index
        if o is not None:
            o.last_news = time.monotonic()

        def sign(n):
            return self.signer.cancel_order(market_index=self.market_index, order_index=idx,
                                            nonce=n)

        code, msg = await self._submit([sign], f"cancel {client_order_index}")
        if code not in (L.CODE_OK, CODE_DRY_RUN, CODE_UNKNOWN):
            self._count_reject(code)
            log.warning("Venue cancel refused: client order %d code %d: %s",
                        client_order_index, code, msg)

    async def replace(self, cancel_client_order_index: int, *, client_order_index: int,
                      is_ask: bool, price: int, base_amount: int, post_only: bool = True) -> None:
        """A requote: the cancel and the new order in one ``sendTxBatch`` (consecutive nonces,
        one round trip). A refusal rejects the new order (the cancel is reported like
        ``cancel``'s)."""
        t0 = time.perf_counter_ns()
        old = self.orders.get(cancel_client_order_index)
        idx = old.order_index if old is not None and old.order_index >= 0 \
            else cancel_client_order_index
        o = _Order(client_order_index, bool(is_ask), int(price), int(base_amount))
        self.orders[client_order_index] = o
        o.last_news = time.monotonic()
        self.stats.in_flight += 1

        def sign_cancel(n):
            return self.signer.cancel_order(market_index=self.market_index, order_index=idx,
                                            nonce=n)

        def sign_place(n):
            return self.signer.create_order(
                market_index=self.market_index, client_order_index=client_order_index,
                base_amount=o.base_amount, price=o.price, is_ask=o.is_ask,
                post_only=post_only, nonce=n)

        code, msg = await self._submit([sign_cancel, sign_place],
                                       f"replace {cancel_client_order_index} -> "
                                       f"{client_order_index}", t0)
        if code not in (L.CODE_OK, CODE_DRY_RUN, CODE_UNKNOWN):
            self._reject(client_order_index, code, msg)

    async def cancel_all(self) -> None:
        await self._cancel_all(L.CANCEL_ALL_NOW, 0, "cancel-all")

    async def arm_dead_man(self, window_s: float) -> None:
        """Schedule a venue-side cancel-all at now + ``window_s`` (replacing the previous
        one): re-arm well inside the window, or the venue cancels everything."""
        expiry_ms = int(time.time() * 1000 + window_s * 1000)
        if await self._cancel_all(L.CANCEL_ALL_SCHEDULED, expiry_ms, "dead-man arm"):
            self.stats.dead_man_armed = 1
            self.stats.dead_man_expiry_ms = expiry_ms

    async def disarm_dead_man(self) -> None:
        if await self._cancel_all(L.CANCEL_ALL_ABORT, 0, "dead-man disarm"):
            self.stats.dead_man_armed = 0
            self.stats.dead_man_expiry_ms = 0

    async def _cancel_all(self, tif: int, time_ms: int, what: str) -> bool:
        def sign(n):
            return self.signer.cancel_all(time_in_force=tif, time_ms=time_ms, nonce=n)

        code, msg = await self._submit([sign], what)
        if code not in (L.CODE_OK, CODE_DRY_RUN):
            self._count_reject(code)
            log.error("Venue %s refused: code %d: %s", what, code, msg)
            return False
        return code == L.CODE_OK

    def open_orders(self) -> dict[int, int]:
        """client_order_index -> venue order_index of the orders the venue has acked."""
        return {c: o.order_index for c, o in self.orders.items() if o.acked}

    # ---- public: account state ---------------------------------------------------------------
    async def reconcile(self) -> PositionSnapshot:
        """The venue's REST account state for this market: position and open orders."""
        await self._ensure_market()
        q = {L.Q_BY: "index", L.Q_VALUE: str(self.account_index)}
        status, doc = await self._http("GET", L.REST_ACCOUNT, query=q)
        if status != 200 or not isinstance(doc, dict):
            raise VenueError(f"venue account state: HTTP {status} {str(doc)[:120]}")
        base = 0
        try:
            acct = doc[L.A_ACCOUNTS][0]
            for p in acct.get(L.A_POSITIONS) or ():
                if int(p[L.P_MARKET_ID]) == self.market_index:
                    base = int(p[L.P_SIGN]) * self._units(p[L.P_POSITION], self.size_decimals)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise VenueError(f"venue account state: unexpected reply ({e!r})") from None
        q = {L.Q_ACCOUNT_INDEX: str(self.account_index), L.Q_MARKET_ID: str(self.market_index),
             L.Q_AUTH: self._token()}
        status, doc = await self._http("GET", L.REST_ACTIVE_ORDERS, query=q,
                                       headers={L.H_AUTHORIZATION: self._token()})
        if status != 200 or not isinstance(doc, dict):
            raise VenueError(f"venue open orders: HTTP {status} {str(doc)[:120]}")
        venue: dict[int, int] = {}
        try:
            for od in doc.get(L.F_ORDERS) or ():
                venue[int(od[L.O_CLIENT_ORDER_INDEX])] = int(od[L.O_ORDER_INDEX])
        except (KeyError, TypeError, ValueError) as e:
            raise VenueError(f"venue open orders: unexpected reply ({e!r})") from None
        now = time.monotonic()
        for coi, idx in venue.items():
            o = self.orders.get(coi)
            if o is None:
                log.warning("Venue reconcile: order %d (venue %d) is open on the venue but "
                            "unknown to this session; tracking it", coi, idx)
                o = self.orders[coi] = _Order(coi, False, 0, 0)
            if not o.acked:
                self._ack(o, idx, time.time_ns())
        for coi, o in list(self.orders.items()):
            if coi not in venue and now - o.last_news > GONE_GRACE_S:
                self.stats.gone_total += 1
                log.warning("Venue reconcile: order %d is not open on the venue any more; "
                            "reporting it cancelled (gone)", coi)
                self._finish(coi, Cancelled(coi, "gone"))
        return PositionSnapshot(base, venue)

    # ---- the connection -----------------------------------------------------------------------
    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        sessions = 0
        while not self.closing:
            started = time.monotonic()
            why = "closed"
            try:
                await self._ensure_market()
                async with connect(self.ws_url, **connect_options(CONNECT_TIMEOUT_S)) as ws:
                    sessions += 1
                    if sessions > 1:
                        self.stats.reconnects_total += 1
                    why = await self._session(ws)
            except ConnectionClosed as e:
                why = f"closed (code {e.rcvd.code if e.rcvd else 'none'})"
            except (OSError, TimeoutError, asyncio.TimeoutError, InvalidHandshake,
                    InvalidURI, VenueError) as e:
                why = f"{type(e).__name__}: {e}"
            finally:
                self._down()
            if self.closing:
                break
            self.backoff.session_ended(time.monotonic() - started)
            delay = 0.0 if why.startswith("shutdown") else self.backoff.next()
            log.warning("Venue session disconnected: %s; reconnecting in %.2f s", why, delay)
            self.on_event(Connected(False, why))
            end = time.monotonic() + delay
            while not self.closing and time.monotonic() < end:
                await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
        self.on_event(Connected(False, "closed by bog"))

    async def close(self) -> None:
        self.closing = True
        self._sign_pool.shutdown(wait=False)  # a signature under way ends in its thread
        ws = self.ws
        if ws is not None:
            await ws.close()

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._up.wait(), timeout_s)

    async def _session(self, ws) -> str:
        raw = await asyncio.wait_for(ws.recv(decode=False), CONNECT_TIMEOUT_S)
        try:
            first = orjson.loads(raw)
        except orjson.JSONDecodeError:
            first = None
        if not isinstance(first, dict) or first.get(L.F_TYPE) != L.T_CONNECTED:
            self._frame_reject(f"expected a '{L.T_CONNECTED}' frame first, got "
                               f"{bytes(raw[:80])!r}")
            return "protocol: no connected frame"
        self.ws = ws
        self.last_frame = self.last_sent = time.monotonic()
        if self.nonce is None:
            try:
                await self._fetch_nonce()
            except VenueError:
                pass  # counted and logged; the next tx asks again
        await self._subscribe(ws)
        self.stats.connected = 1
        self._up.set()
        log.info("Venue session connected: %s, account %d, channels %s and %s", self.ws_url,
                 self.account_index, self._ch_orders, self._ch_trades)
        self.on_event(Connected(True, "connected"))
        keep = asyncio.create_task(self._keepalive(ws))
        try:
            async for raw in ws:
                self.last_frame = time.monotonic()
                why = self._on_frame(raw)
                if why:
                    return why
            return "closed by the venue"
        finally:
            keep.cancel()

    async def _subscribe(self, ws) -> None:
        self.token = self._new_token()
        self.sub_renew_at = self.token_renew_at
        for ch in (L.CH_ACCOUNT_ALL_ORDERS, L.CH_ACCOUNT_ALL_TRADES):
            await ws.send(orjson.dumps({L.F_TYPE: L.T_SUBSCRIBE, L.F_CHANNEL:
                                        L.account_channel(ch, self.account_index),
                                        L.F_AUTH: self.token}).decode())
        self.last_sent = time.monotonic()

    def _new_token(self) -> str:
        self.token_renew_at = time.monotonic() + self.auth_expiry_s * AUTH_RENEW_FRACTION
        return self.signer.auth_token(self.auth_expiry_s) if self.signer is not None else ""

    def _token(self) -> str:
        if self.token is None or time.monotonic() >= self.token_renew_at:
            self.token = self._new_token()
        return self.token

    async def _keepalive(self, ws) -> None:
        pinged = 0.0
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now >= self.sub_renew_at:
                self.stats.auth_renewals_total += 1
                log.info("Venue auth token renewed (%d s life); resubscribing the account "
                         "channels", self.auth_expiry_s)
                for ch in (L.CH_ACCOUNT_ALL_ORDERS, L.CH_ACCOUNT_ALL_TRADES):
                    await ws.send(orjson.dumps({L.F_TYPE: L.T_UNSUBSCRIBE, L.F_CHANNEL:
                                                L.account_channel(ch, self.account_index)}
                                               ).decode())
                await self._subscribe(ws)
            quiet = now - self.last_frame
            if quiet > STALL_TIMEOUT_S:
                log.warning("Venue session silent: no frame for %.1f s; reconnecting", quiet)
                ws.transport.abort()
                return
            if (quiet > STALL_TIMEOUT_S / 2 and pinged < self.last_frame) or \
                    now - self.last_sent > L.APP_PING_INTERVAL_S:
                pinged = self.last_sent = now
                await ws.send('{"type":"ping"}')

    def _down(self) -> None:
        self.ws = None
        self.stats.connected = 0
        self._up.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))
        self._pending.clear()

    # ---- sending ------------------------------------------------------------------------------
    async def _submit(self, signs: list, what: str, t0: int | None = None) -> tuple[int, str]:
        """Sign with the next nonces and send (one tx or a batch); (code, message). Retries
        once after refetching the nonce on an invalid-nonce reply."""
        async with self._tx_lock:
            for attempt in (0, 1):
                if self.nonce is None:
                    try:
                        await self._fetch_nonce()
                    except VenueError as e:
                        if not self.dry_run:
                            return CODE_TRANSPORT, str(e)
                        self.nonce = 0  # dry-run: sign with a made-up nonce, send nothing
                txs = [await self._sign(s, self.nonce + i) for i, s in enumerate(signs)]
                if any(tx is None for tx in txs):
                    return CODE_TRANSPORT, "signing failed"
                if self.dry_run:
                    for tx_type, tx_info in txs:
                        self.stats.dry_run_total += 1
                        log.info("dry-run: would send %s: tx_type %d tx_info %s", what,
                                 tx_type, tx_info)
                    self.nonce += len(txs)
                    return CODE_DRY_RUN, "dry-run"
                code, msg, ambiguous = await self._send(txs, t0)
                if code == L.ERR_INVALID_NONCE and ambiguous:
                    # the HTTP copy of a tx whose socket copy got no reply: the nonce is
                    # probably taken by that very tx. Resending would double it.
                    self.nonce = None
                    self.stats.send_errors_total += 1
                    log.warning("Venue send outcome unknown: %s: no reply on the socket, and "
                                "its HTTP copy was refused by nonce (%s); the account channel "
                                "or reconcile will tell whether it landed", what, msg)
                    return CODE_UNKNOWN, msg
                if code == L.CODE_OK:
                    self.nonce += len(txs)
                    return code, msg
                if code == L.ERR_INVALID_NONCE and attempt == 0:
                    self.stats.nonce_refetches_total += 1
                    stale = self.nonce
                    try:
                        await self._fetch_nonce()
                    except VenueError as e:
                        self.nonce = None
                        return CODE_TRANSPORT, str(e)
                    log.warning("Venue nonce refetched: %s got invalid nonce %d (%s); the venue "
                                "expects %d; resending once", what, stale, msg, self.nonce)
                    continue
                if code == CODE_TRANSPORT:
                    self.nonce = None  # unknown whether it landed: ask the venue next time
                    if ambiguous:  # the socket copy went out: it may have landed
                        return CODE_UNKNOWN, msg
                return code, msg
        return code, msg  # pragma: no cover (the loop always returns)

    async def _sign(self, sign, nonce: int):
        """One signature in the signing thread (the loop goes on reading intents, replies and
        frames meanwhile); the caller holds ``_tx_lock``, so nonces are signed and sent in
        order. Only the closure over the order's fields and the nonce cross to the thread."""
        if self.signer is None:  # dry-run without a key: log the intent unsigned
            return 0, f"(unsigned, nonce {nonce})"
        try:
            tx, dt = await asyncio.get_running_loop().run_in_executor(
                self._sign_pool, _timed, sign, nonce)
        except Exception as e:  # SignerError: one line, never key material
            self.stats.send_errors_total += 1
            log.error("Venue signing failed: %s", e)
            return None
        s = self.stats
        s.last_sign_ns = dt
        s.sign_ns_total += dt
        s.signs_total += 1
        return tx

    async def _send(self, txs: list, t0: int | None) -> tuple[int, str, bool]:
        """(code, message, ambiguous): ambiguous when the socket copy went out without a
        reply and the answer is the HTTP copy's."""
        batch = len(txs) > 1
        ws = self.ws
        if ws is not None:
            rid = next(self._ids)
            if batch:
                data = {L.F_ID: rid, L.FORM_TX_TYPES: orjson.dumps([t for t, _ in txs]).decode(),
                        L.FORM_TX_INFOS: orjson.dumps([i for _, i in txs]).decode()}
                frame = {L.F_TYPE: L.T_SEND_TX_BATCH, L.F_DATA: data}
            else:
                data = {L.F_ID: rid, L.FORM_TX_TYPE: txs[0][0],
                        L.FORM_TX_INFO: orjson.Fragment(txs[0][1])}
                frame = {L.F_TYPE: L.T_SEND_TX, L.F_DATA: data}
            fut = asyncio.get_running_loop().create_future()
            self._pending[rid] = fut
            try:
                await ws.send(orjson.dumps(frame).decode())
                self._sent(len(txs), batch, t0)
                reply = await asyncio.wait_for(fut, WS_REPLY_TIMEOUT_S)
                return *self._reply(reply), False
            except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError) as e:
                why = "no reply in time" if isinstance(e, (asyncio.TimeoutError,
                                                           TimeoutError)) else "socket closed"
            except Exception as e:  # websockets.ConnectionClosed and friends
                why = f"{type(e).__name__}"
            finally:
                self._pending.pop(rid, None)
        else:
            why = "socket down"
        ambiguous = why != "socket down"
        self.stats.http_fallback_total += 1
        log.warning("Venue send fell back to HTTP: %s", why)
        if batch:
            form = {L.FORM_TX_TYPES: orjson.dumps([t for t, _ in txs]).decode(),
                    L.FORM_TX_INFOS: orjson.dumps([i for _, i in txs]).decode()}
            path = L.REST_SEND_TX_BATCH
        else:
            form = {L.FORM_TX_TYPE: str(txs[0][0]), L.FORM_TX_INFO: txs[0][1]}
            path = L.REST_SEND_TX
        status, doc = await self._http("POST", path, form=form)
        if status == 0:
            self.stats.send_errors_total += 1
            log.error("Venue send failed: no answer over the socket nor HTTP (%s)", doc)
            return CODE_TRANSPORT, str(doc), ambiguous
        self._sent(len(txs), batch, t0)
        if not isinstance(doc, dict) or L.F_CODE not in doc:
            code = L.ERR_TOO_MANY_REQUESTS if status == L.HTTP_RATE_LIMITED else status
            doc = {L.F_CODE: code, L.F_MESSAGE: f"HTTP {status} {str(doc)[:120]}"}
        return *self._reply(doc), ambiguous

    def _sent(self, n: int, batch: bool, t0: int | None) -> None:
        s = self.stats
        s.sent_total += n
        s.batches_total += batch
        self.last_sent = time.monotonic()
        if t0 is not None:
            s.last_send_ns = time.perf_counter_ns() - t0 - s.last_sign_ns * n

    def _reply(self, doc: dict) -> tuple[int, str]:
        code = doc.get(L.F_CODE)
        if type(code) is not int:
            return CODE_TRANSPORT, f"reply without a code: {str(doc)[:120]}"
        if code == L.ERR_TOO_MANY_REQUESTS:
            self.stats.rate_limited_total += 1
            log.warning("Venue rate limited: %s", str(doc.get(L.F_MESSAGE))[:120])
        return code, str(doc.get(L.F_MESSAGE, ""))[:200]

    async def _fetch_nonce(self) -> None:
        q = {L.Q_ACCOUNT_INDEX: str(self.account_index),
             L.Q_API_KEY_INDEX: str(self.api_key_index)}
        status, doc = await self._http("GET", L.REST_NEXT_NONCE, query=q)
        try:
            if status != 200:
                raise ValueError(f"HTTP {status}")
            n = doc[L.F_NEXT_NONCE]
            if type(n) is not int or n < 0:
                raise ValueError(f"nonce {n!r}")
        except (ValueError, KeyError, TypeError) as e:
            self.stats.send_errors_total += 1
            log.error("Venue nonce fetch failed: %s %s", e, str(doc)[:120])
            raise VenueError(f"cannot fetch the nonce from {self.rest}: {e}") from None
        self.nonce = n

    async def _http(self, method: str, path: str, *, query: dict | None = None,
                    form: dict | None = None, headers: dict | None = None):
        """(HTTP status, decoded JSON or text) in a worker thread; (0, why) if unreachable."""
        url = self.rest + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})

        def call():
            try:
                with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
                    status, raw = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, raw = e.code, e.read()
            except (urllib.error.URLError, OSError) as e:
                return 0, str(getattr(e, "reason", None) or e)
            try:
                return status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return status, raw[:200].decode("utf-8", "replace")

        return await asyncio.to_thread(call)

    async def _ensure_market(self) -> None:
        if self.size_decimals is not None and self.price_decimals is not None:
            return
        status, doc = await self._http("GET", L.REST_ORDER_BOOKS)
        try:
            for b in doc[L.MARKETS_KEY]:
                if int(b[L.F_MARKET_ID]) == self.market_index:
                    self.size_decimals = int(b[L.F_SIZE_DECIMALS])
                    self.price_decimals = int(b[L.F_PRICE_DECIMALS])
                    return
        except (KeyError, TypeError, ValueError):
            pass
        raise VenueError(f"market {self.market_index} not found in {self.rest}"
                         f"{L.REST_ORDER_BOOKS} (HTTP {status})")

    # ---- frames -------------------------------------------------------------------------------
    def _on_frame(self, raw) -> str:
        """Handle one frame; a non-empty return ends the session with that reason."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._frame_reject(f"not JSON: {bytes(raw[:80]) if isinstance(raw, bytes) else raw[:80]!r}")
            return ""
        if type(msg) is not dict:
            self._frame_reject(f"not an object: {str(msg)[:80]}")
            return ""
        t = msg.get(L.F_TYPE)
        if t in (L.T_SEND_TX, L.T_SEND_TX_BATCH) or (L.F_ID in msg and t == L.T_ERROR):
            self._on_tx_reply(msg)
            return ""
        if t == L.T_ERROR:
            if self._pending:  # an error frame without an id: the oldest in-flight tx's
                self._on_tx_reply(msg)
                return ""
            self._frame_reject(f"error frame code {msg.get(L.F_CODE)}: "
                               f"{str(msg.get(L.F_MESSAGE))[:120]}")
            return ""
        if t == L.T_PING:
            asyncio.ensure_future(self._send_text('{"type":"pong"}'))
            return ""
        if t == L.T_PONG or t == L.T_CONNECTED:
            return ""
        if t == L.T_SHUTDOWN:
            return f"shutdown frame (close_in_ms {msg.get(L.F_CLOSE_IN_MS)})"
        ch = msg.get(L.F_CHANNEL)
        try:
            if ch == self._ch_orders:
                self._on_orders(msg)
            elif ch == self._ch_trades:
                self._on_trades(msg)
            elif isinstance(t, str) and t.startswith(L.T_SUBSCRIBED_PREFIX):
                pass  # other subscriptions' acks
            else:
                self._frame_reject(f"unexpected frame type {str(t)[:40]!r} channel "
                                   f"{str(ch)[:40]!r}")
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as e:
            self._frame_reject(f"{str(ch)[:40]}: bad field ({type(e).__name__}: {e})")
        return ""

    async def _send_text(self, text: str) -> None:
        ws = self.ws
        if ws is not None:
            try:
                await ws.send(text)
                self.last_sent = time.monotonic()
            except Exception:  # the connection is going down; the receive loop sees it
                pass

    def _on_tx_reply(self, msg: dict) -> None:
        rid = msg.get(L.F_ID)
        if rid is None and isinstance(msg.get(L.F_DATA), dict):
            rid = msg[L.F_DATA].get(L.F_ID)
        if rid is None and self._pending:
            rid = next(iter(self._pending))
        fut = self._pending.get(rid)
        if fut is None or fut.done():
            self._frame_reject(f"tx reply for no request in flight (id {rid!r})")
            return
        fut.set_result(msg)

    def _on_orders(self, msg: dict) -> None:
        by_market = msg.get(L.F_ORDERS) or {}
        now_ns = time.time_ns()
        for od in by_market.get(str(self.market_index)) or ():
            coi = int(od[L.O_CLIENT_ORDER_INDEX])
            idx = int(od[L.O_ORDER_INDEX])
            status = od[L.O_STATUS]
            o = self.orders.get(coi)
            if o is None:
                if status in L.ST_ACTIVE:
                    log.warning("Venue order %d (venue %d) is open but unknown to this "
                                "session; tracking it", coi, idx)
                    o = self.orders[coi] = _Order(coi, bool(od[L.O_IS_ASK]), 0, 0)
                else:
                    continue  # the end of an order already reported (or another session's)
            o.last_news = time.monotonic()
            if status in L.ST_ACTIVE:
                if not o.acked:
                    self._ack(o, idx, now_ns)
            elif status == L.ST_FILLED:
                self._finish(coi, None)  # the Filled events come from the trades channel
            elif status in (L.ST_CANCELED, L.ST_CANCELED_EXPIRED):
                reason = status[len(L.ST_CANCELED_PREFIX) + 1:] or "canceled"
                self._finish(coi, Cancelled(coi, reason))
            elif isinstance(status, str) and status.startswith(L.ST_CANCELED_PREFIX):
                # the venue refused the order itself (a post-only that would take, ...):
                # a rejection with bog's code for the status
                code = L.STATUS_REJECT_CODES.get(status, L.STATUS_REJECT_OTHER)
                self._count_reject(code)
                log.warning("Venue order rejected: client order %d code %d: %s", coi, code,
                            status)
                self._finish(coi, Rejected(coi, code, status))
            else:
                self._frame_reject(f"order {coi} with unknown status {str(status)[:40]!r}")

    def _on_trades(self, msg: dict) -> None:
        by_market = msg.get(L.F_TRADES) or {}
        for tr in by_market.get(str(self.market_index)) or ():
            tid = int(tr[L.TR_TRADE_ID])
            if tid in self.seen_trade_ids:
                self.stats.fills_duplicate_total += 1
                continue
            me = self.account_index
            ask_mine = tr.get(L.TR_ASK_ACCOUNT) == me
            bid_mine = tr.get(L.TR_BID_ACCOUNT) == me
            if not (ask_mine or bid_mine):
                self._frame_reject(f"trade {tid} is not this account's")
                continue
            price = self._units(tr[L.TR_PRICE], self.price_decimals)
            size = self._units(tr[L.TR_SIZE], self.size_decimals)
            ts = tr.get(L.TR_TRANSACTION_TIME) or tr.get(L.TR_TIMESTAMP)
            ts_ns = L.timestamp_ns(ts) if ts else time.time_ns()
            maker_ask = bool(tr[L.TR_IS_MAKER_ASK])
            self.seen_trade_ids.add(tid)
            # a self-trade is two fills of ours: the ask's and the bid's
            for is_ask in ((True,) if ask_mine else ()) + ((False,) if bid_mine else ()):
                coi = int(tr[L.TR_ASK_CLIENT_ID if is_ask else L.TR_BID_CLIENT_ID])
                is_maker = maker_ask == is_ask
                fee = int(tr.get(L.TR_MAKER_FEE if is_maker else L.TR_TAKER_FEE) or 0)
                o = self.orders.get(coi)
                if o is not None:
                    o.last_news = time.monotonic()
                    o.base_amount -= size
                self.stats.fills_total += 1
                self.on_event(Filled(tid, coi, is_ask, price, size, fee, is_maker, ts_ns))

    # ---- order table --------------------------------------------------------------------------
    def _ack(self, o: _Order, idx: int, ts_ns: int) -> None:
        if self.stats.in_flight > 0:
            self.stats.in_flight -= 1
        o.acked = True
        o.order_index = idx
        self.by_index[idx] = o.client_order_index
        self.stats.acked_total += 1
        self.stats.open_orders = sum(1 for x in self.orders.values() if x.acked)
        self.on_event(Acked(o.client_order_index, idx, ts_ns))

    def _finish(self, coi: int, event) -> None:
        o = self.orders.pop(coi, None)
        if o is None:
            return
        if not o.acked and self.stats.in_flight > 0:
            self.stats.in_flight -= 1
        self.by_index.pop(o.order_index, None)
        self.stats.open_orders = sum(1 for x in self.orders.values() if x.acked)
        if event is not None:
            if isinstance(event, Cancelled):
                self.stats.cancelled_total += 1
            self.on_event(event)

    def _reject(self, coi: int, code: int, msg: str) -> None:
        self._count_reject(code)
        log.warning("Venue order rejected: client order %d code %d: %s", coi, code, msg)
        o = self.orders.pop(coi, None)
        if o is not None and not o.acked and self.stats.in_flight > 0:
            self.stats.in_flight -= 1
        self.on_event(Rejected(coi, code, msg))

    def _count_reject(self, code: int) -> None:
        s = self.stats
        s.rejected_total += 1
        s.rejects_by_code[code] = s.rejects_by_code.get(code, 0) + 1

    def _frame_reject(self, detail: str) -> None:
        self.stats.frames_rejected_total += 1
        ok, suppressed = self.limiter.allow(detail[:30])
        if ok:
            log.warning("Venue account frame rejected: %s%s", detail,
                        f" (suppressed {suppressed} similar)" if suppressed else "")

    @staticmethod
    def _units(text, decimals: int) -> int:
        """A decimal string in human units -> venue integer units (exact, or ValueError)."""
        v = Decimal(str(text)).scaleb(decimals)
        if v != v.to_integral_value():
            raise ValueError(f"{text!r} has more than {decimals} decimals")
        return int(v)
