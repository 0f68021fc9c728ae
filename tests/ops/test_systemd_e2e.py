"""End-to-end under a real systemd: the rendered units, the journal, bogctl and the runbook.

One container for the module (booting and starting bog is the slow part); the tests run in
order and each leaves bog running for the next. What each checks:

1. bog-trading.target starts three Type=notify units as user bog, each pinned.
2. The journal has every process's lines with their priorities (-p filters).
3. The guide's latency and no-fills runbooks (and the engine core's) work as written in
   docs/runbook.md.
4. SIGKILL of the engine: systemd restarts it, position and PnL intact; ProcessDown runbook.
5. SIGSTOP: the watchdog kills and restarts the process (its stack is in the journal).
6. Daily loss trips the breaker: DailyLossLimit and CircuitBreakerTripped runbooks, reset.
7. Fill queue overflow: FillQueueOverflow runbook, then the larger queue and restart.
8. The monitor stopped: MonitorDown runbook. 9. start/stop/restart.
10. execution.mode dry-run: bog-gateway in the target (the API key as a systemd credential via
    a drop-in), bogctl status/stop/start gateway, its journal, the GatewayDown runbook; the key
    in no journal field, status output, command line or environment.
11. live against bog fake-venue (a transient unit on the container's loopback): the rendered
    LoadCredential= copy accepted, the venue connected, the dead-man armed; the gateway's live
    runbook sections. 12. nothing skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from opshelpers import (
    NUMBA_CACHE,
    PATH_IN_MACHINE,
    ROOT,
    VENV,
    Machine,
    require_tools,
    run_runbook_block,
)
from support import LIGHTER_RUNBOOK, runbook_blocks, section

pytestmark = pytest.mark.slow

CONFIG = """\
[feed]
rate_per_s = 500.0
sweep_depth_bps = 4.0

[execution]
maker_latency_ms = 20.0
reconcile_every_s = 0.2

[process]
# the units run as bog; root's bogctl trusts bog's shared memory (else it refuses it)
shm_owner = "bog"
housekeeping_ms = 20.0
# sleep when idle instead of busy-polling: the container shares this machine's two cores
engine_idle_sleep_us = 200.0
"""
WATCHDOG_S = 5
VENV_PYTHON = (VENV / "bin" / "python").resolve()
DROPIN = "/etc/systemd/system/bog-engine.service.d/00-test-fault.conf"
BLOCKS = runbook_blocks()
COVERED: set[str] = set()


def runbook(m: Machine, title: str, block: int | None = None, **kw) -> dict:
    blocks = section(BLOCKS, title)
    full = next(k for k in BLOCKS if k.startswith(title))
    out = {}
    for i, cmds in enumerate(blocks):
        if block is None or i == block:
            out.update(run_runbook_block(m, cmds, **kw))
            COVERED.add(f"{full}#{i}")
    return out


def status(m: Machine) -> dict:
    r = m.sh("bogctl status --json", check=False)
    assert r.returncode in (0, 1, 2), r.stderr
    return json.loads(r.stdout)


def main_pid(m: Machine, unit: str) -> int:
    """The unit's MainPID, checked: 0 (no main process) must never reach `kill`."""
    pid = int(m.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip() or 0)
    assert pid > 0, (f"{unit} has no main process (MainPID={pid}):\n"
                     + m.sh(f"systemctl status --no-pager -n 20 {unit}", check=False).stdout)
    return pid


def wait_status(m: Machine, pred, timeout_s: float = 60.0, what: str = "status") -> dict:
    end = time.monotonic() + timeout_s
    s: dict = {}
    while time.monotonic() < end:
        s = status(m)
        try:
            if pred(s):
                return s
        except (KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last status:\n{json.dumps(s, indent=1)}")


def restart_with_dropin(m: Machine, text: str | None) -> None:
    if text is None:
        m.sh(f"rm -f {DROPIN}")
    else:
        m.sh(f"mkdir -p {os.path.dirname(DROPIN)} && printf '{text}' > {DROPIN}")
    m.sh("systemctl daemon-reload && systemctl restart bog-trading.target", timeout=180)
    wait_status(m, lambda s: s["processes"]["engine"]["up"] and s["processes"]["feed"]["up"],
                what="feed and engine up after the restart")


@pytest.fixture(scope="module")
def numba_cache():
    """numba's cache for this checkout, warmed on the host once and reused across runs."""
    NUMBA_CACHE.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(NUMBA_CACHE))
    subprocess.run([sys.executable, "-m", "bog.warmup"], env=env, check=True,
                   capture_output=True, timeout=600)
    return NUMBA_CACHE


