"""systemd units for bog, rendered for one venv, one config file and one instance.

``bogctl install-units`` writes what ``render_units()`` returns. The layout:

- ``bog-feed.service``, ``bog-engine.service``, ``bog-monitor.service`` (and
  ``bog-gateway.service`` when ``execution.mode`` is dry-run or live): one ``Type=notify``
  unit per process (READY after the kernels are compiled, a watchdog fed from each process's
  housekeeping loop), pinned with ``CPUAffinity=`` from the config's ``[process]`` cores.
  The engine is ordered after the feed (ordering only); the monitor depends on neither.
- ``bog-gateway.service`` (dry-run / live only; paper renders no gateway unit at all): the
  execution gateway, ordered after the engine, the only unit with the venue API key
  (``LoadCredential=lighter-api-key:...``, read by systemd as root from an owner-only file and
  handed to the gateway alone in ``$CREDENTIALS_DIRECTORY``) and outbound network.
- ``bog-trading.target``: starts all of them; every unit is ``PartOf=`` it, so
  ``systemctl restart bog-trading.target`` restarts them all (engine stopped before the feed).
- ``bog-trading.slice``: all three run in it, so ``journalctl -u bog-trading.slice`` is every
  line the processes logged. systemd appends ``.service`` to a bare name, which is why the
  guide's ``journalctl -u bog-trading`` / ``systemctl restart bog-trading`` are spelled with
  an explicit suffix here (docs/operations.md).
- ``sysusers.d/bog.conf``: the dedicated system user (``systemd-sysusers`` creates it).

The processes run as that user with owner-only state (``/var/lib/bog``: the journal) and
cache (``/var/cache/bog``: numba's compiled kernels, since the sources are read-only under
``ProtectSystem=strict``) directories, and as much hardening as the design allows; what is
not set and why is commented in the rendered files themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from bog import __version__
from bog.config import Config

TARGET = "bog-trading.target"
SLICE = "bog-trading.slice"
PROCESSES = ("feed", "engine", "monitor")  # every execution mode
ALL_PROCESSES = PROCESSES + ("gateway",)  # bog-gateway: execution.mode dry-run / live only
# where LoadCredential= reads the venue API key (root-owned, 0600); a drop-in can change it
API_KEY_CREDENTIAL_PATH = "/etc/bog/lighter-api-key"
SYSUSERS_FILE = "bog.conf"
UNIT_DIR = "etc/systemd/system"
SYSUSERS_DIR = "etc/sysusers.d"

# MemoryMax per process: numba + llvmlite + numpy is ~150 MB resident; the rings are small.
MEMORY_MAX = {"feed": "768M", "engine": "1G", "monitor": "768M", "gateway": "768M"}
DESCRIPTION = {
    "gateway": "execution gateway: order intents to the venue (dry-run / live)",
    "feed": "market data feed: publishes snapshots into the ticks ring",
    "engine": "strategy and paper execution on every tick",
    "monitor": "monitor: /metrics, /health, /alerts on the loopback",
}


def unit_name(process: str) -> str:
    return f"bog-{process}.service"


def processes_for(cfg: Config) -> tuple[str, ...]:
    """The units of this config: the gateway only when ``execution.mode`` is not paper."""
    return PROCESSES if cfg.execution.mode == "paper" else ALL_PROCESSES


@dataclass(frozen=True)
class UnitOptions:
    """What the units are rendered for.

    ``venv``: the directory whose ``bin/bog`` runs the processes (the installed venv).
    ``config``: absolute path of the TOML config the processes read (also the source of the
    cores, real-time priority, market and monitor address rendered into the units).
    ``watchdog_s``: ``WatchdogSec=``; each process pings at half of it from housekeeping.
    ``systemd_version``: the target host's systemd (``RestartSteps=`` needs >= 254).
    ``ncpu``: the target's CPU count; a configured core it lacks becomes ``core % ncpu``.
    """

    venv: str
    config: str
    cfg: Config
    instance: str = "default"
    user: str = "bog"
    watchdog_s: float = 10.0
    restart_s: float = 2.0
    systemd_version: int = 252
    ncpu: int = 0  # CPUs of the target machine (0: render the configured cores as they are)
    extra_env: dict = field(default_factory=dict)


def _quote(arg: str) -> str:
    """One ExecStart= argument: '%' escaped (specifiers), quoted if it has blanks or quotes."""
    arg = arg.replace("%", "%%")
    if re.search(r"[\s\"'\\;]", arg) or arg == "":
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _under_home(path: str) -> bool:
    p = os.path.realpath(path)
    return any(p == d or p.startswith(d + "/") for d in ("/home", "/root", "/run/user"))


def _secs(v: float) -> str:
    return f"{v:g}s"


def _cores(cfg: Config, process: str, ncpu: int = 0) -> list[int]:
    """The CPUs a process's threads pin to: the engine has a hot and a housekeeping thread."""
    pc = cfg.process
    if process == "engine":
        want = [pc.engine_core, getattr(pc, "engine_housekeeping_core", -1)]
        if pc.engine_core < 0:
            return []  # the hot thread is not pinned: do not confine the process
    else:
        want = [{"feed": pc.feed_core, "monitor": pc.monitor_core,
                 "gateway": pc.gateway_core}[process]]
    # a core the machine does not have: the same fallback as pin_to_core (core % ncpu)
    return sorted({(c % ncpu if ncpu and c >= ncpu else c) for c in want if c >= 0})


