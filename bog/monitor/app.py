"""The HTTP app: read-only endpoints over the monitor's state. Nothing here changes anything.

    GET /metrics       Prometheus text exposition (read from shared memory at scrape time)
    GET /health        the guide's health document; 200 healthy, 503 degraded or down
    GET /alerts        alerts evaluated by the monitor (firing and pending)
    GET /api/history   per-second series for the page (?seconds=300)
    GET /              a small live page (static HTML + fetch, no build step)

Handlers are ``async def`` on purpose: they run on the event loop's thread, one at a time,
so they never race the housekeeping task that samples and evaluates alerts.
"""

from __future__ import annotations

import math
from importlib import resources

import orjson
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from bog import __version__
from bog.monitor.collector import exposition
from bog.monitor.health import health
from bog.monitor.history import Window
from bog.shm.layouts import LATENCY_NS_EDGES

CHART_WINDOW_S = 10.0  # latency points on the page: quantiles over the last 10 s


def _json(doc, status: int = 200) -> Response:
    return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _page() -> str:
    return resources.files("bog").joinpath("assets/web/index.html").read_text()


def create_app(state) -> FastAPI:
    app = FastAPI(title="bog monitor", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    page = _page()

    @app.get("/metrics")
    async def metrics() -> Response:
        # the classic text format every Prometheus 2.x understands (prometheus_client's
        # "latest" advertises version=1.0.0, which older scrapers do not know)
        return Response(exposition(state.registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    @app.get("/health")
    async def get_health() -> Response:
        code, doc = health(state)
        return _json(doc, code)

    @app.get("/alerts")
    async def get_alerts() -> Response:
        a = state.alerts
        return _json({
            "instance": state.instance,
            "firing": [s.to_json() for s in a.firing()],
            "pending": [s.to_json() for s in a.pending()],
            "firings_total": a.firings_total,
            "rules": [{"name": r.name, "severity": r.severity, "for_s": r.for_s,
                       "summary": r.summary} for r in a.rules],
        })

    @app.get("/api/history")
    async def get_history(seconds: float = Query(300.0, gt=0, le=3600)) -> Response:
        return _json(history_series(state, seconds))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


def _f(v):
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def history_series(state, seconds: float) -> dict:
    """Series for the page's charts: one point per history reading in the last ``seconds``."""
    h = state.history
    last = h.latest
    out = {"instance": state.instance, "t": [], "tick_p50_ns": [], "tick_p99_ns": [],
           "ticks_per_s": [], "daily_pnl_usd": [], "realized_pnl_usd": [], "position_btc": []}
    if last is None:
        return out
    for r in h.since(last.mono_s - seconds):
        w = Window(h, r)
        out["t"].append(r.wall_ns / 1e9)
        out["tick_p50_ns"].append(_f(w.quantile(0.5, "engine", "tick_processing_ns",
                                                LATENCY_NS_EDGES, CHART_WINDOW_S)))
        out["tick_p99_ns"].append(_f(w.quantile(0.99, "engine", "tick_processing_ns",
                                                LATENCY_NS_EDGES, CHART_WINDOW_S)))
        d = w.delta("engine", "ticks_total", CHART_WINDOW_S)
        cov = w.covered_s("engine", CHART_WINDOW_S)
        out["ticks_per_s"].append(_f(d / cov) if d is not None and cov > 0 else None)
        for k, fld in (("daily_pnl_usd", "daily_pnl_usd"), ("realized_pnl_usd", "realized_pnl_usd"),
                       ("position_btc", "position_btc")):
            v = w.gauge("engine", fld)
            out[k].append(None if v is None else _f(v))
    return out
