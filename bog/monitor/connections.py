"""The monitor's HTTP connections: a cap, deadlines, fair dispatch, counted and logged drops.

uvicorn alone lets a local client take the monitor down: a connection that never sends a
request is kept forever (its keep-alive timer is only armed after a response), nothing caps
the number of open connections, and every ``accept()`` that fails for lack of descriptors
logs a full traceback. Here, around uvicorn's h11 protocol:

- **cap**: at most ``max_connections`` open (lowered to what ``RLIMIT_NOFILE`` leaves after
  ``RESERVED_FDS``). A new connection at the cap evicts the oldest *idle* one (no request in
  flight); if every connection has a request in flight the new one is refused. Either way
  the connection is reset, counted and logged (rate-limited).
- **header deadline**: a connection must deliver a complete request header within
  ``header_timeout_s`` of opening or of its previous response; the deadline is not extended
  by partial data (slow-loris). Idle keep-alive connections close after
  ``keepalive_timeout_s`` (uvicorn's timer, counted here).
- **fair dispatch**: requests run one at a time, least recently served connection first
  (a connection's first request before any other). A client hammering on keep-alive
  connections waits behind everyone else, so one occasional ``/health`` is answered after
  at most one other request, not after a queue of a thousand. The gate is released at the
  response's first ``send``, so a client that does not read its response never holds it.
- **accept errors** (EMFILE, ENFILE, ENOBUFS, ENOMEM: asyncio retries after 1 s) are counted
  and logged in one line, rate-limited, without a traceback (the loop's exception handler).

Every drop has a reason, counted in ``ConnectionStats`` (exported by the collector as
``bog_monitor_connections_closed_total{reason}`` and ``bog_monitor_accept_errors_total``) and
logged through a ``RateLimiter`` ("... (suppressed N similar)"). Everything runs on the
event loop's one thread: no locks.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import logging
import resource
import time
from collections import OrderedDict

from uvicorn.protocols.http.h11_impl import H11Protocol

from bog.log import RateLimiter

log = logging.getLogger("bog.monitor")

# descriptors the monitor needs besides connections: stdio, log file and lock, listening
# socket, epoll, self-pipe, shared-memory segments, /proc reads, Python's own files
RESERVED_FDS = 64
# reasons a connection is closed by the monitor (labels of the closed counter)
EVICTED, REFUSED, HEADER_TIMEOUT, KEEPALIVE_TIMEOUT = (
    "evicted_idle", "refused", "header_timeout", "keepalive_timeout")
REASONS = (EVICTED, REFUSED, HEADER_TIMEOUT, KEEPALIVE_TIMEOUT)
ACCEPT_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
LOG_BURST, LOG_PERIOD_S = 3, 10.0
# expired header deadlines are closed at most CLOSES_PER_SWEEP every SWEEP_PERIOD_S (800/s):
# connections opened together expire together, and closing (and their clients reopening)
# a thousand at once would stall every other client for tens of milliseconds
CLOSES_PER_SWEEP, SWEEP_PERIOD_S = 8, 0.01


def effective_max_connections(wanted: int, reserve: int = RESERVED_FDS) -> tuple[int, int]:
    """(connection cap, RLIMIT_NOFILE soft limit) after raising the soft limit toward the hard one.

    The soft limit is raised (never lowered) to ``wanted + reserve`` when the hard limit allows;
    the cap is ``wanted`` or what the soft limit leaves after ``reserve``, whichever is smaller.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if new > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY:
        return wanted, soft
    return max(1, min(wanted, soft - reserve)), soft


class ConnectionStats:
    """Counters of the monitor's HTTP connections (read by the collector at scrape time)."""

    def __init__(self, max_connections: int):
        self.max_connections = max_connections
        self.open = 0
        self.accepted_total = 0
        self.closed_total = dict.fromkeys(REASONS, 0)
        self.accept_errors_total = 0