# Where the checkout's venv is mounted in the container when the units could not see it
# where it is (e.g. a checkout under /tmp: PrivateTmp=yes hides it, status=203/EXEC).
SHIM = "/opt/bog-e2e"


def hidden_from_units() -> str | None:
    """Why the units could not run this checkout's venv where it is, or None."""
    from bog import units as U
    from bog.config import load_config

    o = U.UnitOptions(venv=str(VENV), config="/etc/bog/bog.toml", cfg=load_config(None, env={}))
    try:
        U.check_visible(o)
    except U.UnitPathError as e:
        return str(e)
    return None


def install_shim_venv(m: Machine) -> None:
    """A venv at SHIM/venv in the container running this checkout, mounted at SHIM/src (and
    its venv at SHIM/hostvenv): the same Python, bog's sources first on sys.path, then the
    checkout venv's packages (as a plain path: its editable-install hook, which points at the
    hidden path, is not run)."""
    site = Path(sysconfig.get_paths()["purelib"]).relative_to(VENV)
    m.sh(f"{VENV_PYTHON} -m venv --without-pip {SHIM}/venv")
    m.sh(f"printf '%s\\n' {SHIM}/src {SHIM}/hostvenv/{site} > {SHIM}/venv/{site}/bog-e2e.pth")
    from importlib.metadata import entry_points

    # the installed console scripts' own entry points (e.g. bogctl = bog.ctl.cli:main)
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")
               if e.name in ("bog", "bogctl")}
    assert set(scripts) == {"bog", "bogctl"}, scripts
    for exe, target in scripts.items():
        module, func = target.split(":")
        m.sh(f"printf '#!{SHIM}/venv/bin/python\\nimport sys\\nfrom {module} import {func}\\n"
             f"sys.exit({func}())\\n' > {SHIM}/venv/bin/{exe} && chmod 755 {SHIM}/venv/bin/{exe}")
    r = m.sh(f"cd / && {SHIM}/venv/bin/python -c 'import bog; print(bog.__file__)'")
    assert r.stdout.strip() == f"{SHIM}/src/bog/__init__.py", r.stdout + r.stderr


@pytest.fixture(scope="module")
def m(tmp_path_factory, numba_cache):
    require_tools("systemd-nspawn", "nsenter", "systemd-analyze", "runuser",
                  # what the runbook runs (the container uses the host's /usr)
                  "perf", "curl", "ss", "top", "taskset", "pgrep", "git")
    tmp = tmp_path_factory.mktemp("machine")
    (tmp / "bog.toml").write_text(CONFIG)
    binds = [f"--bind-ro={NUMBA_CACHE}:/mnt/numba"]
    path = PATH_IN_MACHINE
    hidden = hidden_from_units()
    if hidden:  # run the units from a visible mount of this checkout instead
        binds += [f"--bind-ro={ROOT}:{SHIM}/src", f"--bind-ro={VENV}:{SHIM}/hostvenv"]
        path = f"{SHIM}/venv/bin:" + path
    machine = Machine(tmp, f"bog-e2e-{os.getpid()}", binds=tuple(binds), path=path)
    try:
        machine.boot()
        if hidden:
            print(f"e2e: this checkout's venv is hidden from the units ({hidden}); running "
                  f"them from a venv at {SHIM}/venv over a read-only mount of it instead")
            install_shim_venv(machine)
            # numba's cache is per source path: warm it for the mounted sources
            machine.sh(f"mkdir -p /var/cache/bog && NUMBA_CACHE_DIR=/var/cache/bog/numba "
                       f"{SHIM}/venv/bin/python -m bog.warmup", timeout=600)
        machine.sh("mkdir -p /etc/bog && cp /mnt/bogtest/bog.toml /etc/bog/ "
                   "&& chmod 644 /etc/bog/bog.toml")
        r = machine.sh(f"bogctl install-units --watchdog-sec {WATCHDOG_S}")
        if str(VENV_PYTHON).startswith("/root/"):
            # install-units checks that the bog user can run the venv's Python: this one
            # lives under /root (pyenv), mode 0700 - it says so, then we open /root up
            assert "user 'bog' cannot run" in r.stderr, r.stderr
            machine.sh("chmod 755 /root")
            r = machine.sh(f"bogctl install-units --watchdog-sec {WATCHDOG_S}")
        assert "warning" not in r.stderr, r.stderr
        if not hidden:
            machine.sh("mkdir -p /var/cache/bog && cp -a /mnt/numba /var/cache/bog/numba")
        machine.sh("systemctl start bog-trading.target", timeout=240)
        yield machine
    finally:
        machine.close()


