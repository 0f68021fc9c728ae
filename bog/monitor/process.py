"""The monitor process (``bog monitor``): uvicorn in-process, plus a housekeeping task.

Lifecycle, top-down:

- ``startup()``: pin to ``process.monitor_core``, bind the listening socket (so a busy port is
  a clear startup error, not a crash later), size the connection cap from ``RLIMIT_NOFILE``,
  build the state, the app and the connection guard (``bog.monitor.connections``: cap,
  header deadline, fair dispatch, accept errors counted and logged without tracebacks).
- ``main_loop()``: one asyncio loop running uvicorn and ``_housekeeping()``, which every
  100 ms beats the heartbeat, feeds systemd's watchdog and honours a stop request, and every
  second records a reading and evaluates the alerts (and flushes the rate-limited log lines).
- ``shutdown()``: let uvicorn finish open requests (2 s at most), unmap the segments.

Signals stay with ``Service`` (first SIGINT/SIGTERM: graceful, second SIGINT: exit now);
uvicorn's own signal capture is switched off (``_Server.capture_signals``).
The monitor only reads shared memory and serves GET requests: no control action over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time

import uvicorn

from bog.log import RateLimiter
from bog.monitor import address
from bog.monitor.app import create_app
from bog.monitor.connections import ConnectionGuard, effective_max_connections, protocol_class
from bog.monitor.state import MonitorState
from bog.process import Service

log = logging.getLogger("bog.monitor")

HOUSEKEEPING_S = 0.1
SAMPLE_PERIOD_S = 1.0
GRACEFUL_SHUTDOWN_S = 2
LISTEN_BACKLOG = 2048  # the kernel's accept queue (uvicorn's default)
# accepts per event-loop iteration (asyncio accepts up to its "backlog" per wake-up): small, so
# a burst of new connections is interleaved with reading the requests of accepted ones
ACCEPTS_PER_ITERATION = 64


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the Service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        # asyncio re-listened with the config's backlog (ACCEPTS_PER_ITERATION); give the
        # kernel queue its full length back (the accept loop keeps its per-iteration bound)
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a SystemExit-free error saying what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it a keep-alive scrape waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise RuntimeError(
                f"cannot listen on {host}:{port}: address already in use (another monitor, or "
                "Prometheus, which also defaults to 9090?) - choose another with --port or "
                "[monitor] port") from e
        raise RuntimeError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


class MonitorService(Service):
    name = "monitor"

    def startup(self) -> None:
        self.pin(self.cfg.process.monitor_core)
        mc = self.cfg.monitor
        if mc.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("monitor listening on %s: /metrics and /health are readable by anyone "
                        "who can reach it (no authentication)", mc.host)
        self.sock = bind_socket(mc.host, mc.port)
        self.address = "%s:%d" % self.sock.getsockname()[:2]
        # published for bogctl (whichever port won: config, --port, or 0)
        self.address_seg = address.publish(self.instance, *self.sock.getsockname()[:2],
                                           os.getpid())
        self.state = MonitorState(self.instance, self.started_ns,
                                  exec_mode=self.cfg.execution.mode)
        self.state.core = self.core
        cap, nofile = effective_max_connections(mc.max_connections)
        if cap < mc.max_connections:
            log.warning("monitor: RLIMIT_NOFILE %d leaves room for %d connections "
                        "([monitor] max_connections = %d)", nofile, cap, mc.max_connections)
        self.guard = ConnectionGuard(cap, mc.header_timeout_s, RateLimiter(burst=3, period_s=10.0))
        self.state.connections = self.guard.stats
        self.sampling_log = RateLimiter(burst=1, period_s=60.0)
        config = uvicorn.Config(
            create_app(self.state), log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False,
            http=protocol_class(self.guard), ws="none", backlog=ACCEPTS_PER_ITERATION,
            timeout_keep_alive=mc.keepalive_timeout_s,
        )
        self.server = _Server(config)
        log.info("monitor for instance %s on http://%s (/metrics /health /alerts /); at most "
                 "%d connections, header timeout %g s", self.instance, self.address, cap,
                 mc.header_timeout_s)

    def main_loop(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.guard.install(asyncio.get_running_loop())
        hk = asyncio.create_task(self._housekeeping())
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            hk.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hk
        if not self.should_exit and not self.server.started:
            raise RuntimeError("uvicorn did not start")

    async def _housekeeping(self) -> None:
        next_sample = time.monotonic()
        while True:
            if self.should_exit:
                self.server.should_exit = True
                return
            self.state.heartbeat_ns = time.time_ns()
            self.watchdog()
            now = time.monotonic()
            if now >= next_sample:
                # fixed cadence; after a long stall skip missed samples instead of bursting
                next_sample = max(next_sample + SAMPLE_PERIOD_S, now + SAMPLE_PERIOD_S / 2)
                self.guard.flush_log()
                for _, n in self.sampling_log.flush():
                    log.error("monitor sampling failed: suppressed %d similar", n)
                try:
                    self.state.sample()
                except Exception as e:
                    # e.g. EMFILE reading /proc while flooded with connections: one line a
                    # minute, not one a second; a traceback only for what is not an OSError
                    ok, suppressed = self.sampling_log.allow("sampling")
                    if ok:
                        log.error("monitor sampling failed: %s: %s%s", type(e).__name__, e,
                                  f" (suppressed {suppressed} similar)" if suppressed else "",
                                  exc_info=not isinstance(e, OSError))
            await asyncio.sleep(HOUSEKEEPING_S)

    def shutdown(self) -> None:
        address_seg = getattr(self, "address_seg", None)
        if address_seg is not None:
            address_seg.close()  # unlinks /bog.<instance>.monitor
        state = getattr(self, "state", None)
        if state is not None:
            state.close()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