class FairGate:
    """Requests run one at a time and at most one per event-loop iteration; a waiting request
    with a lower priority value runs first (FIFO on ties).

    One per iteration matters: handlers do not await, so without it every request parsed in
    an iteration runs in that iteration, and an iteration (hence a new connection's accept,
    first read and answer, a few iterations each) grows with the number of busy clients.
    """

    def __init__(self):
        self.busy = False
        self._heap: list = []
        self._seq = 0

    async def acquire(self, priority: float) -> None:
        if not self.busy:
            self.busy = True
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._heap, (priority, self._seq, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over to us just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        """Hand the gate to the best waiter (it runs next iteration), or free it next iteration."""
        if not self._hand_over():
            asyncio.get_running_loop().call_soon(self._free)

    def _hand_over(self) -> bool:
        while self._heap:
            fut = heapq.heappop(self._heap)[2]
            if not fut.done():
                fut.set_result(None)
                return True
        return False

    def _free(self) -> None:
        if not self._hand_over():
            self.busy = False

    @property
    def waiting(self) -> int:
        return len(self._heap)


class ConnectionGuard:
    """Admission, deadlines and accounting for every connection of one server."""

    def __init__(self, max_connections: int, header_timeout_s: float,
                 limiter: RateLimiter | None = None, clock=time.monotonic):
        self.stats = ConnectionStats(max_connections)
        self.header_timeout_s = header_timeout_s
        self.limiter = limiter or RateLimiter(burst=LOG_BURST, period_s=LOG_PERIOD_S)
        self.clock = clock
        self.gate = FairGate()
        self.conns: set = set()
        self.idle: OrderedDict = OrderedDict()  # connections waiting for a request, oldest first
        self.deadlines: OrderedDict = OrderedDict()  # proto -> header deadline, earliest first
        self._sweeper: asyncio.Handle | None = None

    # -- admission -------------------------------------------------------------------------
    def admit(self, proto) -> bool:
        """Register a new connection; at the cap evict the oldest idle one or refuse this one."""
        st = self.stats
        if len(self.conns) >= st.max_connections:
            if not self.idle:
                self.drop(proto, REFUSED, "every connection has a request in flight")
                return False
            victim = next(iter(self.idle))
            self.drop(victim, EVICTED, "oldest idle connection closed for a new one")
        self.conns.add(proto)
        self.idle[proto] = None
        self.arm(proto)
        st.accepted_total += 1
        st.open = len(self.conns)
        return True

    def drop(self, proto, reason: str, why: str) -> None:
        """Reset ``proto``'s connection now (no lingering), count and log it."""
        self.stats.closed_total[reason] += 1
        self._forget(proto)
        if proto.transport is not None:
            proto.transport.abort()
        if reason != KEEPALIVE_TIMEOUT:
            self.note(f"conn-{reason}", logging.WARNING,
                      "monitor connection %s (%s; open %d, max_connections %d)",
                      reason.replace("_", " "), why, len(self.conns), self.stats.max_connections)

    def closed(self, proto) -> None:
        self._forget(proto)

    def _forget(self, proto) -> None:
        self.conns.discard(proto)
        self.idle.pop(proto, None)
        self.deadlines.pop(proto, None)
        self.stats.open = len(self.conns)

    def busy(self, proto) -> None:
        """A request is in flight on ``proto``: not idle, no header deadline."""
        self.idle.pop(proto, None)
        self.deadlines.pop(proto, None)

    def waiting(self, proto) -> None:
        """``proto`` answered its request and waits for the next one."""
        if proto in self.conns:
            self.idle[proto] = None
            self.idle.move_to_end(proto)
            self.arm(proto)

    # -- header deadlines: one sweeper, not a timer per connection --------------------------
    # Every deadline is "now + header_timeout_s", so arming order is deadline order and an
    # OrderedDict is the queue; the sweeper paces the closes (CLOSES_PER_SWEEP).
    def arm(self, proto) -> None:
        self.deadlines.pop(proto, None)
        self.deadlines[proto] = self.clock() + self.header_timeout_s
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.header_timeout_s,
                                                                  self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.clock()
        for _ in range(CLOSES_PER_SWEEP):
            if not self.deadlines:
                return
            proto, deadline = next(iter(self.deadlines.items()))
            if deadline > now:
                self._sweeper = asyncio.get_running_loop().call_later(deadline - now, self._sweep)
                return
            self.drop(proto, HEADER_TIMEOUT, f"no complete request header within "
                      f"{self.header_timeout_s:g} s")
        if self.deadlines:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_PERIOD_S, self._sweep)

    # -- logging, rate-limited ---------------------------------------------------------------
    def note(self, key: str, level: int, msg: str, *args) -> None:
        ok, suppressed = self.limiter.allow(key)
        if ok:
            if suppressed:
                msg += " (suppressed %d similar)"
                args = (*args, suppressed)
            log.log(level, msg, *args)

    def flush_log(self) -> None:
        """From housekeeping: one line per key whose period ended with suppressed lines."""
        for key, n in self.limiter.flush():
            log.warning("monitor %s: suppressed %d similar", key.replace("-", " "), n)

    # -- the event loop's exception handler --------------------------------------------------
    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = loop.get_exception_handler()

        def handler(lp, context):
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS:
                self.stats.accept_errors_total += 1
                self.note("accept-error", logging.ERROR,
                          "monitor cannot accept connections: %s (%s; open %d, "
                          "max_connections %d); retrying in 1 s", exc.strerror,
                          errno.errorcode.get(exc.errno, exc.errno), len(self.conns),
                          self.stats.max_connections)
                return
            if previous is not None:
                previous(lp, context)
            else:
                lp.default_exception_handler(context)

        loop.set_exception_handler(handler)


def protocol_class(guard: ConnectionGuard) -> type:
    """uvicorn's h11 protocol with the guard's cap, deadlines and fair dispatch."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._admitted = False
            self._last_served = float("-inf")  # first request: before anyone served already
            inner = self.app

            async def gated(scope, receive, send):
                await guard.gate.acquire(self._last_served)
                self._last_served = guard.clock()
                released = False

                async def send_first_releases(message):
                    nonlocal released
                    if not released:
                        released = True
                        guard.gate.release()
                    await send(message)
                try:
                    await inner(scope, receive, send_first_releases)
                finally:
                    if not released:
                        guard.gate.release()

            self.app = gated

        def connection_made(self, transport) -> None:
            self.transport = transport
            if not guard.admit(self):
                return
            self._admitted = True
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                guard.busy(self)  # a request is in flight: no deadline

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                guard.waiting(self)

        def timeout_keep_alive_handler(self) -> None:
            if not self.transport.is_closing():
                guard.stats.closed_total[KEEPALIVE_TIMEOUT] += 1
            super().timeout_keep_alive_handler()

        def connection_lost(self, exc) -> None:
            if not self._admitted:
                return  # refused in connection_made: uvicorn never saw it
            guard.closed(self)
            super().connection_lost(exc)

    return GuardedH11Protocol
