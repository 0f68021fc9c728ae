"""``bogctl config NAME``: print the shipped Prometheus/Alertmanager/Grafana assets."""

from __future__ import annotations

from bog.monitor.assets import NAMES


def register(sub, common) -> None:
    c = sub.add_parser("config", parents=[common], help="print shipped Prometheus/Grafana assets")
    c.add_argument("what", choices=NAMES, help="which asset: " + ", ".join(NAMES))
    c.set_defaults(func=cmd_config)


def cmd_config(args, cfg) -> int:
    from bog.monitor.assets import render

    print(render(args.what, instance=args.instance, port=cfg.monitor.port,
                 strategy=cfg.strategy.name), end="")
    return 0
