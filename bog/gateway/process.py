"""bog-gateway: order intents from the engine -> the venue; venue events -> the engine.

Runs only when ``execution.mode`` is ``dry-run`` or ``live`` (``bog run`` starts it after the
engine; under systemd ``bog-gateway.service`` is part of ``bog-trading.target`` when live).

- Reads the engine's order-intent ring (``/bog.<instance>.intents``: place, cancel,
  cancel-all), checks every placement against its own hard limits (``bog/gateway/limits.py``,
  independent of the engine) and sends it; a refused intent is counted, logged and answered
  with a rejection (negative code: the gateway's own) so the engine frees the order.
- Writes what the venue says (acked, rejected, cancelled, expired, filled, and a reset when it
  starts) into its venue-event ring (``/bog.<instance>.vevents``), which the engine's hot
  thread applies to its order table and turns into fills (once per venue trade id).
- Watches the engine: heartbeat older than ``gateway.engine_heartbeat_timeout_s``, engine
  gone or its intent ring closed -> everything at the venue is cancelled at once.
- live: a ``VenueSession`` (``bog/gateway/venue.py``) signs with the SDK's signer and sends
  (WebSocket, HTTP fallback); a requote (cancel then place of the same side in one drained
  batch) goes as one ``replace`` batch. Its events become venue events: acked, rejected (the
  venue's code), cancelled / expired, filled (trade id, once: the ids already journaled seed
  the session, so a restarted gateway never re-applies a fill; the engine dedupes too). Every
  ``gateway.reconcile_every_s`` the venue's REST account state (position, open orders) goes
  into the metrics block, where the engine's reconciliation reads it. The dead-man switch
  (a venue-side scheduled cancel-all ``gateway.dead_man_window_s`` ahead) is armed after the
  start cancel-all, re-armed every third of the window, disarmed at a clean shutdown after
  the shutdown cancel-all.
- dry-run: nothing is sent; each intent is logged ("dry-run: would send ...") and answered as
  the venue would (placement acknowledged, cancel confirmed), so the engine's order table
  runs as in live; there are never fills.
- Metrics in its own block (``/bog.<instance>.gateway``), exported by the monitor.

Safety (``check_start``): live needs ``execution.mode = "live"``, an explicit
``gateway.network``, the account and key indices, credentials (a key file of mode 0600
owned by this user, or the systemd credential ``lighter-api-key``, 0400) and the ``lighter``
extra (``pip install 'bog[lighter]'``); without any of them the gateway refuses to start with
one line naming what is missing. The key is never logged,
never in a metric, an error message or the process title.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from bog.config import Config, ConfigError
from bog.gateway.limits import Limits
from bog.gateway.signer import CredentialError, load_api_key
from bog.process import Service, pin_to_core
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.codes import CANCEL_ALL_WHY, EXEC_MODE, GATEWAY_REFUSE, INTENT, LIQUIDITY, VENUE_EVENT
from bog.shm.hist import bucket_index
from bog.shm.layouts import (
    FIXED,
    GATEWAY_REJECT_CODES,
    GATEWAY_US_EDGES,
    INTENT_REC,
    INTENT_WORDS,
    LATENCY_NS_EDGES,
    VENUE_EVENT_REC,
)
from bog.shm.metrics import ENGINE, GATEWAY, MetricsBlock
from bog.venue.lighter import STATUS_CODE_BASE
from bog.shm.ring import IntentRing, VenueEventRing, spsc_commit, spsc_peek_into

log = logging.getLogger("bog.gateway")

CREDENTIAL_NAME = "lighter-api-key"  # systemd LoadCredential=lighter-api-key:/path
POLL_S = 0.0005  # intent ring polling period while idle
HOUSEKEEPING_S = 0.1
BATCH = 256
SOCKET_WAIT_S = 2.0  # a send waits this long for the socket, then goes over HTTP
STOP_TIMEOUT_S = 10.0  # shutdown: cancel-all + dead-man disarm must be answered within this
VENUE_CODE_BASE = -100  # the venue client's own negative codes (transport...) -> -100 + code


class GatewayRefused(ConfigError):
    """The gateway will not start: one line saying what is missing (never the key)."""


@dataclass(frozen=True)
class Credentials:
    path: str  # where the key came from (the key itself is read by the venue client only)
    source: str  # "gateway.api_key_file" or "systemd credential lighter-api-key"

    def __repr__(self) -> str:  # never more than where it is
        return f"Credentials({self.source}: {self.path})"


def check_key_file(path: str, origin: str) -> None:
    """A key file must be a regular file owned by this user, readable by nobody else (mode
    0600, or 0400 as systemd credentials are) holding a Lighter API key: the venue client's
    ``load_api_key`` reads and checks it (the key itself is dropped here). Raises
    GatewayRefused naming the file, never its content."""
    try:
        load_api_key(path)
    except CredentialError as e:
        raise GatewayRefused(f"{origin}: {e}") from None


def check_start(cfg: Config, env: dict | None = None) -> Credentials | None:
    """What the gateway needs before it may start; raises GatewayRefused (one line)."""
    env = os.environ if env is None else env
    mode, g = cfg.execution.mode, cfg.gateway
    if mode == "paper":
        raise GatewayRefused("execution.mode is 'paper': paper trading needs no gateway (set "
                             "execution.mode = \"dry-run\" or \"live\")")
    creds = None
    if g.api_key_file:
        creds = Credentials(g.api_key_file, "gateway.api_key_file")
    elif env.get("CREDENTIALS_DIRECTORY"):
        p = os.path.join(env["CREDENTIALS_DIRECTORY"], CREDENTIAL_NAME)
        if os.path.exists(p):
            creds = Credentials(p, f"systemd credential {CREDENTIAL_NAME}")
    if mode == "live":
        if not g.network:
            raise GatewayRefused("live trading needs an explicit network: set gateway.network "
                                 "= \"testnet\" (or \"mainnet\" for real funds)")
        if g.account_index < 0:
            raise GatewayRefused("live trading needs gateway.account_index (the venue account)")
        if g.api_key_index < 0:
            raise GatewayRefused("live trading needs gateway.api_key_index (the API key slot)")
        if creds is None:
            raise GatewayRefused("live trading needs credentials: gateway.api_key_file (a file "
                                 "of mode 0600) or the systemd credential "
                                 f"{CREDENTIAL_NAME} (LoadCredential= in the unit)")
    if creds is not None:
        check_key_file(creds.path, creds.source)
    if mode == "live":
        try:
            import lighter  # noqa: F401  (the SDK's signer: the optional extra)
        except ImportError:
            raise GatewayRefused("live trading needs the lighter extra (the SDK's signer): "
                                 "pip install 'bog[lighter]'") from None
    return creds


class GatewayService(Service):
    name = "gateway"

    def startup(self) -> None:
        cfg = self.cfg
        self.creds = check_start(cfg)
        self.names = SegmentNames(self.instance)
        self.mode = EXEC_MODE.index(cfg.execution.mode)
        self.dry_run = self.mode == EXEC_MODE.DRY_RUN
        self.live = self.mode == EXEC_MODE.LIVE
        self.network = cfg.gateway.network or "testnet"
        self.session = None  # live: the VenueSession (made inside the loop, in _main)
        self._ops: collections.deque = collections.deque()  # live: what the sender sends next
        self._ops_ev: asyncio.Event | None = None
        self._sign_seen = (0, 0)  # (signs, ns) of VenueSession.stats already in the histogram
        if self.live:
            from bog.feed.lighter import VenueError, resolve_market
            from bog.venue import lighter as L

            self.ws_url = L.ws_url(self.network, cfg.gateway.url)
            try:
                self.market = resolve_market(L.rest_base(self.ws_url), cfg.venue.market,
                                             cfg.venue.rest_timeout_s)
            except VenueError as e:
                raise GatewayRefused(f"venue.market {cfg.venue.market!r}: {e}") from None
            self.px_unit = FIXED // 10 ** self.market.price_decimals  # FIXED per venue unit
            self.sz_unit = FIXED // 10 ** self.market.size_decimals
            self.seen_trade_ids = self._journaled_trade_ids()
        self.metrics = self.vring = self.intents = self.engine = None
        self.metrics = MetricsBlock.create(self.names.gateway_metrics, GATEWAY)
        self.vring = VenueEventRing.create(self.names.venue_events, cfg.gateway.event_ring_size)
        self.limits = Limits(cfg.gateway)
        self.orders: dict[int, list] = {}  # client order index -> [state, side, px, qty, t_ns]
        self._ev = np.zeros(1, VENUE_EVENT_REC)
        self._in = np.zeros((BATCH, INTENT_WORDS), np.int64)
        self._engine_lost = False  # cancel-all done for the engine that went away
        self._said: dict[str, float] = {}
        m = self.metrics.m[0]
        m["pid"] = os.getpid()
        m["start_ns"] = self.started_ns
        m["mode"] = self.mode
        m["mainnet"] = 1 if self.network == "mainnet" else 0
        self.core = pin_to_core(cfg.process.gateway_core)
        m["core"] = self.core
        m["heartbeat_ns"] = time.time_ns()
        m["running"] = 1
        m["dead_man_window_s"] = cfg.gateway.dead_man_window_s if self.live else 0.0
        # a fresh gateway knows no order: everything at the venue is cancelled at start
        # (live: cancel-all sent; dry-run: nothing rests) and the engine clears its table
        self._cancel_everything(CANCEL_ALL_WHY.GATEWAY_START)
        self._emit(VENUE_EVENT.RESET, 0)
        if self.live:
            self._ops.append(("arm",))  # the dead-man switch, right after the cancel-all
        if self.dry_run:
            m["connected"] = 1  # dry-run: the "venue" is this process
            m["connected_since_s"] = time.time()
        self.metrics.segment.mark_ready()
        self.vring.segment.mark_ready()
        log.warning("bog-gateway %s on %s%s: %s", cfg.execution.mode, self.network,
                    f" ({cfg.gateway.url})" if cfg.gateway.url else "",
                    "orders are logged, never sent" if self.dry_run else
                    f"REAL ORDERS, account {cfg.gateway.account_index}, market "
                    f"{self.market.symbol} ({self.market.market_id}), dead-man window "
                    f"{cfg.gateway.dead_man_window_s:.0f} s, {len(self.seen_trade_ids)} "
                    "venue trade ids known from the journal")
        if self.creds is not None:  # where the key is, never the key
            log.info("API key from %s at %s: owner-only, a Lighter API key",
                     self.creds.source, self.creds.path)
        elif self.dry_run:
            log.warning("dry-run without credentials: intents are logged unsigned")

    # -- main loop ----------------------------------------------------------------------------
    def main_loop(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        if self.live:
            await self._live_start()
        next_hk = 0.0
        try:
            while not self.should_exit:
                n = self._drain_intents()
                now = time.monotonic()
                if now >= next_hk:
                    self.housekeeping()
                    next_hk = now + HOUSEKEEPING_S
                if n == 0:
                    await asyncio.sleep(POLL_S)
                else:
                    await asyncio.sleep(0)
        finally:
            if self.live:
                await self._live_stop()

    # -- intents ------------------------------------------------------------------------------
    def _attach_intents(self) -> None:
        """Attach the engine's intent ring (again after an engine restart)."""
        cur = self.intents
        if cur is not None and not cur.segment.replaced_or_closed():
            return
        if cur is not None and cur.depth > 0:
            return  # read what the old engine left first (its mapping stays valid)
        ring = seg_mod.try_attach(lambda: IntentRing.attach(self.names.intents, writable=True),
                                  self.metrics.m[0], log, held=cur)
        if cur is not None:
            cur.close(unlink=False)
            self.intents = None
            self.metrics.m[0]["engine_attached"] = 0
        if ring is not None:
            self.intents = ring
            self.metrics.m[0]["engine_attached"] = 1
            log.info("attached to the engine's intent ring %s (%d intents waiting)",
                     self.names.intents, ring.depth)

    def _drain_intents(self) -> int:
        r = self.intents
        if r is None:
            return 0
        n = spsc_peek_into(r.ctrl, r.words, self._in)
        if n == 0:
            return 0
        recs = self._in[:n].view(INTENT_REC).reshape(-1)
        for rec in recs:
            self._intent(rec)
        spsc_commit(r.ctrl, n)
        return n

    def _intent(self, rec) -> None:
        m = self.metrics.m[0]
        kind, coi = int(rec["kind"]), int(rec["client_order_index"])
        if not 0 <= kind < len(INTENT):
            m["intents_refused_total"][GATEWAY_REFUSE.BAD_INTENT] += 1
            self._say("bad", logging.ERROR, "intent refused: unknown kind %d (order %d)", kind,
                      coi)
            return
        m["intents_total"][kind] += 1
        now = time.monotonic()
        if kind == INTENT.PLACE:
            side, px, qty = int(rec["side"]), int(rec["price"]), int(rec["qty"])
            open_n = len(self.orders)
            why = self.limits.check_place(px, qty, open_n, now)
            if why is None and self.live and (px % self.px_unit or qty % self.sz_unit):
                why = GATEWAY_REFUSE.BAD_INTENT  # not on the venue's price / size grid
            if why is None and not m["connected"]:
                why = GATEWAY_REFUSE.DISCONNECTED
            if why is not None:
                m["intents_refused_total"][why] += 1
                if why == GATEWAY_REFUSE.RATE:
                    m["rate_limited_total"] += 1
                self._say(f"refuse{why}", logging.WARNING,
                          "Gateway refused order %d (%s %.9f @ %.2f): %s (gateway limits)", coi,
                          "buy" if side > 0 else "sell", qty / FIXED, px / FIXED,
                          GATEWAY_REFUSE[why])
                self._emit(VENUE_EVENT.REJECTED, coi, code=-(1 + why))
                return
            self.orders[coi] = [0, side, px, qty, int(rec["intent_ns"])]
            if self.live:
                self._queue_place(coi, side, px, qty, int(rec["intent_ns"]))
                return
            self._send("place", coi, side=side, px=px, qty=qty)
            self._sent(rec)
            if self.dry_run:  # the venue would acknowledge it
                self._acked(coi)
        elif kind == INTENT.CANCEL:
            if not self.limits.take_cancel(now):
                m["rate_limited_total"] += 1  # sent anyway: a cancel only reduces exposure
            if self.live:
                self._ops.append(("cancel", coi, int(rec["side"]), int(rec["intent_ns"])))
                self._wake()
                return
            self._send("cancel", coi)
            self._sent(rec)
            if self.dry_run:
                self._cancelled(coi)
        else:
            self.limits.take_cancel(now)
            if self.live:  # at once: ahead of (and dropping) placements still queued
                self._cancel_all_now(int(rec["reason"]), int(rec["intent_ns"]))
                return
            self._send("cancel_all", 0, why=int(rec["reason"]))
            self._sent(rec)
            if self.dry_run:
                for c in list(self.orders):
                    self._cancelled(c)
        m["inflight_orders"] = sum(1 for o in self.orders.values() if o[0] == 0)
        m["open_orders"] = len(self.orders)

    def _send(self, what: str, coi: int, side: int = 0, px: int = 0, qty: int = 0,
              why: int = 0) -> None:
        if self.dry_run:
            if what == "place":
                log.info("dry-run: would send create order: client_order_index=%d %s "
                         "base_amount=%.9f price=%.2f post_only=1", coi,
                         "ask" if side < 0 else "bid", qty / FIXED, px / FIXED)
            elif what == "cancel":
                log.info("dry-run: would send cancel order: client_order_index=%d", coi)
            else:
                log.info("dry-run: would send cancel all orders (%s)", CANCEL_ALL_WHY[why])
            return
        if what == "cancel_all":  # live: at once, ahead of anything queued
            self._cancel_all_now(why)

    def _sent(self, rec, dt: int | None = None) -> None:
        m = self.metrics.m[0]
        m["intents_sent_total"] += 1
        if dt is None:
            dt = time.time_ns() - int(rec["intent_ns"])
        if dt >= 0:
            m["intent_to_sent_ns_bucket"][bucket_index(LATENCY_NS_EDGES, dt)] += 1
            m["intent_to_sent_ns_sum"] += dt

    # -- venue events -> engine ---------------------------------------------------------------
    def _emit(self, kind: int, coi: int, **fields) -> None:
        e = self._ev
        e[0] = 0
        e[0]["kind"] = kind
        e[0]["client_order_index"] = coi
        e[0]["ts_ns"] = e[0]["recv_ns"] = time.time_ns()
        for k, v in fields.items():
            e[0][k] = v
        m = self.metrics.m[0]
        if self.vring.push(e):
            m["events_total"][kind] += 1
        else:
            m["events_dropped_total"] += 1
            self._say("evdrop", logging.CRITICAL,
                      "CRITICAL venue event dropped: venue-event ring %s full (capacity %d; is "
                      "the engine consuming it?): %s of order %d", self.names.venue_events,
                      self.vring.capacity, VENUE_EVENT[kind], coi)

    def _acked(self, coi: int, order_index: int = 0) -> None:
        o = self.orders.get(coi)
        if o is not None and o[0] == 0:
            o[0] = 1
            dt_us = (time.time_ns() - o[4]) // 1000
            m = self.metrics.m[0]
            m["intent_to_ack_us_bucket"][bucket_index(GATEWAY_US_EDGES, dt_us)] += 1
            m["intent_to_ack_us_sum"] += dt_us
        self._emit(VENUE_EVENT.ACKED, coi, order_index=order_index)

    def _cancelled(self, coi: int) -> None:
        self.orders.pop(coi, None)
        self._emit(VENUE_EVENT.CANCELLED, coi)

    def _cancel_everything(self, why: int) -> None:
        """A venue-wide cancel-all now (engine lost, start, shutdown)."""
        self._send("cancel_all", 0, why=why)
        if self.dry_run:
            for c in list(self.orders):
                self._cancelled(c)
        if self.live:
            return  # the venue's account channel confirms each cancel
        m = self.metrics.m[0]
        m["inflight_orders"] = 0
        m["open_orders"] = len(self.orders)

    # -- live: the venue session ----------------------------------------------------------------
    def _journaled_trade_ids(self) -> set[int]:
        """Venue trade ids the engine's journal holds: a restarted gateway never turns them into
        fills again (the venue replays recent trades on subscribe; the engine dedupes too)."""
        from bog.engine.journal import recover
        from bog.engine.process import journal_path

        path = journal_path(self.cfg, self.instance)
        try:
            return set(recover(path).trade_ids)
        except Exception as e:  # the engine's own trade-id table still drops a repeat
            log.error("cannot read the venue trade ids of the journal %s: %s (the engine's "
                      "trade-id table still drops a repeated trade)", path, e)
            return set()

    def _wake(self) -> None:
        if self._ops_ev is not None:
            self._ops_ev.set()

    def _queue_place(self, coi: int, side: int, px: int, qty: int, intent_ns: int) -> None:
        """A placement; right after a not-yet-sent cancel of the same side (a requote) the two
        go as one replace batch."""
        ops = self._ops
        if ops and ops[-1][0] == "cancel" and ops[-1][2] == side:
            c = ops.pop()
            ops.append(("replace", c[1], coi, side, px, qty, intent_ns))
        else:
            ops.append(("place", coi, side, px, qty, intent_ns))
        self._wake()

    def _cancel_all_now(self, why: int, intent_ns: int = 0) -> None:
        """Cancel-all ahead of everything queued; queued placements are dropped (the engine is
        told they are cancelled) since they would be cancelled at once anyway."""
        dropped = 0
        keep = collections.deque()
        for op in self._ops:
            if op[0] in ("place", "replace"):
                dropped += 1
                coi = op[1] if op[0] == "place" else op[2]
                self.orders.pop(coi, None)
                self._emit(VENUE_EVENT.CANCELLED, coi)
                if op[0] == "replace":
                    keep.append(("cancel", op[1], op[3], op[6]))
            else:
                keep.append(op)
        keep.appendleft(("cancel_all", why, intent_ns or time.time_ns()))
        self._ops = keep
        if dropped:
            log.warning("cancel-all (%s): %d queued placements dropped, never sent",
                        CANCEL_ALL_WHY[why], dropped)
        self._wake()

    async def _live_start(self) -> None:
        from bog.gateway.signer import Signer
        from bog.gateway.venue import VenueSession

        g = self.cfg.gateway
        self._ops_ev = asyncio.Event()
        # the key is read here, handed to the signer and dropped: never an attribute
        self.signer = Signer(url=self._rest(), private_key=load_api_key(self.creds.path),
                             account_index=g.account_index, api_key_index=g.api_key_index)
        self.session = VenueSession(
            ws_url=self.ws_url, account_index=g.account_index, api_key_index=g.api_key_index,
            market_index=self.market.market_id, signer=self.signer, on_event=self._on_venue,
            seen_trade_ids=self.seen_trade_ids,
            size_decimals=self.market.size_decimals, price_decimals=self.market.price_decimals)
        self._tasks = [asyncio.create_task(self.session.run(), name="venue-session"),
                       asyncio.create_task(self._sender(), name="venue-sender"),
                       asyncio.create_task(self._reconciler(), name="venue-reconcile")]
        self._next_arm = time.monotonic() + g.dead_man_window_s / 3

    def _rest(self) -> str:
        from bog.venue import lighter as L
        return L.rest_base(self.ws_url)

    async def _sender(self) -> None:
        """Sends the queued operations one at a time, in order (the session signs each with
        the next nonce). An error is logged and counted; the next operation goes on."""
        while True:
            if not self._ops:
                self._ops_ev.clear()
                await self._ops_ev.wait()
                continue
            if not self.session.stats.connected:  # the socket first; HTTP if it stays down
                try:
                    await self.session.wait_connected(SOCKET_WAIT_S)
                except (asyncio.TimeoutError, TimeoutError):
                    pass
                if not self._ops:
                    continue
            op = self._ops.popleft()
            try:
                await self._do(op)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.metrics.m[0]["send_errors_total"] += 1
                log.error("Venue operation %s failed: %s: %s", op[0], type(e).__name__, e)

    async def _do(self, op) -> None:
        s, kind = self.session, op[0]
        t0 = time.time_ns()
        if kind == "place":
            _, coi, side, px, qty, intent_ns = op
            await s.place(client_order_index=coi, is_ask=side < 0, price=px // self.px_unit,
                          base_amount=qty // self.sz_unit, post_only=True)
            self._after_send(t0, intent_ns, 1)
        elif kind == "replace":
            _, old, coi, side, px, qty, intent_ns = op
            self.metrics.m[0]["intents_sent_total"] += 1  # the cancel of the pair
            self.metrics.m[0]["replaces_total"] += 1
            await s.replace(old, client_order_index=coi, is_ask=side < 0,
                            price=px // self.px_unit, base_amount=qty // self.sz_unit,
                            post_only=True)
            self._after_send(t0, intent_ns, 2)
        elif kind == "cancel":
            await s.cancel(op[1])
            self._after_send(t0, op[3], 1)
        elif kind == "cancel_all":
            log.warning("Venue cancel-all (%s)", CANCEL_ALL_WHY[op[1]])
            await s.cancel_all()
            self._after_send(t0, op[2], 1)
        elif kind == "arm":
            await s.arm_dead_man(self.cfg.gateway.dead_man_window_s)
            if s.stats.dead_man_armed:
                self.metrics.m[0]["dead_man_arms_total"] += 1
        elif kind == "disarm":
            await s.disarm_dead_man()

    def _after_send(self, t0: int, intent_ns: int, n: int) -> None:
        """intent -> bytes written (the wait in the queue + the session's own send time
        including signing) into the intent -> sent histogram; signing time into its own."""
        st, m = self.session.stats, self.metrics.m[0]
        signs, sign_ns = st.signs_total, st.sign_ns_total
        k = signs - self._sign_seen[0]
        if k > 0:
            each = (sign_ns - self._sign_seen[1]) / k
            m["sign_us_bucket"][bucket_index(GATEWAY_US_EDGES, int(each // 1000))] += k
            m["sign_us_sum"] += (sign_ns - self._sign_seen[1]) / 1000
        self._sign_seen = (signs, sign_ns)
        m["send_ns_last"] = st.last_send_ns
        dt = (t0 - intent_ns) + st.last_send_ns + st.last_sign_ns * n
        m["intents_sent_total"] += 1
        if dt >= 0:
            m["intent_to_sent_ns_bucket"][bucket_index(LATENCY_NS_EDGES, dt)] += 1
            m["intent_to_sent_ns_sum"] += dt

    def _on_venue(self, ev) -> None:
        """The session's events -> the venue-event ring (and this process's order view)."""
        from bog.gateway import venue as V

        m = self.metrics.m[0]
        if isinstance(ev, V.Filled):
            o = self.orders.get(ev.client_order_index)
            px, qty = ev.price * self.px_unit, ev.base_amount * self.sz_unit
            fee = (px * qty // FIXED) * ev.fee // 1_000_000  # fee: a rate in 1e-6 [others]
            self._emit(VENUE_EVENT.FILLED, ev.client_order_index, ts_ns=ev.ts_ns,
                       trade_id=ev.trade_id, price=px, qty=qty, fee_usd=fee,
                       liquidity=LIQUIDITY.MAKER if ev.is_maker else LIQUIDITY.TAKER,
                       side=-1 if ev.is_ask else 1)
            if o is not None:
                o[3] -= qty
                if o[3] <= 0:
                    self.orders.pop(ev.client_order_index, None)
        elif isinstance(ev, V.Acked):
            self._acked(ev.client_order_index, ev.order_index)
        elif isinstance(ev, V.Cancelled):
            self.orders.pop(ev.client_order_index, None)
            kind = VENUE_EVENT.EXPIRED if "expired" in ev.reason else VENUE_EVENT.CANCELLED
            self._emit(kind, ev.client_order_index)
        elif isinstance(ev, V.Rejected):
            self.orders.pop(ev.client_order_index, None)
            # the venue's codes (> 0) and bog's for a venue's refusal status (<= -200) as
            # they are; the venue client's own (-1, -2) as -100 + code
            code = ev.code if ev.code > 0 or ev.code <= STATUS_CODE_BASE \
                else VENUE_CODE_BASE + ev.code
            self._emit(VENUE_EVENT.REJECTED, ev.client_order_index, code=code)
        elif isinstance(ev, V.Connected):
            was = int(m["connected"])
            m["connected"] = 1 if ev.up else 0
            if ev.up and not was:
                m["connected_since_s"] = time.time()
                log.warning("Gateway connected to the venue (%s)", self.ws_url)
                if self.session.stats.reconnects_total:  # the venue kept everything: re-arm
                    self._ops.appendleft(("arm",))
                    self._wake()
                    self._reconcile_now = True
            elif not ev.up and was:
                log.error("Gateway disconnected from the venue: %s", ev.why)
        m["open_orders"] = len(self.orders)

    async def _reconciler(self) -> None:
        """The venue's account state every gateway.reconcile_every_s (sooner after a
        reconnect) into the metrics block, for the engine's reconciliation."""
        from bog.gateway.venue import VenueError

        period = self.cfg.gateway.reconcile_every_s
        self._reconcile_now = False
        next_at = 0.0
        while True:
            await asyncio.sleep(0.05)
            if not (self._reconcile_now or time.monotonic() >= next_at):
                continue
            if not self.session.stats.connected:
                continue
            self._reconcile_now = False
            next_at = time.monotonic() + period
            m = self.metrics.m[0]
            fills_before = self.session.stats.fills_total
            read_ns = time.time_ns()  # the snapshot is the venue's state as of (about) now
            try:
                snap = await self.session.reconcile()
            except (VenueError, OSError) as e:
                m["reconcile_errors_total"] += 1
                self._say("reconcile", logging.ERROR, "Venue reconcile failed: %s", e)
                continue
            if self.session.stats.fills_total != fills_before:
                # a fill arrived while the account was read: the snapshot may predate it, and
                # the engine would see a drift that is not one. Read again at once.
                self._reconcile_now = True
                continue
            pos = snap.base_amount * self.sz_unit
            m["venue_position_fixed"] = pos
            m["venue_position_ns"] = read_ns  # the engine compares fills applied before it
            m["venue_open_orders"] = len(snap.open_orders)
            m["reconciles_total"] += 1
            if self.engine is not None:
                tracked = float(self.engine.m[0]["position_btc"])
                m["position_drift_btc"] = tracked - pos / FIXED

    def _live_housekeeping(self, m) -> None:
        st = self.session.stats
        m["connected"] = st.connected
        m["reconnects_total"] = st.reconnects_total
        m["nonce_refetches_total"] = st.nonce_refetches_total
        m["venue_rate_limited_total"] = st.rate_limited_total
        m["http_fallback_total"] = st.http_fallback_total
        m["send_errors_total"] = max(int(m["send_errors_total"]), st.send_errors_total)
        m["venue_fills_total"] = st.fills_total
        m["venue_fills_duplicate_total"] = st.fills_duplicate_total
        m["inflight_orders"] = st.in_flight
        m["open_orders"] = len(self.orders)
        m["dead_man_armed"] = st.dead_man_armed
        m["dead_man_expiry_ns"] = st.dead_man_expiry_ms * 1_000_000
        m["rejects_total"] = st.rejected_total
        codes, counts = m["reject_codes"], m["rejects_by_code"]
        other = 0
        for code, n in st.rejects_by_code.items():
            slot = -1
            for i in range(GATEWAY_REJECT_CODES):
                if codes[i] == code or codes[i] == 0:
                    slot = i
                    break
            if slot < 0:
                other += n
                continue
            codes[slot] = code
            counts[slot] = n
        m["rejects_other_total"] = other
        now = time.monotonic()
        if now >= self._next_arm:
            self._next_arm = now + self.cfg.gateway.dead_man_window_s / 3
            if not any(op[0] == "arm" for op in self._ops):
                self._ops.append(("arm",))
                self._wake()

    async def _live_stop(self) -> None:
        """Clean shutdown: what the engine left in the ring, then cancel-all, then the dead-man
        switch disarmed (nothing rests, nothing is scheduled), then the session closed."""
        if self.session is None:
            return
        try:
            self._drain_intents()
        except Exception:
            log.critical("bog-gateway: error reading the last intents", exc_info=True)
        self._cancel_all_now(CANCEL_ALL_WHY.SHUTDOWN)
        self._ops.append(("disarm",))
        self._wake()
        end = time.monotonic() + STOP_TIMEOUT_S
        while (self._ops or self.session._tx_lock.locked()) and time.monotonic() < end:
            await asyncio.sleep(0.02)
        if self._ops:
            log.critical("CRITICAL bog-gateway stopping with %d venue operations unsent "
                         "(cancel-all/disarm); the venue's dead-man switch cancels everything "
                         "by %s", len(self._ops),
                         time.strftime("%H:%M:%S", time.localtime(
                             self.session.stats.dead_man_expiry_ms / 1000)))
        else:
            log.warning("bog-gateway stopped trading: everything cancelled at the venue, "
                        "dead-man switch disarmed")
        await self.session.close()
        for t in self._tasks[1:]:
            t.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 10)
        except (asyncio.TimeoutError, TimeoutError):
            log.error("venue session did not close within 10 s")
        self._live_housekeeping(self.metrics.m[0])
        await self.signer.close()

    # -- housekeeping ---------------------------------------------------------------------------
    def housekeeping(self) -> None:
        m = self.metrics.m[0]
        m["heartbeat_ns"] = time.time_ns()
        m["shm_untrusted_total"] = seg_mod.untrusted_total()
        m["minute_notional_usd"] = self.limits.minute(time.monotonic())
        self.watchdog()
        self._attach_intents()
        self._check_engine()
        if self.live and self.session is not None:
            self._live_housekeeping(m)

    def _check_engine(self) -> None:
        """Engine heartbeat lost (or engine gone): cancel everything at the venue, once."""
        m = self.metrics.m[0]
        if self.engine is not None and self.engine.segment.replaced_or_closed():
            self.engine.close(unlink=False)
            self.engine = None
        if self.engine is None:
            try:
                self.engine = MetricsBlock.attach(self.names.engine_metrics, ENGINE)
            except seg_mod.SegmentError:
                self.engine = None
        why = None
        if self.engine is None:
            why = "engine not running"
        else:
            h = self.engine.segment.header[0]
            age = (time.time_ns() - int(self.engine.m[0]["heartbeat_ns"])) / 1e9
            m["engine_heartbeat_age_s"] = age
            if not seg_mod.owner_alive(int(h["owner_pid"]), int(h["owner_start_ticks"])):
                why = f"engine pid {int(h['owner_pid'])} gone"
            elif age > self.cfg.gateway.engine_heartbeat_timeout_s:
                why = f"engine heartbeat {age:.1f} s old"
            elif self.intents is None:
                why = "engine intent ring closed"
        if why is None:
            if self._engine_lost:
                log.warning("engine back (heartbeat fresh): taking its intents again")
            self._engine_lost = False
            return
        if self._engine_lost:
            return
        self._engine_lost = True
        if self.orders or not self.dry_run:
            m["heartbeat_cancel_alls_total"] += 1
            log.critical("CRITICAL engine heartbeat lost (%s): cancelling every order at the "
                         "venue (%d known)", why, len(self.orders))
            self._cancel_everything(CANCEL_ALL_WHY.HEARTBEAT)
        else:
            log.warning("engine not available (%s); nothing rests at the venue", why)

    def _say(self, key: str, level: int, msg: str, *args) -> None:
        """At most one line per key per second (refusal storms): the counters count all."""
        now = time.monotonic()
        if now - self._said.get(key, 0.0) >= 1.0:
            self._said[key] = now
            log.log(level, msg, *args)

    # -- shutdown -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        try:
            if (getattr(self, "vring", None) is not None and self.metrics is not None
                    and not getattr(self, "live", False)):  # live: done in _live_stop
                self._drain_intents()
                self._cancel_everything(CANCEL_ALL_WHY.SHUTDOWN)
        except Exception:
            log.critical("bog-gateway: error while cancelling at shutdown", exc_info=True)
        for attr in ("intents", "engine"):
            h = getattr(self, attr, None)
            if h is not None:
                h.close(unlink=False)
        if getattr(self, "metrics", None) is not None:
            self.metrics.m[0]["running"] = 0
            self.metrics.close()
        if getattr(self, "vring", None) is not None:
            self.vring.close()
