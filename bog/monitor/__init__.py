"""The monitor: reads feed and engine shared memory, serves Prometheus metrics, /health,
/alerts and a live page, and evaluates the guide's alerts itself.

    reader.py     follow the segments of one instance (read-only), process states, restarts
    history.py    one reading per second; windowed deltas and quantiles (like increase())
    alerts.py     the alert rules and their pending/firing/resolved state machine
    collector.py  prometheus_client Collector building every family at scrape time
    health.py     the guide's /health document
    app.py        FastAPI routes (GET only)
    state.py      what the routes and the housekeeping share
    process.py    MonitorService: the process lifecycle (uvicorn in-process)
    assets.py     render the shipped Prometheus/Alertmanager/Grafana files (bogctl config)
"""
