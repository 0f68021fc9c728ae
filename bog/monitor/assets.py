"""The shipped monitoring files (``bog/assets``), rendered for one instance.

``render(name)`` is what ``bogctl config NAME`` prints:

    prometheus      scrape config (job bog-trading, 1 s) + rule_files + alertmanager target
    rules           the guide's recording rules (corrected)
    alerts          the guide's alerting rules (corrected) + every threshold alert
    alertmanager    example Alertmanager config routing by severity
    grafana         the dashboard JSON (import it in Grafana: Dashboards > New > Import)
    grafana-alerts  Grafana alert-rule provisioning file with the guide's latency SLA alert

Only ``prometheus`` has parameters (target port, instance label, strategy label).
"""

from __future__ import annotations

from importlib import resources

FILES = {
    "prometheus": "prometheus.yml",
    "rules": "rules.yml",
    "alerts": "alerts.yml",
    "alertmanager": "alertmanager.yml",
    "grafana": "grafana-dashboard.json",
    "grafana-alerts": "grafana-alert-rules.yml",
}
NAMES = tuple(FILES)


def path(name: str):
    """A Traversable for the asset ``name`` (see ``FILES``)."""
    if name not in FILES:
        raise ValueError(f"unknown asset {name!r}: choose one of {', '.join(NAMES)}")
    return resources.files("bog").joinpath("assets", FILES[name])


def render(name: str, instance: str = "default", port: int = 9090,
           strategy: str = "simple-spread") -> str:
    """The text of asset ``name`` for ``instance`` whose monitor listens on ``port``."""
    from bog.shm.segment import validate_instance

    validate_instance(instance)
    if not strategy.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"strategy label {strategy!r}: use letters, digits, - and _")
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port}: must be 1..65535")
    text = path(name).read_text()
    if name == "prometheus":
        text = (text.replace("@PORT@", str(int(port)))
                .replace("@INSTANCE@", instance)
                .replace("@STRATEGY@", strategy))
    return text
