"""``bogctl``: look at and steer a running bog from the local machine.

    bogctl status [--json]                    one screen, read straight from shared memory;
                                              exit 0 healthy, 1 degraded, 2 not running
    bogctl start|stop|restart [PROCESS]       systemctl on bog-trading.target / bog-PROCESS
                                              when the units are installed, else the local
                                              supervisor (``bog run``)
    bogctl logs [--pattern P] [--since T] [-p err] [-f] [--process P] [-n N] [--json]
                                              journalctl when the units are installed, else
                                              logs/bog.log; P: circuit-breaker fills-dropped
                                              position-correction sequence-gap stale-data
                                              signals critical, or any text
    bogctl alerts [--json]                    the monitor's alerts; exit 0 none firing, 1 firing
    bogctl metrics [--grep TEXT ...] [--json] the monitor's /metrics, filtered
    bogctl breaker reset                      close a latched circuit breaker
    bogctl pause | resume                     stop / restart quoting (quotes are cancelled; a
                                              pause survives engine restarts until resume)
    bogctl reconcile                          run a position reconciliation now
    bogctl config prometheus|alerts|rules|alertmanager|grafana|grafana-alerts   print the shipped assets
    bogctl install-units [--prefix DIR] [--config F] [--instance N] [--user U] [--print]
                                              render the systemd units for this venv

Common options: ``--instance`` (default ``$BOG_INSTANCE`` or ``default``), ``--config``
(default ``$BOG_CONFIG``, else ``/etc/bog/bog.toml`` if it exists, else built-in defaults;
it gives the monitor's address), ``--json``.

Control actions go through the owner-only shared-memory control block: only the user that
runs bog (or root) can use them, and there is no HTTP control surface at all. They are
refused when the engine is not running and report "applied" only once the engine
acknowledged them (``--timeout``, default 2 s). Output has no
colour when piped (or with NO_COLOR set). Errors are one line on stderr, never a traceback.

One module per concern; each verb module has ``register(sub, common)`` adding its
subcommands to the parser (``set_defaults(func=cmd_...)``):

    cli.py       entry point: the numba-cache fallback, the parser, dispatch, error mapping
    common.py    exit codes, CtlError, output and waiting helpers
    status.py    ``status``
    control.py   ``breaker reset``, ``pause``, ``resume``, ``reconcile`` (control block)
    local.py     ``start``, ``stop``, ``restart`` (systemctl, else the local supervisor)
    procs.py     process discovery (``bog run`` and its children), pid checks
    systemd.py   units state, systemctl, ``install-units``
    monitor.py   the monitor's HTTP side: ``alerts``, ``metrics``, is it up
    logs.py      ``logs``
    assets.py    ``config NAME``
    venue.py     verbs of the live venue gateway (none yet)

Nothing is imported here: ``bog.ctl.cli.main`` first makes numba importable for any user,
then imports the verb modules.
"""
