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
- dry-run: nothing is sent; each intent is logged ("dry-run: would send ...") and answered as
  the venue would (placement acknowledged, cancel confirmed), so the engine's order table
  runs as in live; there are never fills.
- Metrics in its own block (``/bog.<instance>.gateway``), exported by the monitor.

Safety (``check_start``): live needs ``execution.mode = "live"``, an explicit
``gateway.network``, the account and key indices and credentials (a key file of mode 0600
owned by this user, or the systemd credential ``lighter-api-key``); without any of them the
gateway refuses to start with one line naming what is missing. The key is never logged,
never in a metric, an error message or the process title.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from dataclasses import dataclass

import numpy as np

from bog.config import Config, ConfigError
from bog.gateway.limits import Limits
from bog.process import Service, pin_to_core
from bog.shm import SegmentNames
from bog.shm import segment as seg_mod
from bog.shm.codes import CANCEL_ALL_WHY, EXEC_MODE, GATEWAY_REFUSE, INTENT, VENUE_EVENT
from bog.shm.hist import bucket_index
from bog.shm.layouts import (
    FIXED,
    GATEWAY_US_EDGES,
    INTENT_REC,
    INTENT_WORDS,
    LATENCY_NS_EDGES,
    VENUE_EVENT_REC,
)
from bog.shm.metrics import ENGINE, GATEWAY, MetricsBlock
from bog.shm.ring import IntentRing, VenueEventRing, spsc_commit, spsc_peek_into

log = logging.getLogger("bog.gateway")

CREDENTIAL_NAME = "lighter-api-key"  # systemd LoadCredential=lighter-api-key:/path
POLL_S = 0.0005  # intent ring polling period while idle
HOUSEKEEPING_S = 0.1
BATCH = 256


class GatewayRefused(ConfigError):
    """The gateway will not start: one line saying what is missing (never the key)."""


@dataclass(frozen=True)
class Credentials:
    path: str  # where the key came from (the key itself is read by the venue client only)
    source: str  # "gateway.api_key_file" or "systemd credential lighter-api-key"

    def __repr__(self) -> str:  # never more than where it is
        return f"Credentials({self.source}: {self.path})"


def check_key_file(path: str, origin: str) -> None:
    """A key file must be a regular file owned by this user, readable by nobody else
    (mode 0600 or 0400). Raises GatewayRefused naming the file, never its content."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise GatewayRefused(f"{origin} = {path}: no such file") from None
    except OSError as e:
        raise GatewayRefused(f"{origin} = {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise GatewayRefused(f"{origin} = {path}: not a regular file")
    if st.st_uid != os.geteuid():
        raise GatewayRefused(f"{origin} = {path}: owned by uid {st.st_uid}, not by this user "
                             f"(uid {os.geteuid()})")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 or not mode & 0o400:
        raise GatewayRefused(f"{origin} = {path}: mode {mode:04o}, must be 0600 (owner only): "
                             f"chmod 600 {path}")


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
            import bog.gateway.venue  # noqa: F401  (h/venueclient: signer + venue session)
        except ImportError:
            raise GatewayRefused("live trading needs bog's venue client (bog.gateway.venue, "
                                 "pip install 'bog[lighter]'): not available in this "
                                 "install") from None
    return creds


class GatewayService(Service):
    name = "gateway"

    def startup(self) -> None:
        cfg = self.cfg
        self.creds = check_start(cfg)
        self.names = SegmentNames(self.instance)
        self.mode = EXEC_MODE.index(cfg.execution.mode)
        self.dry_run = self.mode == EXEC_MODE.DRY_RUN
        self.network = cfg.gateway.network or "testnet"
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
        # a fresh gateway knows no order: everything at the venue is cancelled at start
        # (live: cancel-all sent; dry-run: nothing rests) and the engine clears its table
        self._cancel_everything(CANCEL_ALL_WHY.GATEWAY_START)
        self._emit(VENUE_EVENT.RESET, 0)
        if self.dry_run:
            m["connected"] = 1  # dry-run: the "venue" is this process
            m["connected_since_s"] = time.time()
        self.metrics.segment.mark_ready()
        self.vring.segment.mark_ready()
        log.warning("bog-gateway %s on %s%s: %s", cfg.execution.mode, self.network,
                    f" ({cfg.gateway.url})" if cfg.gateway.url else "",
                    "orders are logged, never sent" if self.dry_run else "REAL ORDERS")
        if self.dry_run and self.creds is None:
            log.warning("dry-run without credentials: intents are logged unsigned")

    # -- main loop ----------------------------------------------------------------------------
    def main_loop(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        next_hk = 0.0
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

    # -- intents ------------------------------------------------------------------------------
    def _attach_intents(self) -> None:
        """Attach the engine's intent ring (again after an engine restart)."""
        cur = self.intents
        if cur is not None and not cur.segment.replaced_or_closed():
            return
        if cur is not None and cur.depth > 0:
            return  # read what the old engine left first (its mapping stays valid)
        try:
            ring = IntentRing.attach(self.names.intents, writable=True)
        except seg_mod.UntrustedSegmentError as e:
            self.metrics.m[0]["shm_untrusted_total"] = seg_mod.untrusted_total()
            if e.first:
                log.critical("%s", e)
            ring = None
        except seg_mod.SegmentError:
            ring = None
        if ring is not None and (ring.segment.state != seg_mod.STATE_READY
                                 or (cur is not None and ring.segment.inode == cur.segment.inode)):
            ring.close(unlink=False)
            ring = None
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
            self._send("place", coi, side=side, px=px, qty=qty)
            self._sent(rec)
            if self.dry_run:  # the venue would acknowledge it
                self._acked(coi)
        elif kind == INTENT.CANCEL:
            if not self.limits.take_cancel(now):
                m["rate_limited_total"] += 1  # sent anyway: a cancel only reduces exposure
            self._send("cancel", coi)
            self._sent(rec)
            if self.dry_run:
                self._cancelled(coi)
        else:
            self.limits.take_cancel(now)
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
        raise NotImplementedError("live sending needs the venue client")  # pragma: no cover

    def _sent(self, rec) -> None:
        m = self.metrics.m[0]
        m["intents_sent_total"] += 1
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
        m = self.metrics.m[0]
        m["inflight_orders"] = 0
        m["open_orders"] = len(self.orders)

    # -- housekeeping ---------------------------------------------------------------------------
    def housekeeping(self) -> None:
        m = self.metrics.m[0]
        m["heartbeat_ns"] = time.time_ns()
        m["shm_untrusted_total"] = seg_mod.untrusted_total()
        m["minute_notional_usd"] = self.limits.minute(time.monotonic())
        self.watchdog()
        self._attach_intents()
        self._check_engine()

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
            if getattr(self, "vring", None) is not None and self.metrics is not None:
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