def test_target_starts_three_pinned_notify_units_as_the_bog_user(m):
    units = ["bog-trading.target", "bog-feed.service", "bog-engine.service", "bog-monitor.service"]
    assert m.sh("systemctl is-active " + " ".join(units)).stdout.split() == ["active"] * 4
    want = {"feed": {"0"}, "monitor": {"0"}}
    for proc in ("feed", "engine", "monitor"):
        pid = main_pid(m, f"bog-{proc}")
        assert pid > 0
        assert m.sh(f"stat -c %U /proc/{pid}").stdout.strip() == "bog"
        assert m.sh(f"systemctl show -p StatusText --value bog-{proc}").stdout.strip() == "running"
        cpus = m.sh(f"cat /proc/{pid}/task/*/status | grep Cpus_allowed_list").stdout.split()
        lists = {c for c in cpus if c != "Cpus_allowed_list:"}
        if proc == "engine":
            # the hot thread alone on engine_core (1); housekeeping on its own core (0)
            assert lists == {"0", "1"}, lists
        else:
            assert lists == want[proc], (proc, lists)
    # the guide's check, per process (taskset -cp of a thread-group leader)
    assert "current affinity list: 0" in m.sh("taskset -cp $(pgrep -x bog-feed)").stdout
    out = m.sh("stat -c '%a %U %n' /var/lib/bog /var/lib/bog/default /var/cache/bog "
               "/dev/shm/bog.default.*").stdout.splitlines()
    assert all(line.split()[1] == "bog" for line in out), out
    assert all(line.split()[0] in ("700", "600") for line in out), out
    s = wait_status(m, lambda s: all(p["up"] for p in s["processes"].values())
                    and s["engine"]["ticks_total"] > 0, what="all up and ticking")
    assert s["systemd"]["bog-engine.service"]["active"] == "active"
    # nothing was restarted on the way up (a watchdog firing during startup would show here)
    assert {u: v["restarts"] for u, v in s["systemd"].items()} == dict.fromkeys(s["systemd"], 0)


def test_bogctl_as_another_user_gets_clear_messages(m):
    assert m.sh("bogctl status", user="bog", check=False).returncode in (0, 1)  # bog's own user
    for cmd, needle in [("bogctl status", "permission denied on shared memory"),
                        ("bogctl breaker reset", "permission denied on shared memory"),
                        ("bogctl logs -n 1", "insufficient permissions"),
                        ("bogctl stop", "run as root")]:
        r = m.sh(cmd, user="nobody", check=False)
        text = r.stdout + r.stderr
        assert r.returncode != 0 and needle in text and "Traceback" not in text, (cmd, text)
    assert m.sh("systemctl is-active bog-engine").stdout.strip() == "active"