def _header(o: UnitOptions, what: str) -> list[str]:
    return [
        f"# {what} - rendered by `bogctl install-units` (bog {__version__})",
        f"# for venv {o.venv}, config {o.config}, instance {o.instance}, user {o.user}.",
        "# Re-render instead of editing; local changes go in a drop-in (systemctl edit UNIT).",
    ]


def _service(o: UnitOptions, process: str) -> str:
    cfg = o.cfg
    pc = cfg.process
    cores = _cores(cfg, process, o.ncpu)
    rt = pc.engine_realtime_priority if process == "engine" else 0
    exe = os.path.join(o.venv, "bin", "bog")
    argv = [exe, process, "--instance", o.instance, "--config", o.config]
    home = _under_home(o.venv) or _under_home(os.path.realpath(os.path.join(o.venv, "bin", "python"))) \
        or _under_home(o.config)
    loopback = cfg.monitor.host in ("127.0.0.1", "::1", "localhost")
    L = _header(o, unit_name(process))
    L += ["", "[Unit]", f"Description=bog {DESCRIPTION[process]} (instance {o.instance})",
          f"PartOf={TARGET}"]
    if process == "engine":
        L += ["# started after the feed, but no Wants=/Requires=: the engine waits for a missing",
              "# feed and survives its restarts, and its own restart must not start a feed that",
              "# was stopped on purpose",
              "After=bog-feed.service"]
    if process == "gateway":
        L += ["# started after the engine (it reads the engine's intent ring), but no Wants=:",
              "# it waits for a missing engine, and cancels everything at the venue when the",
              "# engine's heartbeat stops",
              "After=bog-engine.service"]
    L += ["# at most 10 starts in 5 minutes, then the unit stays failed (systemctl reset-failed)",
          "StartLimitIntervalSec=300", "StartLimitBurst=10"]
    L += ["", "[Service]", "Type=notify", "NotifyAccess=main",
          "ExecStart=" + " ".join(_quote(a) for a in argv),
          "Restart=always", f"RestartSec={_secs(o.restart_s)}"]
    if o.systemd_version >= 254:
        L += ["# back-off: the delay grows from RestartSec to 30 s over 5 restarts",
              "RestartSteps=5", "RestartMaxDelaySec=30s"]
    else:
        L += [f"# systemd {o.systemd_version} has no RestartSteps= (>= 254): fixed delay, "
              "bounded by StartLimitBurst"]
    L += ["# a cold numba cache compiles the kernels before READY=1 (tens of seconds)",
          "TimeoutStartSec=300", "TimeoutStopSec=20",
          f"WatchdogSec={_secs(o.watchdog_s)}",
          "# a hung process gets SIGABRT: faulthandler writes its Python stack to the journal",
          "LimitCORE=0",
          f"Slice={SLICE}",
          "StandardOutput=journal", "StandardError=journal",
          f"SyslogIdentifier=bog-{process}",
          f"LogExtraFields=BOG_INSTANCE={o.instance}",
          f"LogExtraFields=BOG_PROCESS={process}",
          f"LogExtraFields=BOG_MARKET={cfg.feed.market_id}",
          "",
          f"User={o.user}", f"Group={o.user}", "UMask=0077",
          "# owner-only /var/lib/bog (journal) and /var/cache/bog (numba kernels)",
          "StateDirectory=bog", "StateDirectoryMode=0700",
          "CacheDirectory=bog", "CacheDirectoryMode=0700",
          "WorkingDirectory=%S/bog",
          "Environment=BOG_STATE_DIR=%S/bog",
          "Environment=BOG_LOG_DIR=%S/bog/logs",
          "Environment=NUMBA_CACHE_DIR=%C/bog/numba",
          "Environment=PYTHONUNBUFFERED=1",
          "# no BLAS/OpenMP worker threads floating over the pinned cores",
          "Environment=OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"]
    for k, v in sorted(o.extra_env.items()):
        L.append(f"Environment={k}={v}".replace("%", "%%"))
    L += ["", "# pinning (from the config's [process] cores); each thread then pins itself to",
          "# its own core within this set"]
    if cores:
        L.append("CPUAffinity=" + " ".join(map(str, cores)))
    else:
        L.append(f"# {process}_core = -1: not pinned")
    if rt > 0:
        L += ["# real-time: the engine's hot thread (only) switches itself to SCHED_FIFO; the",
              "# bog user has no CAP_SYS_NICE, the limit lets it go up to this priority",
              f"LimitRTPRIO={rt}"]
    if process == "monitor":
        from bog.monitor.connections import RESERVED_FDS

        L += ["# descriptors: [monitor] max_connections HTTP connections plus what the monitor",
              "# keeps for itself; the monitor sizes its cap from this limit when it is smaller",
              f"LimitNOFILE={cfg.monitor.max_connections + RESERVED_FDS}"]
    if process == "gateway":
        L += _gateway_credential(cfg)
    L += [f"MemoryMax={MEMORY_MAX[process]}", "TasksMax=256"]
    L += ["", "# hardening (systemd-analyze security bog-*.service; docs/operations.md)",
          "NoNewPrivileges=yes",
          "CapabilityBoundingSet=",
          "ProtectSystem=strict",
          *(["# the venv, its Python or the config lives under /home or /root"] if home else []),
          f"ProtectHome={'read-only' if home else 'yes'}",
          "# /dev/shm (the rings) is shared: PrivateTmp= covers only /tmp and /var/tmp, and",
          "# PrivateDevices= bind-mounts the host's /dev/shm into the private /dev",
          "PrivateTmp=yes",
          "PrivateDevices=yes",
          "DevicePolicy=closed",
          "# no PrivateUsers=: each unit would get its own user namespace, and the monitor",
          "# could no longer see the feed's and engine's /proc entries (to tell a live owner",
          "# of a segment from a dead one); ProtectProc=invisible still hides other users'",
          "PrivateUsers=no",
          "PrivateMounts=yes",
          "ProtectClock=yes",
          "ProtectHostname=yes",
          "ProtectKernelTunables=yes",
          "ProtectKernelModules=yes",
          "ProtectKernelLogs=yes",
          "ProtectControlGroups=yes",
          "ProtectProc=invisible",
          "ProcSubset=pid",
          "RestrictNamespaces=yes",
          "RestrictSUIDSGID=yes",
          "LockPersonality=yes",
          "SystemCallArchitectures=native",
          "SystemCallFilter=@system-service",
          "SystemCallFilter=~@privileged @mount @swap @reboot @module @raw-io @obsolete "
          "@cpu-emulation @debug",
          "SystemCallErrorNumber=EPERM",
          "# numba compiles (or loads) machine code at run time: W^X memory would break it",
          "MemoryDenyWriteExecute=no",
          "# engine restarts recover fills from the dead engine's queue in /dev/shm: keep IPC",
          "RemoveIPC=no"]
    if rt == 0:
        L.append("RestrictRealtime=yes")
    if process == "monitor":
        L += ["# HTTP on the loopback only (the [monitor] host/port of the config)",
              "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"]
        if loopback:
            L += ["IPAddressDeny=any", "IPAddressAllow=localhost"]
        else:
            L += [f"# [monitor] host = {cfg.monitor.host}: no IP address restriction"]
    elif process == "feed" and cfg.feed.source == "lighter":
        L += _venue_network(cfg)
    elif process == "gateway":
        L += _gateway_network(cfg)
    else:
        L += ["# no network at all: shared memory in, shared memory out",
              "PrivateNetwork=yes", "IPAddressDeny=any", "RestrictAddressFamilies=AF_UNIX"]
    L += ["", "[Install]", f"WantedBy={TARGET}"]
    return "\n".join(L) + "\n"


