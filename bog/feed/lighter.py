"""Live market data from Lighter: a WebSocket client that keeps an exact L2 book in the ring.

Lifecycle (inside the feed process, ``FeedService``):

1. ``LighterSource(cfg, ring, metrics)`` at startup: resolve the market (symbol or id) from the
   venue's REST market list (``resolve_market``: id, decimals, tick, minimum size; an unknown
   symbol is a one-line error listing the available ones), write the tick and minimum size
   into the ticks ring's control words for the engine, compile the book kernel.
2. ``run_forever(service)``: an asyncio loop with two tasks. ``_connect_loop`` connects
   (``websockets``), waits for ``connected``, subscribes to the book and the trades, and feeds
   every frame to ``on_frame``; on any disconnect, error frame or silent stall it reconnects
   after a capped, jittered back-off (a ``shutdown`` frame reconnects at once).
   ``_housekeeping`` runs the feed's housekeeping every period, detects a silent stall (no
   frame for ``venue.stall_timeout_s`` with the socket open: an application ping at half the
   timeout, a reconnect at the timeout) and keeps the client keepalive.
3. ``on_frame`` (per frame, the hot path): orjson decode, field checks, continuity
   (``begin_nonce`` must equal the previous ``nonce``), then one kernel call
   (``bog.feed.lighterbook.frame_apply``) parses the decimals to fixed point, applies the frame
   to the book and publishes the top 10 into the ticks ring. Exchange time is the frame's,
   receive time is taken when the frame is handed over by the WebSocket library.

Bad input never reaches the ring: each rejected frame is counted by reason
(``bog_venue_frames_rejected_total``) and logged ("Venue frame rejected: ...", rate-limited).
When the book loses continuity (a nonce gap, a crossed book, a disconnect) the feed publishes
one marker snapshot flagged ``FLAG_BOOK_INVALID`` with no prices and a skipped sequence number:
the engine counts a sequence gap and cancels its quotes; the next snapshot published is the
fresh one after the resubscribe.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import orjson

from bog.config import ConfigError
from bog.feed import lighterbook as LB
from bog.log import RateLimiter
from bog.shm.codes import VENUE_DOWN, VENUE_FRAME, VENUE_REJECT
from bog.shm.layouts import (
    FIXED,
    RING_MIN_SIZE_FIXED,
    RING_SIZE_STEP_FIXED,
    RING_TICK_FIXED,
)
from bog.venue import lighter as L
from bog.venue.ws import Backoff, connect_options

log = logging.getLogger("bog.feed.lighter")

VENUE_ID = 1  # ring market_id = VENUE_ID * 1_000_000 + the venue's market index
MAX_RESYNCS_PER_SESSION = 5  # resubscribes without a good snapshot before a full reconnect


class VenueError(ConfigError):
    """The venue cannot be used as configured (unreachable, unknown market); one line."""


@dataclass(frozen=True)
class MarketInfo:
    symbol: str
    market_id: int
    size_decimals: int
    price_decimals: int
    min_size_fixed: int

    @property
    def tick_fixed(self) -> int:
        return 10 ** (9 - self.price_decimals)

    @property
    def size_step_fixed(self) -> int:
        return 10 ** (9 - self.size_decimals)


def _get_json(url: str, timeout_s: float):
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        raise VenueError(f"venue market list {url}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or e
        raise VenueError(f"cannot reach the venue's market list {url}: {why}") from None
    except orjson.JSONDecodeError:
        raise VenueError(f"venue market list {url}: not JSON") from None


def _fixed(text, what: str) -> int:
    try:
        v = Decimal(str(text)) * FIXED
    except InvalidOperation:
        raise VenueError(f"venue market list: {what} = {text!r} is not a decimal") from None
    if v != v.to_integral_value() or v < 0:
        raise VenueError(f"venue market list: {what} = {text!r} not representable x1e9")
    return int(v)


def resolve_market(rest: str, market: str, timeout_s: float) -> MarketInfo:
    """Symbol or numeric id -> MarketInfo from ``GET /orderBooks``; raises VenueError."""
    url = rest + L.REST_ORDER_BOOKS
    doc = _get_json(url, timeout_s)
    books = doc.get(L.MARKETS_KEY) if isinstance(doc, dict) else None
    if not isinstance(books, list):
        raise VenueError(f"venue market list {url}: no '{L.MARKETS_KEY}' list in the reply")
    want = market.strip()
    found = None
    for b in books:
        if not isinstance(b, dict):
            continue
        if str(b.get(L.F_SYMBOL, "")).upper() == want.upper() or (
                want.isdigit() and b.get(L.F_MARKET_ID) == int(want)):
            found = b
            break
    if found is None:
        avail = ", ".join(f"{b.get(L.F_SYMBOL)} ({b.get(L.F_MARKET_ID)})" for b in books
                          if isinstance(b, dict))
        raise VenueError(f"market {market!r} is not listed by {url}; available: {avail}")
    try:
        mid = int(found[L.F_MARKET_ID])
        sd = int(found[L.F_SIZE_DECIMALS])
        pd = int(found[L.F_PRICE_DECIMALS])
    except (KeyError, TypeError, ValueError) as e:
        raise VenueError(f"venue market list {url}: market {market!r} lacks {e}") from None
    for name, d in (("size", sd), ("price", pd)):
        if not 0 <= d <= L.MAX_DECIMALS:
            raise VenueError(f"market {market!r}: {d} {name} decimals; bog's fixed point "
                             f"(x1e9) takes at most {L.MAX_DECIMALS}")
    min_size = _fixed(found.get(L.F_MIN_BASE, "0"), L.F_MIN_BASE)
    return MarketInfo(str(found.get(L.F_SYMBOL, want)), mid, sd, pd, min_size)


class LighterSource:
    """The feed's ``lighter`` source: ``run(0)`` compiles, ``run_forever`` streams."""

    done = False

    def __init__(self, cfg, ring, metrics):
        v = cfg.venue
        self.cfg = v
        self.ring, self.metrics = ring, metrics
        url = L.ws_url(v.network, v.url)
        self.rest = L.rest_base(url)
        if v.readonly and L.READONLY_QUERY not in url:
            url += ("&" if "?" in url else "?") + L.READONLY_QUERY
        self.url = url
        self.market = resolve_market(self.rest, v.market, v.rest_timeout_s)
        mk = self.market
        self.ring_market_id = VENUE_ID * 1_000_000 + mk.market_id
        self.book_channel = L.reply_channel(L.CH_BOOK, mk.market_id)
        self.trade_channel = L.reply_channel(L.CH_TRADE, mk.market_id)
        self.sub_book = orjson.dumps(L.subscribe_frame(L.CH_BOOK, mk.market_id)).decode()
        self.unsub_book = orjson.dumps({L.F_TYPE: L.T_UNSUBSCRIBE, L.F_CHANNEL:
                                        f"{L.CH_BOOK}{L.SUB_SEP}{mk.market_id}"}).decode()
        self.sub_trade = orjson.dumps(L.subscribe_frame(L.CH_TRADE, mk.market_id)).decode()
        ring.ctrl[RING_TICK_FIXED] = mk.tick_fixed
        ring.ctrl[RING_MIN_SIZE_FIXED] = mk.min_size_fixed
        ring.ctrl[RING_SIZE_STEP_FIXED] = mk.size_step_fixed
        m = metrics.m[0]
        m["venue_enabled"] = 1
        m["venue_market_index"] = mk.market_id
        m["venue_tick_fixed"] = mk.tick_fixed
        m["venue_min_size_fixed"] = mk.min_size_fixed
        m["rate_target_per_s"] = 0.0
        self.frames = metrics.m["venue_frames_total"][0]  # views into shared memory
        self.rejects = metrics.m["venue_frames_rejected_total"][0]
        self.book = LB.Book(v.book_max_levels)
        io = self.book.io
        io[LB.IO_MARKET] = self.ring_market_id
        io[LB.IO_PUBLISH] = 1
        self.seq = 0  # ring sequence of the last snapshot published
        self.book_ready = False
        self.expected_nonce = 0
        self.resyncs_in_session = 0
        self.limiter = RateLimiter(burst=5, period_s=10.0)
        self.ws = None
        self.outbox: list[str] = []
        self.end_reason: int | None = None  # set to end the current session
        self.end_detail = ""
        self.last_frame = time.monotonic()
        self.pinged_at = 0.0
        self.last_sent = time.monotonic()
        self.stop = False
        self.handlers = {
            L.T_BOOK_UPDATE: self._on_book_update,
            L.T_BOOK_SNAPSHOT: self._on_book_snapshot,
            L.T_TRADE_UPDATE: self._on_trade,
            L.T_TRADE_SNAPSHOT: self._on_trade_snapshot,
            L.T_PING: self._on_ping,
            L.T_PONG: self._on_pong,
            L.T_SHUTDOWN: self._on_shutdown,
            L.T_ERROR: self._on_error,
            L.T_CONNECTED: self._on_connected,
        }
        log.info("venue %s market %s (id %d, price decimals %d, size decimals %d, tick %s, "
                 "min size %s), ring market_id %d", self.url, mk.symbol, mk.market_id,
                 mk.price_decimals, mk.size_decimals, mk.tick_fixed / FIXED,
                 mk.min_size_fixed / FIXED, self.ring_market_id)

    # -- FeedService interface -------------------------------------------------------------------
    def run(self, stop_ns: int) -> int:
        """Only used at startup, to compile the kernel before the feed declares itself ready."""
        LB.warm()
        return 0

    def run_forever(self, service) -> None:
        asyncio.run(self._main(service))

    async def _main(self, service) -> None:
        hk = asyncio.create_task(self._housekeeping(service))
        try:
            await self._connect_loop()
        finally:
            hk.cancel()
            self._set(venue_connected=0)

    # -- connection life -------------------------------------------------------------------------
    async def _connect_loop(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        v = self.cfg
        backoff = Backoff(v.backoff_initial_s, v.backoff_max_s)
        sessions = 0
        while not self.stop:
            self.end_reason, self.end_detail = None, ""
            started = time.monotonic()
            up = False
            try:
                async with connect(self.url, **connect_options(v.connect_timeout_s)) as ws:
                    self.ws = ws
                    up = True
                    sessions += 1
                    if sessions > 1:
                        self.metrics.m[0]["venue_reconnects_total"] += 1
                    await self._session(ws)
            except ConnectionClosed as e:
                if self.end_reason is None:
                    self._end(VENUE_DOWN.CLOSED, f"code {e.rcvd.code if e.rcvd else 'none'}"
                              f"{' ' + e.rcvd.reason if e.rcvd and e.rcvd.reason else ''}")
            except (OSError, TimeoutError, asyncio.TimeoutError, InvalidHandshake,
                    InvalidURI) as e:
                if self.end_reason is None:
                    self._end(VENUE_DOWN.CONNECT_FAILED if not up else VENUE_DOWN.CLOSED,
                              f"{type(e).__name__}: {e}")
            finally:
                self.ws = None
            self._set(venue_connected=0)
            self._invalidate()
            if self.stop:
                break
            backoff.session_ended(time.monotonic() - started)
            reason = self.end_reason if self.end_reason is not None else VENUE_DOWN.CLOSED
            m = self.metrics.m[0]
            m["venue_last_error"] = reason
            m["venue_last_error_ns"] = time.time_ns()
            if reason == VENUE_DOWN.SHUTDOWN:
                delay = 0.0  # planned: the venue asked us to reconnect
            else:
                delay = backoff.next()  # capped, jittered: no reconnect storms
            log.warning("Venue disconnected: %s (%s); reconnecting in %.2f s", VENUE_DOWN[reason],
                        self.end_detail or "-", delay)
            end = time.monotonic() + delay
            while not self.stop and time.monotonic() < end:
                await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))

    async def _session(self, ws) -> None:
        v = self.cfg
        raw = await asyncio.wait_for(ws.recv(decode=False), v.connect_timeout_s)
        self.last_frame = time.monotonic()
        try:
            first = orjson.loads(raw)
        except orjson.JSONDecodeError:
            first = None
        if not isinstance(first, dict) or first.get(L.F_TYPE) != L.T_CONNECTED:
            self._reject(VENUE_REJECT.UNKNOWN_TYPE, f"expected a '{L.T_CONNECTED}' frame first, "
                         f"got {bytes(raw[:80])!r}")
            self._end(VENUE_DOWN.PROTOCOL, "no connected frame")
            return
        self.frames[VENUE_FRAME.CONNECTED] += 1
        self.book_ready = False
        self.resyncs_in_session = 0
        await ws.send(self.sub_book)
        await ws.send(self.sub_trade)
        self.last_sent = time.monotonic()
        self._set(venue_connected=1, venue_connected_since_s=time.time())
        log.info("Venue connected: %s, subscribed to %s and %s", self.url, self.book_channel,
                 self.trade_channel)
        outbox = self.outbox
        outbox.clear()
        on_frame = self.on_frame
        while self.end_reason is None and not self.stop:
            raw = await ws.recv(decode=False)
            on_frame(raw, time.time_ns())
            if outbox:
                for text in outbox:
                    await ws.send(text)
                outbox.clear()
                self.last_sent = time.monotonic()
        if self.end_reason is not None and not self.stop:
            await ws.close()

    async def _housekeeping(self, service) -> None:
        v = self.cfg
        period = service.cfg.process.housekeeping_ms / 1000
        m = self.metrics.m[0]
        while True:
            await asyncio.sleep(period)
            service.housekeeping()
            now = time.monotonic()
            quiet = now - self.last_frame
            m["venue_last_frame_age_s"] = quiet
            m["venue_book_levels_dropped_total"] = self.book.io[LB.IO_OUT_DROPPED]
            for key, n in self.limiter.flush():
                log.warning("Venue frame rejected: %s: suppressed %d similar", key, n)
            if service.should_exit and not self.stop:
                self.stop = True
                if self.ws is not None:
                    await self.ws.close()
                return
            ws = self.ws
            if ws is None:
                continue
            if quiet > v.stall_timeout_s and self.end_reason is None:
                log.warning("Venue silent: no frame for %.1f s with the socket open (stall "
                            "timeout %.1f s); reconnecting", quiet, v.stall_timeout_s)
                self._end(VENUE_DOWN.STALL, f"no frame for {quiet:.1f} s")
                ws.transport.abort()  # the receive loop ends with ConnectionClosed
            elif ((quiet > v.stall_timeout_s / 2 and self.pinged_at < self.last_frame)
                  or now - self.last_sent > L.APP_PING_INTERVAL_S):
                # quiet market or dead server? a ping gets a pong from a live one
                self.pinged_at = now
                self.last_sent = now
                try:
                    await ws.send(orjson.dumps({L.F_TYPE: L.T_PING}).decode())
                except Exception:  # the connection is going down; the receive loop sees it
                    pass

    def _end(self, reason: int, detail: str) -> None:
        if self.end_reason is None:
            self.end_reason, self.end_detail = reason, detail

    def _set(self, **fields) -> None:
        m = self.metrics.m[0]
        for k, val in fields.items():
            m[k] = val

    # -- frames (hot path) -----------------------------------------------------------------------
    def on_frame(self, raw: bytes, recv_ns: int) -> None:
        self.last_frame = time.monotonic()
        self.metrics.m[0]["venue_last_frame_ns"] = recv_ns
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.frames[VENUE_FRAME.OTHER] += 1
            self._reject(VENUE_REJECT.MALFORMED_JSON, f"{bytes(raw[:80])!r}")
            return
        if type(msg) is not dict:
            self.frames[VENUE_FRAME.OTHER] += 1
            self._reject(VENUE_REJECT.MALFORMED_JSON, f"not a JSON object: {bytes(raw[:80])!r}")
            return
        handler = self.handlers.get(msg.get(L.F_TYPE))
        if handler is None:
            self.frames[VENUE_FRAME.OTHER] += 1
            self._reject(VENUE_REJECT.UNKNOWN_TYPE, f"type {str(msg.get(L.F_TYPE))[:40]!r}")
            return
        handler(msg, recv_ns)

    def _on_book_snapshot(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.BOOK_SNAPSHOT] += 1
        self._on_book(msg, recv_ns, True)

    def _on_book_update(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.BOOK_UPDATE] += 1
        self._on_book(msg, recv_ns, False)

    def _on_book(self, msg: dict, recv_ns: int, snapshot: bool) -> None:
        try:
            if msg[L.F_CHANNEL] != self.book_channel:
                self._reject(VENUE_REJECT.WRONG_CHANNEL, f"channel {str(msg[L.F_CHANNEL])[:40]!r}")
                return
            ob = msg[L.F_ORDER_BOOK]
            nonce = ob[L.F_NONCE]
            begin = ob[L.F_BEGIN_NONCE] if not snapshot else nonce
            if type(nonce) is not int or type(begin) is not int:
                raise TypeError("nonce")
            ts = ob.get(L.F_LAST_UPDATED_US) or msg.get(L.F_LAST_UPDATED_US) \
                or msg[L.F_TIMESTAMP_MS]
            exch_ns = L.timestamp_ns(ts)
            bids = ob[L.F_BIDS]
            asks = ob[L.F_ASKS]
            strs = []
            for lv in bids:
                strs.append(lv[L.F_PRICE])
                strs.append(lv[L.F_SIZE])
            for lv in asks:
                strs.append(lv[L.F_PRICE])
                strs.append(lv[L.F_SIZE])
            buf = ",".join(strs).encode("ascii")
        except KeyError as e:
            self._reject(VENUE_REJECT.MISSING_FIELD, f"{'snapshot' if snapshot else 'update'} "
                         f"without {e.args[0]!r}")
            return
        except UnicodeEncodeError:
            self._reject(VENUE_REJECT.BAD_NUMBER, "non-ASCII characters in a price or size")
            return
        except (TypeError, AttributeError) as e:
            self._reject(VENUE_REJECT.BAD_TYPE, f"mistyped field ({e})")
            return
        if not snapshot:
            if not self.book_ready:
                self._reject(VENUE_REJECT.AWAITING_SNAPSHOT, "update before the snapshot")
                return
            if begin != self.expected_nonce:
                self._reject(VENUE_REJECT.NONCE_GAP, f"expected begin_nonce "
                             f"{self.expected_nonce}, got {begin}")
                log.warning("Sequence gap: venue order book %s expected begin_nonce %d, got %d; "
                            "resubscribing", self.book_channel, self.expected_nonce, begin)
                self._resync()
                return
        book = self.book
        io = book.io
        nfields = len(strs)
        if nfields > len(book.vals):
            book.ensure_fields(nfields)
        io[LB.IO_NFIELDS] = nfields
        io[LB.IO_NBID] = len(bids)
        io[LB.IO_SEQ] = self.seq + 1
        io[LB.IO_EXCH_NS] = exch_ns
        io[LB.IO_RECV_NS] = recv_ns
        r = LB.frame_apply(np.frombuffer(buf, np.uint8), LB.MODE_SNAPSHOT if snapshot else
                           LB.MODE_UPDATE, book.keys, book.sizes, book.n, book.cap, book.vals,
                           io, book.tmeta, book.staging, self.ring.ctrl, self.ring.words,
                           self.metrics.m)
        if r == LB.OK:
            self.seq += 1
            self.expected_nonce = nonce
            if snapshot:
                self._book_whole(nonce)
            return
        code = r - 1
        if code == VENUE_REJECT.CROSSED:
            top = book.top()
            self._reject(code, f"best bid {top[0, 0] / FIXED:.10g} >= best ask "
                         f"{top[2, 0] / FIXED:.10g} after nonce {nonce}")
            log.warning("Venue book crossed after %s nonce %d; resubscribing",
                        "snapshot" if snapshot else "update", nonce)
            self._resync()
            return
        self._reject(code, self._field_detail(strs, int(io[LB.IO_OUT_WHERE]), len(bids)))
        if snapshot:
            self._resync()  # no usable book: ask again

    def _field_detail(self, strs: list, where: int, nbid: int) -> str:
        if where < 0 or where >= len(strs):
            return "bad level list"
        level = where // 2
        side = "bids" if level < nbid else "asks"
        k = level if level < nbid else level - nbid
        name = L.F_PRICE if where % 2 == 0 else L.F_SIZE
        return f"{side}[{k}].{name} = {str(strs[where])[:40]!r}"

    def _on_trade(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.TRADE_UPDATE] += 1
        try:
            if msg[L.F_CHANNEL] != self.trade_channel:
                self._reject(VENUE_REJECT.WRONG_CHANNEL, f"channel {str(msg[L.F_CHANNEL])[:40]!r}")
                return
            trades = msg[L.F_TRADES]
            if not trades:
                return
            # every trade of the frame, in order: each is published with the current book
            ntrades = len(trades)
            book = self.book
            if ntrades > len(book.tmeta):
                book.ensure_trades(ntrades)
            tmeta = book.tmeta
            strs = []
            for i, t in enumerate(trades):
                maker_ask = t[L.F_TRADE_IS_MAKER_ASK]
                if type(maker_ask) is not bool:
                    raise TypeError(L.F_TRADE_IS_MAKER_ASK)
                tmeta[i, LB.TM_EXCH_NS] = L.timestamp_ns(t.get(L.F_TRADE_TIME_US)
                                                         or t[L.F_TRADE_TIME_MS])
                tmeta[i, LB.TM_SIDE] = 1 if maker_ask else -1
                strs.append(t[L.F_TRADE_PRICE])
                strs.append(t[L.F_TRADE_SIZE])
            buf = ",".join(strs).encode("ascii")
        except KeyError as e:
            self._reject(VENUE_REJECT.MISSING_FIELD, f"trade without {e.args[0]!r}")
            return
        except UnicodeEncodeError:
            self._reject(VENUE_REJECT.BAD_NUMBER, "non-ASCII characters in a trade")
            return
        except (TypeError, AttributeError, IndexError) as e:
            self._reject(VENUE_REJECT.BAD_TYPE, f"mistyped trade field ({e})")
            return
        if not self.book_ready:
            self._reject(VENUE_REJECT.AWAITING_SNAPSHOT, "trade while the book resyncs")
            return
        io = book.io
        io[LB.IO_NFIELDS] = 2 * ntrades
        io[LB.IO_SEQ] = self.seq + 1
        io[LB.IO_RECV_NS] = recv_ns
        r = LB.frame_apply(np.frombuffer(buf, np.uint8), LB.MODE_TRADE, book.keys, book.sizes,
                           book.n, book.cap, book.vals, io, tmeta, book.staging, self.ring.ctrl,
                           self.ring.words, self.metrics.m)
        if r == LB.OK:
            self.seq += ntrades
        else:  # the frame is validated whole: none of its trades was published
            where = min(max(0, int(io[LB.IO_OUT_WHERE])), len(strs) - 1)
            self._reject(r - 1, f"trade {where // 2 + 1} of {ntrades} "
                         f"{['price', 'size'][where % 2]} {str(strs[where])[:40]!r}"
                         f"{' (none of the frame published)' if ntrades > 1 else ''}")

    def _on_trade_snapshot(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.TRADE_SNAPSHOT] += 1  # recent history: not a new trade

    def _on_ping(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.PING] += 1
        self.outbox.append('{"type":"pong"}')

    def _on_pong(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.PONG] += 1

    def _on_connected(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.CONNECTED] += 1

    def _on_shutdown(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.SHUTDOWN] += 1
        log.warning("Venue shutdown frame (closing in %s ms): planned reconnect",
                    msg.get(L.F_CLOSE_IN_MS))
        self._end(VENUE_DOWN.SHUTDOWN, f"close_in_ms {msg.get(L.F_CLOSE_IN_MS)}")

    def _on_error(self, msg: dict, recv_ns: int) -> None:
        self.frames[VENUE_FRAME.ERROR] += 1
        detail = f"code {str(msg.get(L.F_CODE))[:20]} {str(msg.get(L.F_MESSAGE))[:120]!r}"
        self._reject(VENUE_REJECT.ERROR_FRAME, detail)
        self._end(VENUE_DOWN.ERROR_FRAME, detail)

    # -- book state ------------------------------------------------------------------------------
    def _book_whole(self, nonce: int) -> None:
        if not self.book_ready:
            self.book_ready = True
            self.resyncs_in_session = 0
            self._set(venue_book_valid=1)
            log.info("Venue book whole: snapshot nonce %d, %d bids, %d asks", nonce,
                     int(self.book.n[0]), int(self.book.n[1]))

    def _resync(self) -> None:
        """Drop the book and ask for a fresh snapshot (a full reconnect after too many)."""
        self._invalidate()
        self.metrics.m[0]["venue_book_resyncs_total"] += 1
        self.resyncs_in_session += 1
        if self.resyncs_in_session > MAX_RESYNCS_PER_SESSION:
            self._end(VENUE_DOWN.RESYNC, f"{self.resyncs_in_session - 1} resubscribes without "
                      "a usable snapshot")
            return
        self.outbox.append(self.unsub_book)
        self.outbox.append(self.sub_book)

    def _invalidate(self) -> None:
        """The book lost continuity: publish the FLAG_BOOK_INVALID marker once."""
        if not self.book_ready:
            return
        self.book_ready = False
        self._set(venue_book_valid=0)
        book = self.book
        io = book.io
        io[LB.IO_SEQ] = self.seq + 2  # one skipped sequence number: the engine sees a gap
        now = LB.now_ns()
        io[LB.IO_EXCH_NS] = now
        io[LB.IO_RECV_NS] = now
        LB.frame_apply(np.zeros(0, np.uint8), LB.MODE_INVALID, book.keys, book.sizes, book.n,
                       book.cap, book.vals, io, book.tmeta, book.staging, self.ring.ctrl,
                       self.ring.words, self.metrics.m)
        self.seq += 2

    def _reject(self, code: int, detail: str) -> None:
        self.rejects[code] += 1
        label = VENUE_REJECT[code]
        ok, suppressed = self.limiter.allow(label)
        if ok:
            log.warning("Venue frame rejected: %s: %s%s", label, detail,
                        f" (suppressed {suppressed} similar)" if suppressed else "")