def test_journal_has_each_process_and_priorities_filter(m):
    m.wait("journalctl -u bog-trading.slice -o json --no-pager",
           lambda out: {"bog-feed", "bog-engine", "bog-monitor"} <= {
               json.loads(x).get("SYSLOG_IDENTIFIER") for x in out.splitlines()}
           and "Signal::" in out, what="lines of all three processes and Signal:: lines")
    # a WARNING line (priority 4) on demand: pausing is logged by the engine
    m.sh("bogctl pause && sleep 0.5 && bogctl resume")
    m.wait("journalctl -u bog-engine -p warning --no-pager -o cat",
           lambda out: "Trading paused" in out, what="the pause line at warning")
    warn = m.sh("journalctl -u bog-engine -p warning --no-pager -o cat").stdout
    assert "INFO " not in warn and "WARNING Trading paused" in warn
    assert "Trading paused" not in m.sh("journalctl -u bog-engine -p err --no-pager -o cat").stdout
    fields = json.loads(m.sh("journalctl -u bog-engine -n 1 -o json --no-pager").stdout)
    assert fields["BOG_INSTANCE"] == "default" and fields["BOG_PROCESS"] == "engine"
    assert fields["PRIORITY"] in ("4", "6")
    # bogctl logs reads the journal here
    r = m.sh("bogctl logs --pattern signals -n 3 --json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 3 and all("Signal::" in x["message"] for x in lines)
    res = runbook(m, "Log monitoring")
    assert "Signal::" in res["bogctl logs --pattern signals -n 5"].stdout
    assert res["journalctl -u bog-trading.slice -f"].stdout.strip()


def test_latency_and_no_fills_runbooks(m):
    res = runbook(m, "Latency spike")
    tasks = res["for p in $(pgrep -x 'bog-(feed|engine|monitor)'); do taskset -acp $p; done"].stdout
    assert "current affinity list: 1" in tasks and "current affinity list: 0" in tasks
    aff = res["systemctl show -p CPUAffinity bog-feed bog-engine bog-monitor"].stdout.split()
    assert aff == ["CPUAffinity=0", "CPUAffinity=0-1", "CPUAffinity=0"], aff
    assert "bog-engine" in next(v.stdout for k, v in res.items() if k.startswith("perf report"))
    res = runbook(m, "Engine core contended")
    out = res["bogctl metrics --grep bog_engine_hot_thread --grep bog_feed_thread"].stdout
    for name in ("bog_engine_hot_thread_runqueue_wait_seconds_total",
                 "bog_engine_hot_thread_preemptions_total",
                 "bog_feed_thread_runqueue_wait_seconds_total", "bog_feed_thread_preemptions_total"):
        assert name in out, out
    # the hot thread is on CPU 1 (engine_core), and the list of that CPU's threads shows it
    assert "bog-engine" in next(v.stdout for k, v in res.items() if k.startswith("ps -eLo"))
    res = runbook(m, "No fills")
    assert "bog_spread_bps" in res["curl -s http://localhost:9090/metrics | grep bog_spread_bps"].stdout
    assert "bog_position_btc" in res["curl -s http://localhost:9090/metrics | grep bog_position"].stdout
    assert '"status"' in res["curl -s http://localhost:9090/health"].stdout
    assert "Signal::" in res["bogctl logs --pattern signals -n 20"].stdout


def test_sigkill_engine_systemd_restarts_it_with_position_intact(m):
    wait_status(m, lambda s: sum(s["engine"]["fills"].values()) >= 5
                and s["engine"]["position_btc"] != 0, 90, "fills and an open position")
    m.sh("bogctl stop feed")  # systemctl stop bog-feed.service: the market holds still
    assert m.sh("systemctl is-active bog-feed", check=False).stdout.strip() == "inactive"
    time.sleep(1.0)
    keys = ("position_btc", "entry_price_usd", "realized_pnl_usd", "daily_pnl_usd")
    before = {k: status(m)["engine"][k] for k in keys}
    old = main_pid(m, "bog-engine")
    m.sh(f"kill -9 {old}")
    s = wait_status(m, lambda s: s["processes"]["engine"]["up"]
                    and s["processes"]["engine"]["pid"] not in (0, old), 90, "a new engine")
    assert {k: s["engine"][k] for k in keys} == before
    assert s["systemd"]["bog-engine.service"]["restarts"] >= 1
    log = m.sh("journalctl -u bog-engine --no-pager -o cat").stdout
    assert "Main process exited, code=killed, status=9/KILL" in log
    rec = next(x for x in log.splitlines() if "recovered from journal" in x)
    assert f"position {before['position_btc']:.9f} BTC" in rec, (rec, before)
    assert f"realized PnL {before['realized_pnl_usd']:.2f} USD" in rec, (rec, before)
    # the feed is still down: the monitor's ProcessDown fires after 10 s
    m.wait("bogctl alerts --json", lambda out: '"ProcessDown"' in out and
           any(a["name"] == "ProcessDown" for a in json.loads(out)["firing"]), 40,
           "ProcessDown firing")
    err = m.sh("journalctl -u 'bog-*' -p err --no-pager -o cat").stdout
    assert "ProcessDown" in err and "INFO " not in err and "WARNING " not in err
    res = runbook(m, "Feed or engine down", allow_fail=("systemctl status", "bogctl status"))
    # the runbook's first `bogctl status` shows the feed down, the last one (after
    # `bogctl start`) shows everything up again
    first, last = res["bogctl status"], res["bogctl status#2"]
    assert re.search(r"^  feed +DOWN", first.stdout, re.M), first.stdout
    assert first.returncode == 2 and "! feed is down" in first.stdout, first.stdout
    assert re.search(r"^  feed +up +pid", last.stdout, re.M), last.stdout
    assert last.returncode in (0, 1) and "feed is down" not in last.stdout, last.stdout
    assert m.sh("systemctl is-active bog-feed").stdout.strip() == "active"  # `bogctl start`


def test_sigstop_is_caught_by_the_watchdog(m):
    old = main_pid(m, "bog-engine")
    m.sh(f"kill -STOP {old}")
    m.wait("systemctl show -p MainPID,ActiveState bog-engine",
           lambda out: "ActiveState=active" in out and f"MainPID={old}\n" not in out
           and "MainPID=0" not in out, WATCHDOG_S * 6, "a watchdog restart")
    log = m.sh("journalctl -u bog-engine --no-pager -o cat").stdout
    assert f"Watchdog timeout (limit {WATCHDOG_S}s)" in log
    assert "Fatal Python error: Aborted" in log  # faulthandler's stack of the hung process
    wait_status(m, lambda s: s["processes"]["engine"]["up"], what="engine up")


def test_daily_loss_trips_the_breaker_runbooks_and_reset(m):
    # a fresh journal (daily PnL 0) and a limit the first fee crosses
    restart_with_dropin(m, "[Service]\\nEnvironment=MAX_DAILY_LOSS=0.01 "
                           "BOG_STATE_DIR=/var/lib/bog/daily-loss-test\\n")
    s = wait_status(m, lambda s: s["engine"]["circuit_breaker"] == "OPEN", 120, "breaker OPEN")
    # fills of orders resting at the trip can still move the daily PnL back over the limit
    want = {"CircuitBreakerTripped"} | (
        {"DailyLossLimit"} if s["engine"]["daily_pnl_usd"] < -0.01 else set())
    m.wait("bogctl alerts --json", lambda out: want <= {
        a["name"] for a in json.loads(out)["firing"]}, 30, f"{want} firing")
    res = runbook(m, "Daily loss limit")
    assert "OPEN" in next(v.stdout for k, v in res.items() if k.startswith("bogctl status --json"))
    assert "tripped by risk: daily loss" in res["bogctl logs --pattern \"tripped by risk\" -n 5"].stdout
    res = runbook(m, "Circuit breaker open", block=0)
    assert "CircuitBreakerTripped" in res["bogctl alerts"].stdout
    assert res["bogctl alerts"].returncode == 1
    assert "CLOSED -> OPEN" in res["bogctl logs --pattern circuit-breaker --since \"1 hour ago\""].stdout
    assert "CRITICAL" in res["bogctl logs -p crit --since \"1 hour ago\""].stdout
    res = runbook(m, "Circuit breaker open", block=1)
    assert "Circuit breaker reset by bogctl" in res["bogctl logs --pattern \"reset by bogctl\" -n 1"].stdout


def test_fill_queue_overflow_runbook(m):
    restart_with_dropin(m, "[Service]\\nEnvironment=FILL_QUEUE_SIZE=2 "
                           "BOG_EXECUTION_FAULT_STOP_FILL_DRAIN=1\\n")
    wait_status(m, lambda s: s["engine"]["fills_dropped"] > 0, 90, "a dropped fill")
    m.wait("bogctl alerts --json", lambda out: "FillQueueOverflow" in {
        a["name"] for a in json.loads(out)["firing"]}, 30, "FillQueueOverflow firing")
    res = runbook(m, "Fill queue depth", block=0)
    assert "bog_fills_dropped_total" in res[
        "curl -s http://localhost:9090/metrics | grep bog_fills_dropped"].stdout
    assert "CRITICAL fills dropped" in res[
        "bogctl logs --pattern fills-dropped --since \"1 hour ago\" -n 5"].stdout
    assert "FillQueueOverflow" in res["bogctl alerts"].stdout
    assert "CRITICAL fills dropped" in m.sh("journalctl -u bog-engine -p crit -o cat --no-pager").stdout
    m.sh(f"rm -f {DROPIN}")  # the fault is gone; the runbook's remedy restarts everything
    res = runbook(m, "Fill queue depth", block=1, allow_fail=("bogctl status",))
    assert "bog_fill_queue_capacity" in res["bogctl metrics --grep bog_fill_queue_capacity"].stdout
    assert "2048" in res["bogctl metrics --grep bog_fill_queue_capacity"].stdout
    s = wait_status(m, lambda s: s["engine"]["fill_queue_capacity"] == 2048, what="2048 queue")
    assert s["engine"]["fills_dropped"] == 0


def test_monitor_down_runbook(m):
    m.sh("systemctl stop bog-monitor")
    res = runbook(m, "Monitor unreachable", allow_fail=("curl", "ss -ltnp", "systemctl status"))
    codes = [v.stdout.strip() for k, v in res.items() if k.startswith("curl")]
    assert codes[-1] in ("200", "503")
    assert m.sh("systemctl is-active bog-monitor").stdout.strip() == "active"


def test_start_stop_restart_section(m):
    old = main_pid(m, "bog-engine")
    res = runbook(m, "Start, stop, restart", allow_fail=("bogctl status",))
    assert "systemctl stop bog-trading.target: done" in res["bogctl stop"].stdout
    assert "systemctl start bog-trading.target: done" in res["bogctl start"].stdout
    assert main_pid(m, "bog-engine") not in (0, old)
    s = wait_status(m, lambda s: all(p["up"] for p in s["processes"].values()), what="all up")
    assert s["systemd"]["bog-trading.target"]["active"] == "active"
    # the guide's literal command names a unit that does not exist (see docs/runbook.md)
    r = m.sh("systemctl restart bog-trading", check=False)
    assert r.returncode != 0 and "bog-trading.service not found" in r.stderr


# -- the execution gateway under systemd: dry-run, then live against bog fake-venue ---------
GW_DROPIN = "/etc/systemd/system/bog-gateway.service.d/10-credential.conf"
KEY_PATH = "/etc/bog/lighter-api-key"  # bog.units.API_KEY_CREDENTIAL_PATH
CREDENTIAL = "/run/credentials/bog-gateway.service/lighter-api-key"
FAKE_PORT = 8765
ACCOUNT, KEY_INDEX = 21, 4


def install_config(m: Machine, execution: str = "", extra: str = "") -> None:
    """/etc/bog/bog.toml = CONFIG with lines added to [execution] and sections appended; the
    units rendered for it (install-units; daemon-reload is its own)."""
    text = CONFIG.replace("[execution]\n", "[execution]\n" + execution) + extra
    (m.tmp / "bog.toml").write_text(text)
    m.sh("install -m 644 /mnt/bogtest/bog.toml /etc/bog/bog.toml")
    r = m.sh(f"bogctl install-units --watchdog-sec {WATCHDOG_S}")
    assert "warning" not in r.stderr, r.stderr


def wait_gateway(m: Machine, pred, timeout_s: float, what: str) -> dict:
    """wait_status, failing with the gateway's last journal lines (a start refusal is one)."""
    try:
        return wait_status(m, pred, timeout_s, what)
    except AssertionError as e:
        log = m.sh("journalctl -u bog-gateway -n 15 --no-pager -o cat", check=False).stdout
        raise AssertionError(f"{what}: the gateway's journal ends with:\n{log}") from e


def assert_exit_as_judged(m: Machine) -> dict:
    """bogctl status exits with its own judgement: 0 healthy, 1 degraded, 2 down."""
    r = m.sh("bogctl status --json", check=False)
    s = json.loads(r.stdout)
    assert r.returncode == {"healthy": 0, "degraded": 1}.get(s["status"], 2), (r.returncode, s)
    return s


def key_fragments(key: str, n: int = 16) -> set[str]:
    k = key[2:] if key.startswith("0x") else key
    return {k[i:i + n] for i in range(len(k) - n + 1)} | {key}


def assert_key_nowhere(m: Machine, key: str) -> None:
    """The key, or any 16-character piece of it, in none of: the whole journal (every field
    of every entry), bogctl status (text and JSON), the gateway's command line (its title)
    and its unit's properties (environment, credentials)
    - each shown to hold the gateway's own lines or fields (so the search is not vacuous)."""
    pid = main_pid(m, "bog-gateway")
    outputs = {
        "journal": m.sh("journalctl -o json --no-pager", timeout=120).stdout,
        "bogctl status": m.sh("bogctl status", check=False).stdout,
        "bogctl status --json": m.sh("bogctl status --json", check=False).stdout,
        "cmdline": m.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout,
        # its environment as systemd gives it (/proc/PID/environ is overwritten by the title)
        "systemctl show": m.sh("systemctl show bog-gateway").stdout,
    }
    assert "bog-gateway" in outputs["journal"] and "gateway:" in outputs["bogctl status"]
    assert "bog-gateway" in outputs["cmdline"]
    assert "BOG_STATE_DIR=" in outputs["systemctl show"], outputs["systemctl show"]
    frags = key_fragments(key.lower())
    for what, text in outputs.items():
        low = text.lower()
        hits = [f for f in frags if f in low]
        assert not hits, f"{len(hits)} pieces of the API key in {what}"


@pytest.fixture(scope="module")
def api_key(m):
    """A throwaway Lighter API key from the SDK, root-owned 0600 at /etc/bog/lighter-api-key
    as docs/live-trading.md says (systemd's LoadCredential= reads it)."""
    import lighter  # the lighter extra: ./scripts/setup --test installs it

    key, _pub, err = lighter.create_api_key()
    assert err is None and key
    host = m.tmp / "lighter-api-key"
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    try:
        m.sh(f"install -m 600 -o root -g root /mnt/bogtest/lighter-api-key {KEY_PATH}")
    finally:
        host.unlink()
    return key


def test_dry_run_gateway_under_systemd(m, api_key):
    install_config(m, execution='mode = "dry-run"\n')
    unit = m.sh("cat /etc/systemd/system/bog-gateway.service").stdout
    assert f"#LoadCredential=lighter-api-key:{KEY_PATH}" in unit  # dry-run: commented out
    assert "bog-gateway.service" in m.sh("cat /etc/systemd/system/bog-trading.target").stdout
    # the unit's own advice for signing in dry-run: the credential in a drop-in
    m.sh(f"mkdir -p {os.path.dirname(GW_DROPIN)} && printf '[Service]\\n"
         f"LoadCredential=lighter-api-key:{KEY_PATH}\\n' > {GW_DROPIN}")
    m.sh("systemctl daemon-reload && systemctl restart bog-trading.target", timeout=240)
    s = wait_gateway(m, lambda s: s["processes"]["gateway"]["up"]
                     and s["gateway"]["engine_attached"] and s["gateway"]["intents_sent"] > 0
                     and s["processes"]["engine"]["up"], 90, "the gateway taking intents")
    units = ["bog-trading.target", "bog-feed", "bog-engine", "bog-monitor", "bog-gateway"]
    assert m.sh("systemctl is-active " + " ".join(units)).stdout.split() == ["active"] * 5
    pid = main_pid(m, "bog-gateway")
    assert m.sh(f"stat -c %U /proc/{pid}").stdout.strip() == "bog"
    assert m.sh("systemctl show -p StatusText --value bog-gateway").stdout.strip() == "running"
    # systemd's copy of the key: owned by bog, 0400, in a directory of bog's, 0500 - accepted
    cred = m.sh(f"stat -c '%a %U' {os.path.dirname(CREDENTIAL)} {CREDENTIAL}").stdout.split("\n")
    assert cred[:2] == ["500 bog", "400 bog"], cred
    g = s["gateway"]
    assert (g["mode"], g["network"], g["venue_connected"]) == ("dry-run", "testnet", True), g
    assert s["systemd"]["bog-gateway.service"]["active"] == "active"
    assert not [p for p in s["problems"] if "gateway" in p], s["problems"]
    # bogctl status: the gateway line, and the exit code its judgement gives
    r = m.sh("bogctl status", check=False)
    assert_exit_as_judged(m)
    assert re.search(r"^gateway:  dry-run on testnet  venue connected  dead-man off \(dry-run\)",
                     r.stdout, re.M), r.stdout
    assert re.search(r"^  gateway +up +pid", r.stdout, re.M), r.stdout
    # the journal: the gateway's lines, the credential taken from systemd's copy
    log = m.wait("journalctl -u bog-gateway --no-pager -o cat",
                 lambda out: "dry-run: would send create order" in out, 30, "would-send lines")
    assert "bog-gateway dry-run on testnet: orders are logged, never sent" in log
    assert (f"API key from systemd credential lighter-api-key at {CREDENTIAL}: owner-only"
            in log), log[-3000:]
    assert "without credentials" not in log
    fields = json.loads(m.sh("journalctl -u bog-gateway -n 1 -o json --no-pager").stdout)
    assert fields["SYSLOG_IDENTIFIER"] == "bog-gateway" and fields["BOG_PROCESS"] == "gateway"
    assert "would send" in m.sh("bogctl logs --process gateway -n 20").stdout

    # bogctl stop gateway: only the gateway stops; the engine says so and stops quoting
    m.sh("bogctl stop gateway")
    assert m.sh("systemctl is-active bog-gateway", check=False).stdout.strip() == "inactive"
    assert m.sh("systemctl is-active bog-engine bog-feed").stdout.split() == ["active"] * 2
    s = wait_status(m, lambda s: not s["processes"]["gateway"]["up"], 30, "gateway down")
    assert "gateway is down" in " ".join(s["problems"]), s["problems"]
    m.wait("journalctl -u bog-engine --no-pager -o cat", lambda out: "Gateway down" in out,
           30, "the engine's 'Gateway down'")
    # ... the runbook's GatewayDown section, which ends with `bogctl start gateway`
    res = runbook(m, "Gateway down", allow_fail=("bogctl status", "systemctl status"))
    first, last = res["bogctl status"], res["bogctl status#2"]
    assert first.returncode == 2 and "gateway is down" in first.stdout, first.stdout
    ls = next(v.stdout for k, v in res.items() if k.startswith(f"ls -l {KEY_PATH}"))
    assert ls.startswith("-rw------- 1 root root"), ls
    assert "bogctl: systemctl start bog-gateway.service: done" in res["bogctl start gateway"].stdout
    assert m.sh("systemctl is-active bog-gateway").stdout.strip() == "active"
    assert main_pid(m, "bog-gateway") != pid
    s = wait_status(m, lambda s: s["processes"]["gateway"]["up"]
                    and s["gateway"]["engine_attached"], 60, "gateway back")
    # Type=notify: `bogctl start gateway` returned once the gateway said READY=1
    assert last.returncode in (0, 1) and "gateway is down" not in last.stdout, last.stdout
    m.wait("journalctl -u bog-gateway --no-pager -o cat",
           lambda out: out.count("bog-gateway dry-run on testnet") >= 2, 30, "second start")
    m.wait("journalctl -u bog-engine --no-pager -o cat", lambda out: "Gateway up" in out,
           30, "the engine's 'Gateway up'")
    assert_key_nowhere(m, api_key)


def test_live_gateway_takes_the_systemd_credential_and_connects(m, api_key):
    # the venue: bog fake-venue, its own process (a transient unit) on the container's loopback
    m.sh(f"systemd-run --unit=bog-fake-venue --property=Type=exec $(command -v bog) fake-venue "
         f"--port {FAKE_PORT} --rate 4 --markets BTC")
    m.wait(f"curl -sf http://127.0.0.1:{FAKE_PORT}/api/v1/orderBooks",
           lambda out: '"BTC"' in out, 60, "the fake venue up")
    url = f"ws://127.0.0.1:{FAKE_PORT}/stream"
    m.sh(f"rm -f {GW_DROPIN}")  # live renders LoadCredential= itself
    install_config(m, execution='mode = "live"\n', extra=(
        f'\n[gateway]\nnetwork = "testnet"\nurl = "{url}"\naccount_index = {ACCOUNT}\n'
        f"api_key_index = {KEY_INDEX}\ndead_man_window_s = 30.0\nreconcile_every_s = 1.0\n"))
    unit = m.sh("cat /etc/systemd/system/bog-gateway.service").stdout
    assert f"\nLoadCredential=lighter-api-key:{KEY_PATH}\n" in unit
    assert "IPAddressAllow=localhost" in unit  # the venue on the loopback: no other address
    m.sh("systemctl daemon-reload && systemctl restart bog-trading.target", timeout=240)
    wait_gateway(m, lambda s: s["processes"]["gateway"]["up"] and s["gateway"]["mode"] == "live"
                 and s["gateway"]["venue_connected"] and s["gateway"]["dead_man_armed"]
                 and s["gateway"]["engine_attached"], 90, "live gateway connected, armed")
    log = m.sh("journalctl -u bog-gateway --no-pager -o cat").stdout
    assert (f"API key from systemd credential lighter-api-key at {CREDENTIAL}: owner-only"
            in log), log[-3000:]
    assert f"REAL ORDERS, account {ACCOUNT}, market BTC" in log, log[-3000:]
    # the fake took the gateway's signed transactions (nonces of its key spent) and holds
    # the dead-man switch's scheduled cancel-all
    acct = json.loads(m.sh(f"curl -sf 'http://127.0.0.1:{FAKE_PORT}/fake/account?account="
                           f"{ACCOUNT}'").stdout)
    assert acct["nonces"].get(str(KEY_INDEX), 0) > 0 and acct["cancel_all_at_ms"] > 0, acct
    # the paper session before left a position in the engine's journal; the venue's account
    # is flat: two venue snapshots agree, the engine corrects its position to the venue's
    wait_status(m, lambda s: not [p for p in s["problems"] if "drift" in p], 60, "no drift")
    r = m.sh("bogctl status", check=False)
    assert re.search(r"^gateway:  live on testnet  venue connected  dead-man armed", r.stdout,
                     re.M), r.stdout
    assert_exit_as_judged(m)
    # the runbook's live sections, as written
    res = runbook(m, "Venue order connection down")
    assert '"gateway"' in next(v.stdout for k, v in res.items() if k.startswith("curl -s localhost:9090/health"))
    assert "bog_gateway_venue_connected 1" in next(
        v.stdout for k, v in res.items() if "venue_(connected|reconnects)" in k)
    res = runbook(m, "Venue rejects rising")
    assert "bog_gateway_venue_rejects_total" in next(
        v.stdout for k, v in res.items() if k.startswith("curl"))
    res = runbook(m, "Position drift high")
    assert "bog_gateway_position_drift_btc" in next(
        v.stdout for k, v in res.items() if k.startswith("curl"))
    assert "gateway:  live" in res["bogctl status"].stdout
    res = runbook(m, "Dead-man switch not armed")
    assert "bog_gateway_dead_man_armed 1" in next(
        v.stdout for k, v in res.items() if k.startswith("curl"))
    m.sh("bogctl resume")
    assert_key_nowhere(m, api_key)


def test_every_runbook_block_was_run():
    # (the lighter feed's sections run against a lighter pipeline: tests/test_lighter.py)
    want = {f"{title}#{i}" for title, blocks in BLOCKS.items() for i in range(len(blocks))
            if LIGHTER_RUNBOOK not in title}
    assert want - COVERED == set(), f"runbook blocks no test ran: {sorted(want - COVERED)}"
