"""The Prometheus collector: builds every metric family from shared memory at scrape time.

No state is mirrored: each ``collect()`` reads the blocks once (``ShmReader.read``) and turns
``bog.shm.metrics.CATALOGUE`` into metric families. Histogram buckets in shared memory are
per-bucket counts; the exposition's are cumulative (``le``), ``_count`` is the ``+Inf`` bucket.
A process that is not running exports no series of its own (Prometheus marks them stale), only
``bog_up{process} 0``.

Besides the catalogue, the monitor exports what only it knows (names spelled here, once):
per-process up/uptime/start time/restarts (``bog_up{process="gateway"}`` only when a gateway
is expected: execution mode dry-run or live, see ``reader.ShmReader``), the fill queue depth (read from the queue itself),
the alerts it evaluates, its own scrape cost and its HTTP connections (``ConnectionStats``).
"""

from __future__ import annotations

import time

import numpy as np
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bog.shm.metrics import CATALOGUE, MetricSpec
from bog.shm.segment import untrusted_total

# Monitor-own metrics (counters without _total: prometheus_client appends it)
UP = "bog_up"
UPTIME = "bog_uptime_seconds"
START_TIME = "bog_process_start_time_seconds"
RESTARTS = "bog_process_restarts"
FILL_QUEUE_DEPTH = "bog_fill_queue_depth"
ALERT_FIRING = "bog_alert_firing"
ALERT_FIRINGS = "bog_alert_firings"
SCRAPE_DURATION = "bog_monitor_scrape_duration_seconds"
CONNECTIONS = "bog_monitor_connections"
MAX_CONNECTIONS = "bog_monitor_max_connections"
CONNECTIONS_ACCEPTED = "bog_monitor_connections_accepted"
CONNECTIONS_CLOSED = "bog_monitor_connections_closed"
ACCEPT_ERRORS = "bog_monitor_accept_errors"
MONITOR_UNTRUSTED = "bog_monitor_shm_untrusted_segments"
MONITOR_NAMES = (UP, UPTIME, START_TIME, RESTARTS + "_total", FILL_QUEUE_DEPTH, ALERT_FIRING,
                 ALERT_FIRINGS + "_total", SCRAPE_DURATION, CONNECTIONS, MAX_CONNECTIONS,
                 CONNECTIONS_ACCEPTED + "_total", CONNECTIONS_CLOSED + "_total",
                 ACCEPT_ERRORS + "_total", MONITOR_UNTRUSTED + "_total")


def le_label(edge: float) -> str:
    """The ``le`` label value of a bucket edge, as prometheus_client writes it ("1000.0")."""
    return floatToGoString(edge)


def _family(spec: MetricSpec, rec: np.void):
    v = rec[spec.field] if spec.kind != "histogram" else None
    k = spec.scale  # counters and gauges: exported value = field x scale (e.g. ns -> s)
    if spec.kind == "counter":
        if spec.label_field:  # label values read from the block (slot 0 = free)
            f = CounterMetricFamily(spec.name, spec.help, labels=[spec.label])
            for lv, x in zip(rec[spec.label_field], v):
                if int(lv):
                    f.add_metric([str(int(lv))], float(x) * k)
            if spec.other_field:
                f.add_metric(["other"], float(rec[spec.other_field]) * k)
            return f
        if spec.label:
            f = CounterMetricFamily(spec.name, spec.help, labels=[spec.label])
            for lv, x in zip(spec.label_values, v):
                f.add_metric([lv], float(x) * k)
            return f
        return CounterMetricFamily(spec.name, spec.help, value=float(v) * k)
    if spec.kind == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, value=float(v) * k)
    buckets = rec[spec.field + "_bucket"]
    cum = np.cumsum(buckets.astype(np.float64))
    pairs = [(le_label(e), float(c)) for e, c in zip(spec.edges, cum[:-1])]
    pairs.append(("+Inf", float(cum[-1])))
    return HistogramMetricFamily(spec.name, spec.help, buckets=pairs,
                                 sum_value=float(rec[spec.field + "_sum"]))