def _venue_network(cfg: Config) -> list[str]:
    """The lighter feed: outbound network to the venue (and DNS); nothing listens. A venue
    URL on the loopback (bog fake-venue) keeps the addresses restricted to it."""
    from urllib.parse import urlsplit

    from bog.venue.lighter import ws_url

    host = urlsplit(ws_url(cfg.venue.network, cfg.venue.url)).hostname or ""
    L = ["# feed.source = lighter: outbound WebSocket/HTTPS to the venue (docs/lighter.md);",
         "# the synthetic and replay sources render PrivateNetwork=yes instead",
         "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"]
    if host in ("127.0.0.1", "localhost", "::1"):
        L += [f"# venue URL on the loopback ({host}): no other address",
              "IPAddressDeny=any", "IPAddressAllow=localhost"]
    else:
        L += [f"# venue {host}: its addresses are not fixed, so no IPAddressAllow= list"]
    return L


def _gateway_network(cfg: Config) -> list[str]:
    """bog-gateway: outbound WebSocket/HTTPS to the venue's order API; nothing listens."""
    from urllib.parse import urlsplit

    from bog.venue.lighter import ws_url

    host = urlsplit(ws_url(cfg.gateway.network or "testnet", cfg.gateway.url)).hostname or ""
    L = ["# the gateway talks to the venue (orders, account stream, REST reconciliation):",
         "# outbound WebSocket/HTTPS; dry-run sends nothing but keeps the same sandbox",
         "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"]
    if host in ("127.0.0.1", "localhost", "::1"):
        L += [f"# venue URL on the loopback ({host}, bog fake-venue): no other address",
              "IPAddressDeny=any", "IPAddressAllow=localhost"]
    else:
        L += [f"# venue {host}: its addresses are not fixed, so no IPAddressAllow= list"]
    return L


