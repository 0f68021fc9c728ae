"""The monitor process (``bog monitor``): uvicorn in-process, plus a housekeeping task.

Lifecycle, top-down:

- ``startup()``: pin to ``process.monitor_core``, bind the listening socket (so a busy port is
  a clear startup error, not a crash later), build the state and the app.
- ``main_loop()``: one asyncio loop running uvicorn and ``_housekeeping()``, which every
  100 ms beats the heartbeat, feeds systemd's watchdog and honours a stop request, and every
  second records a reading and evaluates the alerts.
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

from bog.monitor import address
from bog.monitor.app import create_app
from bog.monitor.state import MonitorState
from bog.process import Service

log = logging.getLogger("bog.monitor")

HOUSEKEEPING_S = 0.1
SAMPLE_PERIOD_S = 1.0
GRACEFUL_SHUTDOWN_S = 2


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the Service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


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
    sock.listen(128)
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
        self.state = MonitorState(self.instance, self.started_ns)
        self.state.core = self.core
        config = uvicorn.Config(
            create_app(self.state), log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False,
        )
        self.server = _Server(config)
        log.info("monitor for instance %s on http://%s (/metrics /health /alerts /)",
                 self.instance, self.address)

    def main_loop(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
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
                try:
                    self.state.sample()
                except Exception:
                    log.exception("monitor sampling failed")
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