class BogCollector(Collector):
    """Yields the families of one instance. ``state`` is the monitor's ``MonitorState``."""

    def __init__(self, state):
        self.state = state
        self.last_duration_s = 0.0

    def collect(self):
        t0 = time.perf_counter()
        st = self.state
        r = st.read()
        for spec in CATALOGUE:
            info = r.procs.get(spec.process)  # the gateway: only when expected (not paper)
            rec = None if info is None else info.rec
            if rec is not None:
                yield _family(spec, rec)

        up = GaugeMetricFamily(UP, "1 if the process runs its main loop with a fresh "
                               "heartbeat, else 0", labels=["process"])
        uptime = GaugeMetricFamily(UPTIME, "Seconds since the process started",
                                   labels=["process"])
        start = GaugeMetricFamily(START_TIME, "Process start time, seconds since the epoch",
                                  labels=["process"])
        restarts = CounterMetricFamily(RESTARTS, "Process restarts: the supervisor's count "
                                       "under bog run, else crashed owners replaced (from the "
                                       "segment header)", labels=["process"])
        for p, info in r.procs.items():
            up.add_metric([p], 1.0 if info.up else 0.0)
            restarts.add_metric([p], float(info.restarts))
            if info.rec is not None and info.start_ns:
                uptime.add_metric([p], (r.wall_ns - info.start_ns) / 1e9)
                start.add_metric([p], info.start_ns / 1e9)
        up.add_metric(["monitor"], 1.0)
        uptime.add_metric(["monitor"], (r.wall_ns - st.started_ns) / 1e9)
        start.add_metric(["monitor"], st.started_ns / 1e9)
        yield from (up, uptime, start, restarts)

        if r.fill_depth is not None:
            yield GaugeMetricFamily(FILL_QUEUE_DEPTH, "Fills waiting in the fill queue",
                                    value=float(r.fill_depth))

        firing = GaugeMetricFamily(ALERT_FIRING, "1 while the monitor's alert fires, else 0 "
                                   "(evaluated by the monitor every second)")
        count = CounterMetricFamily(ALERT_FIRINGS, "Times the monitor's alert started firing",
                                    labels=["alertname", "severity"])
        states = st.alerts.states
        for rule in st.alerts.rules:
            count.add_metric([rule.name, rule.severity], float(st.alerts.firings_total[rule.name]))
        for s in sorted(states.values(), key=lambda s: s.key):
            labels = {"alertname": s.rule.name, "severity": s.rule.severity, **s.labels}
            firing.add_sample(ALERT_FIRING, labels, 1.0 if s.firing else 0.0)
        yield firing
        yield count
        yield CounterMetricFamily(MONITOR_UNTRUSTED, "Shared-memory segments the monitor "
                                  "refused: owned by another user or not mode 0600 (possible "
                                  "spoofing)", value=float(untrusted_total()))
        yield GaugeMetricFamily(SCRAPE_DURATION, "Time the previous scrape spent reading shared "
                                "memory and building families", value=self.last_duration_s)
        cs = getattr(st, "connections", None)
        if cs is not None:
            yield from _connection_families(cs)
        self.last_duration_s = time.perf_counter() - t0


def _connection_families(cs):
    yield GaugeMetricFamily(CONNECTIONS, "HTTP connections open to the monitor", value=cs.open)
    yield GaugeMetricFamily(MAX_CONNECTIONS, "The monitor's connection cap ([monitor] "
                            "max_connections, lowered to fit RLIMIT_NOFILE)",
                            value=cs.max_connections)
    yield CounterMetricFamily(CONNECTIONS_ACCEPTED, "HTTP connections the monitor accepted",
                              value=cs.accepted_total)
    closed = CounterMetricFamily(CONNECTIONS_CLOSED, "HTTP connections the monitor closed itself, "
                                 "by reason (evicted_idle, refused, header_timeout, "
                                 "keepalive_timeout)", labels=["reason"])
    for reason, n in cs.closed_total.items():
        closed.add_metric([reason], float(n))
    yield closed
    yield CounterMetricFamily(ACCEPT_ERRORS, "accept() failures (EMFILE, ENFILE, ENOBUFS, ENOMEM): "
                              "connections left waiting while the monitor is out of descriptors",
                              value=cs.accept_errors_total)


# -- exposition --------------------------------------------------------------------------------
# prometheus_client's generate_latest escapes and validates every name and label of every sample
# at every scrape (~1 ms for our ~700 samples). Our label sets are a fixed, small set, so the
# text before each value is built once and cached; only the values are formatted per scrape.
# The output is the same classic text format (a test parses both and compares them).
_PREFIX: dict[tuple, str] = {}
_HEAD: dict[tuple, str] = {}
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _value(v: float) -> str:
    v = float(v)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def exposition(registry) -> bytes:
    """The text exposition (format 0.0.4) of ``registry``, with cached per-series prefixes."""
    if len(_PREFIX) > 20_000:  # label sets are bounded; this only guards against surprises
        _PREFIX.clear()
    out: list[str] = []
    for metric in registry.collect():
        mtype = metric.type
        if mtype not in _TYPES:
            raise ValueError(f"metric type {mtype} not supported by this exposition")
        mname = metric.name + "_total" if mtype == "counter" else metric.name
        hk = (mname, mtype, metric.documentation)
        head = _HEAD.get(hk)
        if head is None:
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            head = _HEAD[hk] = f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n"
        out.append(head)
        for s in metric.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            prefix = _PREFIX.get(key)
            if prefix is None:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in key[1])
                prefix = _PREFIX[key] = f"{s.name}{{{labels}}} " if labels else f"{s.name} "
            out.append(prefix)
            out.append(_value(s.value))
            out.append("\n")
    return "".join(out).encode()
