"""``bog bench --gateway``: the live order path against ``bog fake-venue`` (loopback).

Prints, never asserts (numbers depend on the machine):
- intent -> bytes on the socket, excluding signing (``VenueStats.last_send_ns`` of each
  placement: the venue client's own work around the sign call);
- signing cost per order (the SDK's native signer, ``VenueStats.last_sign_ns``);
- intent -> ack round trip on loopback (``place()`` called -> ``Acked`` event);
- event-loop stall: how late a task polling every 0.5 ms (as the gateway's intent reader does)
  wakes up while the orders are signed and sent (signing runs off the loop);
- tick -> intent in the ring is the engine's ``bog_tick_to_intent_ns``, measured by
  ``bog bench`` (the kernel path is the same in every execution mode).

A throwaway key (``lighter.create_api_key()``); orders far below the market rest, then one
cancel-all. Needs the ``lighter`` extra.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from bog.bench import machine

ACCT, KEY, MARKET = 31, 5, 1
FAR_BID = 300_000  # 30000.0 in the fake's BTC (1 price decimal): rests
WATCH_PERIOD_S = 0.0005  # the gateway's intent polling period (bog.gateway.process.POLL_S)


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _measure(ws: str, http: str, n: int) -> dict:
    from lighter.signer_client import create_api_key

    from bog.gateway import venue as V
    from bog.gateway.signer import Signer

    priv, _pub, err = create_api_key()
    if err:
        raise RuntimeError(f"create_api_key: {err}")
    acked: dict[int, int] = {}
    events: list = []

    def on_event(e):
        if isinstance(e, V.Acked):
            acked[e.client_order_index] = time.perf_counter_ns()
        events.append(e)

    signer = Signer(url=http, private_key=priv, account_index=ACCT, api_key_index=KEY)
    s = V.VenueSession(ws_url=ws, account_index=ACCT, api_key_index=KEY, market_index=MARKET,
                       signer=signer, on_event=on_event)
    task = asyncio.create_task(s.run())
    send, sign, rtt, stalls = [], [], [], []
    watching = True

    async def watch():
        # the gateway's intent reader polls like this: how long does it wait beyond its
        # period while orders are signed and sent?
        last = time.perf_counter_ns()
        while watching:
            await asyncio.sleep(WATCH_PERIOD_S)
            now = time.perf_counter_ns()
            stalls.append(max(0, now - last - int(WATCH_PERIOD_S * 1e9)))
            last = now

    watcher = None
    try:
        await s.wait_connected(15)
        watcher = asyncio.create_task(watch())
        for i in range(n):
            coi = 1000 + i
            t0 = time.perf_counter_ns()
            await s.place(client_order_index=coi, is_ask=False, price=FAR_BID - i % 100,
                          base_amount=20)
            send.append(s.stats.last_send_ns)
            sign.append(s.stats.last_sign_ns)
            end = time.monotonic() + 5
            while coi not in acked and time.monotonic() < end:
                await asyncio.sleep(0)
            if coi in acked:
                rtt.append(acked[coi] - t0)
            if i % 20 == 19:
                await s.cancel_all()
        await s.cancel_all()
    finally:
        watching = False
        if watcher is not None:
            await watcher
        await s.close()
        await asyncio.wait_for(task, 10)
        await signer.close()
    return {"orders": n, "acked": len(rtt),
            "send_excl_sign_ns": {"p50": _pct(send, .5), "p99": _pct(send, .99)},
            "sign_ns": {"p50": _pct(sign, .5), "p99": _pct(sign, .99)},
            "intent_to_ack_ns": {"p50": _pct(rtt, .5), "p99": _pct(rtt, .99)},
            "loop_stall_ns": {"p50": _pct(stalls, .5), "p99": _pct(stalls, .99),
                              "max": max(stalls, default=0)}}


def run_bench_gateway(cfg, args) -> int:
    n = 50 if args.quick else 300
    port = _free_port()
    work = tempfile.mkdtemp(prefix="bog-bench-gateway-")
    log = open(os.path.join(work, "fake.out"), "w")
    fake = subprocess.Popen([sys.executable, "-m", "bog.cli", "fake-venue", "--port", str(port),
                             "--rate", "5", "--markets", "BTC"], stdout=log,
                            stderr=subprocess.STDOUT)
    http, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/stream"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(http + "/api/v1/orderBooks", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > end or fake.poll() is not None:
                    print("bog bench --gateway: the fake venue did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        out = {"machine": machine(), **asyncio.run(_measure(ws, http, n))}
    finally:
        fake.terminate()
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()
        log.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    m = out["machine"]
    print(f"bog bench --gateway on {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}: "
          f"{out['orders']} orders against bog fake-venue on loopback ({out['acked']} acked)")
    for key, what in (("send_excl_sign_ns", "intent -> bytes on the socket, excl. signing"),
                      ("sign_ns", "signing per order (SDK native signer)"),
                      ("intent_to_ack_ns", "intent -> ack round trip"),
                      ("loop_stall_ns", "event-loop stall (a 0.5 ms poller's lateness)")):
        d = out[key]
        print(f"  {what:<46} P50 {d['p50'] / 1000:>9.1f} us   P99 {d['p99'] / 1000:>9.1f} us"
              + (f"   max {d['max'] / 1000:>9.1f} us" if "max" in d else ""))
    print("  tick -> intent in the ring: bog_tick_to_intent_ns, measured by `bog bench`")
    return 0
