"""Verbs of the live venue gateway (none yet).

When bog trades on a real venue, its operator verbs live here, not in the other modules:
e.g. listing open orders at the venue, cancelling everything there, showing the gateway's
connection state. Like every verb module, this one exposes ``register(sub, common)``, which
``bog.ctl.cli`` calls to add its subcommands; each subcommand names its handler with
``set_defaults(func=...)``, and the handler takes ``(args, cfg)`` and returns the exit status::

    def register(sub, common) -> None:
        p = sub.add_parser("orders", parents=[common], help="open orders at the venue")
        p.set_defaults(func=cmd_orders)

    def cmd_orders(args, cfg) -> int:
        ...

Errors the user can act on are raised as ``bog.ctl.common.CtlError`` (one line, no
traceback). Like the control verbs, anything that changes state goes through shared memory
owned by the process that acts (never HTTP), and waits for that process's acknowledgement.
"""

from __future__ import annotations


def register(sub, common) -> None:
    """No gateway verbs yet."""
