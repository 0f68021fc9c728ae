"""The monitor's HTTP side for bogctl: is it up, ``bogctl alerts`` and ``bogctl metrics``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from bog.ctl.common import CtlError
from bog.monitor import address
from bog.process import http_status
from bog.shm import segment as seg_mod


def register(sub, common) -> None:
    p = sub.add_parser("alerts", parents=[common], help="the monitor's alerts; exit 1 if firing")
    p.add_argument("--url", help="monitor base URL (default: the address the running monitor published, else the config's)")
    p.set_defaults(func=cmd_alerts)
    p = sub.add_parser("metrics", parents=[common], help="the monitor's /metrics")
    p.add_argument("--grep", action="append", help="only lines containing TEXT (repeat for OR)")
    p.add_argument("--url", help="monitor base URL (default: the address the running monitor published, else the config's)")
    p.set_defaults(func=cmd_metrics)


def locate(instance: str, cfg) -> tuple[str, str, int | None]:
    """Base URL of ``instance``'s monitor, where it came from, and the monitor's pid.

    The address the running monitor published in shared memory (``bog run --port P``),
    else the config's ``[monitor]`` host and port (the monitor is not running, or crashed).
    """
    try:
        addr = address.lookup(instance)
    except seg_mod.SegmentError:
        addr = None  # not readable by this user: the config's address is still worth a try
    if addr is not None:
        return addr.url(), "shared memory", addr.pid
    return address.base_url(cfg.monitor.host, cfg.monitor.port), "config", None


def monitor_up(instance: str, cfg) -> dict:
    """Is the monitor answering, and which critical alerts does it have firing."""
    base, source, pid = locate(instance, cfg)
    url = base + "/health"
    doc = {"up": False, "url": url, "address_from": source, "pid": pid}
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:  # 503: up, but not healthy
        code, body = e.code, e.read()
    except (OSError, ValueError):
        return doc
    doc.update(up=True, http_status=code)
    try:
        alerts = json.loads(body).get("alerts", [])
        doc["critical_alerts"] = [a.get("key", a["name"]) for a in alerts
                                  if a.get("severity") == "critical"]
    except (ValueError, KeyError, AttributeError, TypeError):
        doc["critical_alerts"] = None  # an answer, but not the monitor's document
    return doc


def _monitor_url(args, cfg, path: str) -> str:
    if args.url:
        return args.url.rstrip("/") + path
    return locate(args.instance, cfg)[0] + path


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5.0) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise CtlError(f"the monitor does not answer at {url} ({reason}): is bog-monitor "
                       "running ('bogctl status')? Another address: --url")


def cmd_alerts(args, cfg) -> int:
    url = _monitor_url(args, cfg, "/alerts")
    code, body = _get(url)
    if code != 200:
        raise CtlError(f"GET {url}: HTTP {code}")
    doc = json.loads(body)
    firing, pending = doc.get("firing", []), doc.get("pending", [])
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"bog instance {doc.get('instance', args.instance)}: {len(firing)} firing, "
              f"{len(pending)} pending")
        for a in firing + pending:
            val = a.get("value")
            val = "" if val is None else f"  value {val:g}" if isinstance(val, (int, float)) else f"  value {val}"
            print(f"  {a['state'].upper():<8} {a['severity']:<9} {a['name']:<24} since "
                  f"{a['since']}{val}  {a['summary']}")
    return 1 if firing else 0


def cmd_metrics(args, cfg) -> int:
    url = _monitor_url(args, cfg, "/metrics")
    code, body = _get(url)
    if code != 200:
        raise CtlError(f"GET {url}: HTTP {code}")
    text = body.decode()
    greps = args.grep or []
    if args.json:
        from prometheus_client.parser import text_string_to_metric_families

        out = []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if not greps or any(g in s.name for g in greps):
                    out.append({"name": s.name, "labels": s.labels, "value": s.value})
        print(json.dumps(out, indent=1))
        return 0 if out else 1
    lines = [ln for ln in text.splitlines() if not greps or any(g in ln for g in greps)]
    print("\n".join(lines))
    return 0 if lines else 1