def _gateway_credential(cfg: Config) -> list[str]:
    """The venue API key as a systemd credential: systemd (root) reads the owner-only file
    and gives bog-gateway, and no other unit, a private read-only copy."""
    L = ["# the venue API key: systemd reads this root-owned 0600 file at start and hands a",
         "# private read-only copy to this unit only ($CREDENTIALS_DIRECTORY/lighter-api-key,",
         "# readable by its user alone); the key never is in the environment or a command line"]
    if cfg.gateway.api_key_file:
        L += [f"# gateway.api_key_file = {cfg.gateway.api_key_file} in the config: the gateway",
              "# reads that file itself (owned by its user, mode 0600) and ignores the",
              "# credential; set it to \"\" to use the credential"]
    if cfg.execution.mode == "live":
        L.append(f"LoadCredential=lighter-api-key:{API_KEY_CREDENTIAL_PATH}")
    else:
        L += ["# dry-run never signs nor sends; given the key it checks that the credential is",
              "# readable and well-formed (a rehearsal for live): uncomment (in a drop-in) for that",
              f"#LoadCredential=lighter-api-key:{API_KEY_CREDENTIAL_PATH}"]
    return L


def _target(o: UnitOptions) -> str:
    procs = processes_for(o.cfg)
    units = " ".join(unit_name(p) for p in procs)
    L = _header(o, TARGET)
    n = {3: "three", 4: "four"}.get(len(procs), str(len(procs)))
    L += [f"# systemctl start|stop|restart bog-trading.target acts on all {n} processes",
          "# (they are PartOf= this target); systemctl enable bog-trading.target starts bog at",
          "# boot.", "",
          "[Unit]", f"Description=bog market-making pipeline (instance {o.instance})",
          f"Wants={units}", f"After={units}", "", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(L) + "\n"


def _slice(o: UnitOptions) -> str:
    L = _header(o, SLICE)
    L += ["# journalctl -u bog-trading.slice: every line the three processes logged;",
          "# systemd-cgtop bog.slice/bog-trading.slice: their memory (and CPU) together.", "",
          "[Unit]", "Description=bog trading processes (feed, engine, monitor)",
          "Before=slices.target", "", "[Slice]", "MemoryAccounting=yes",
          "# no CPUAccounting=/CPUWeight= here or in the units: on a kernel with",
          "# CONFIG_RT_GROUP_SCHED and the cgroup-v1 cpu controller, a unit in a cpu cgroup gets",
          "# no real-time budget and the engine's SCHED_FIFO request fails with EPERM"]
    return "\n".join(L) + "\n"


def _sysusers(o: UnitOptions) -> str:
    return (f"# The system user bog runs as (systemd-sysusers); rendered by bogctl install-units\n"
            f'u {o.user} - "bog market maker" /var/lib/bog\n')


def render_units(o: UnitOptions) -> dict[str, str]:
    """Relative path (under the install prefix) -> file text."""
    out = {f"{UNIT_DIR}/{unit_name(p)}": _service(o, p) for p in processes_for(o.cfg)}
    out[f"{UNIT_DIR}/{TARGET}"] = _target(o)
    out[f"{UNIT_DIR}/{SLICE}"] = _slice(o)
    out[f"{SYSUSERS_DIR}/{SYSUSERS_FILE}"] = _sysusers(o)
    return out


class UnitPathError(ValueError):
    """A path the units need (venv, its Python, bog's sources, the config) is one their own
    sandboxing hides: the services would fail with ``status=203/EXEC`` or an import error."""


def hidden_paths(service_text: str) -> dict[str, str]:
    """Directories a rendered service cannot see at all -> the line that hides them.

    Read from the unit's own settings (so it follows them): ``PrivateTmp=`` (a private /tmp
    and /var/tmp), ``ProtectHome=yes|tmpfs`` (``read-only`` still shows them),
    ``InaccessiblePaths=``, ``TemporaryFileSystem=``."""
    hidden: dict[str, str] = {}
    for line in service_text.splitlines():
        key, sep, val = line.partition("=")
        if not sep or line.startswith(("#", ";")):
            continue
        val = val.strip()
        paths: list[str] = []
        if key == "PrivateTmp" and val in ("yes", "true", "1", "on"):
            paths = ["/tmp", "/var/tmp"]
        elif key == "ProtectHome" and val in ("yes", "true", "1", "on", "tmpfs"):
            paths = ["/home", "/root", "/run/user"]
        elif key == "InaccessiblePaths":
            paths = [p.lstrip("-+") for p in val.split()]
        elif key == "TemporaryFileSystem":
            paths = [p.split(":", 1)[0] for p in val.split()]
        for p in paths:
            hidden[os.path.normpath(p)] = line
    return hidden


def needed_paths(o: UnitOptions) -> dict[str, str]:
    """What the services must see -> why: the venv, the Python it runs, bog's own sources
    (an editable install lives in the checkout) and the config."""
    python = os.path.join(o.venv, "bin", "python")
    need = {o.venv: "the venv", os.path.realpath(o.venv): "the venv",
            os.path.realpath(python): "the venv's Python", o.config: "the config"}
    import bog

    if os.path.realpath(o.venv) == os.path.realpath(sys.prefix):  # the bog this venv runs
        need[os.path.dirname(os.path.realpath(bog.__file__))] = "bog's sources"
    return need


def check_visible(o: UnitOptions, files: dict[str, str] | None = None) -> None:
    """Raise UnitPathError if a unit would not see the venv, its Python, bog or the config."""
    files = files if files is not None else render_units(o)
    for process in processes_for(o.cfg):
        hidden = hidden_paths(files[f"{UNIT_DIR}/{unit_name(process)}"])
        for path, what in needed_paths(o).items():
            p = os.path.normpath(os.path.abspath(path))
            for h, line in hidden.items():
                if p == h or p.startswith(h.rstrip("/") + "/"):
                    if what == "the config":
                        fix = "put the config where they can read it, e.g. /etc/bog/bog.toml"
                    else:
                        fix = ("the services would fail to start (status=203/EXEC); install "
                               "bog where they can see it, e.g. python3 -m venv /opt/bog/venv "
                               "&& /opt/bog/venv/bin/pip install .")
                    raise UnitPathError(f"{what} {path} is under {h}, which the units hide "
                                        f"({line} in {unit_name(process)}): {fix}")


def systemd_version() -> int:
    """The local systemd's version (``systemctl --version``), 0 if there is none."""
    exe = shutil.which("systemctl")
    if not exe:
        return 0
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else 0


def systemd_running() -> bool:
    """True when systemd is the init system here (the sd_booted() test)."""
    return os.path.isdir("/run/systemd/system")


def units_installed() -> bool:
    """True when systemd runs here and knows bog-trading.target."""
    if not systemd_running() or not shutil.which("systemctl"):
        return False
    try:
        r = subprocess.run(["systemctl", "show", "-p", "LoadState", "--value", TARGET],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and r.stdout.strip() == "loaded"


def write_units(files: dict[str, str], prefix: str) -> list[str]:
    """Write the rendered files under ``prefix`` (0644); returns the paths written."""
    written = []
    for rel, text in files.items():
        path = os.path.join(prefix, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
    return written


def activate(prefix: str, user: str, venv: str, config: str) -> list[str]:
    """After writing into ``/``: create the user, reload systemd, check the user can run bog.

    Returns warnings (each one line, saying what to do)."""
    warnings = []
    sysusers = os.path.join(prefix, SYSUSERS_DIR, SYSUSERS_FILE)
    if shutil.which("systemd-sysusers"):
        r = subprocess.run(["systemd-sysusers", sysusers], capture_output=True, text=True)
        if r.returncode:
            warnings.append(f"systemd-sysusers failed: {r.stderr.strip()}")
    else:
        warnings.append(f"no systemd-sysusers: create the system user {user!r} yourself")
    if systemd_running():
        r = subprocess.run(["systemctl", "daemon-reload"], capture_output=True, text=True)
        if r.returncode:
            warnings.append(f"systemctl daemon-reload failed: {r.stderr.strip()}")
    python = os.path.join(venv, "bin", "python")
    if shutil.which("runuser") and os.geteuid() == 0:
        r = subprocess.run(["runuser", "-u", user, "--", python, "-c", "import bog"],
                           capture_output=True, text=True)
        if r.returncode:
            warnings.append(
                f"user {user!r} cannot run {python} ({r.stderr.strip().splitlines()[-1:] or '?'}):"
                " the venv and its Python must be readable by that user (a Python under /root"
                " is not); e.g. python3 -m venv /opt/bog/venv && /opt/bog/venv/bin/pip install .")
        if os.path.exists(config):
            r = subprocess.run(["runuser", "-u", user, "--", "test", "-r", config])
            if r.returncode:
                warnings.append(f"user {user!r} cannot read {config}: chmod/chgrp it "
                                f"(e.g. chgrp {user} {config}; chmod 640 {config})")
    if not os.path.exists(config):
        warnings.append(f"config {config} does not exist yet: create it "
                        f"(bog config-defaults > {config}) before starting the units")
    else:
        warnings += _shm_owner_warning(config, user)
    return warnings


def _shm_owner_warning(config: str, user: str) -> list[str]:
    """root's bogctl trusts only root's segments unless ``[process] shm_owner`` names the user
    the units run as (the segments are that user's, mode 0600)."""
    from bog.config import ConfigError, load_config

    try:
        owner = load_config(config, env={}).process.shm_owner
    except (ConfigError, OSError):
        return []  # the services will say what is wrong with it
    if owner in (user, str(_uid(user))):
        return []
    return [f"{config}: [process] shm_owner = {owner!r}: root's bogctl will refuse the "
            f"services' shared memory (it belongs to {user!r}); add shm_owner = \"{user}\" "
            "under [process]"]


def _uid(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


# The documented default layout, rendered into the repository's systemd/ directory for
# reading and review (a test keeps it equal to what the code renders).
REFERENCE = dict(venv="/opt/bog/venv", config="/etc/bog/bog.toml", instance="default",
                 user="bog", systemd_version=252)


def reference_files() -> dict[str, str]:
    from bog.config import load_config

    o = UnitOptions(cfg=load_config(None, env={}), **REFERENCE)
    return {os.path.basename(rel): text for rel, text in render_units(o).items()}


if __name__ == "__main__":  # python -m bog.units systemd/   (refresh the reference copy)
    for name, text in reference_files().items():
        with open(os.path.join(sys.argv[1], name), "w") as f:
            f.write(text)
        print(f"wrote {os.path.join(sys.argv[1], name)}")
