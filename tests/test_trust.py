"""Trust on real processes: spoofed shared memory, a planted ``bog/`` package in the working
directory, and the restart count the monitor exports under ``bog run``.

The spoofing user is the real ``nobody`` (tests run as root); see test_shm.py for the
segment-level checks (wrong mode, configured owner, a squatter that cannot be removed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import FAST, cleanup_segments, free_port, merge, to_toml, unique_instance, wait_for
from test_shm import NOBODY_UID, fake_ticks_segment, squat

from bog.process import signal_pid
from bog.shm import SegmentNames
from bog.shm.metrics import ENGINE, FEED, MetricsBlock
from bog.shm.segment import SegmentError, _proc_start_ticks, list_segments

BUSY = merge(FAST, {"feed": {"rate_per_s": 500.0, "sweep_depth_bps": 4.0},
                    "execution": {"maker_latency_ms": 20.0}})
VENV_BIN = Path(sys.executable).parent


def test_engine_refuses_spoofed_ticks_then_trades_on_the_real_feed(pipeline_factory):
    port = free_port()
    pl = pipeline_factory(merge(BUSY, {"monitor": {"port": port}}))
    ticks = pl.names.ticks
    # a feed restart: another local user creates the ticks segment first, valid header,
    # fake trades at 1,000,000 USD, and a live-looking owner (this test process)
    squat(ticks, fake_ticks_segment(mid_usd=1_000_000.0, owner_pid=os.getpid()))
    pl.start(ENGINE)
    line = (f"CRITICAL shared memory {ticks} is owned by uid {NOBODY_UID} mode 0600, expected "
            f"uid {os.geteuid()} mode 0600: refusing to attach (possible spoofing; remove it: "
            f"rm /dev/shm{ticks})")
    wait_for(lambda: line in pl.log_text(), 20, what="the engine's CRITICAL line")
    wait_for(lambda: int(pl.metrics()["shm_untrusted_total"]) == 1, 10, what="counted")
    pl.start("monitor")
    wait_for(lambda: "bog_shm_untrusted_segments_total 1.0" in _get(port, "/metrics"), 30,
             what="exported by the monitor")
    time.sleep(0.5)  # ~25 housekeeping passes, each retrying the attach
    m = pl.metrics()
    assert int(m["ticks_total"]) == 0 and int(m["shm_untrusted_total"]) == 1
    assert pl.log_text().count(line) == 1  # one line per segment, not one per retry

    # the real feed is not locked out: it removes the squatter (CRITICAL) and publishes
    pl.start(FEED)
    assert (f"CRITICAL shared memory {ticks} was owned by uid {NOBODY_UID} mode 0600, not by a "
            "trusted user: removed it (possible spoofing)") in pl.log_text()
    st = os.stat(f"/dev/shm{ticks}")
    assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o600)
    wait_for(lambda: int(pl.metrics(FEED)["shm_untrusted_total"]) == 1, 10,
             what="the feed's count")
    wait_for(lambda: sum(pl.metrics()["fills_received_total"]) > 0, 60,
             what="fills on the real feed")
    m = pl.metrics()
    assert 1_000 < float(m["mid_price_usd"]) < 200_000  # the synthetic market, never the fake
    assert int(m["shm_untrusted_total"]) == 1


def _get(port: int, path: str) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).text
    except httpx.HTTPError:
        return ""


def _plant(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory holding a ``bog`` package that leaves a marker when imported."""
    cwd, marker = tmp_path / "cwd", tmp_path / "PLANTED-BOG-IMPORTED"
    (cwd / "bog").mkdir(parents=True)
    code = f"open({str(marker)!r}, 'a').write('planted bog imported\\n')\n"
    (cwd / "bog" / "__init__.py").write_text(code)
    (cwd / "bog" / "cli.py").write_text(code)
    return cwd, marker


def _engine_pid(names: SegmentNames) -> int:
    try:
        blk = MetricsBlock.attach(names.engine_metrics, ENGINE)
    except SegmentError:
        return 0
    try:
        return int(blk.m[0]["pid"]) if int(blk.m[0]["running"]) == 1 else 0
    finally:
        blk.close(unlink=False)


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("BOG_RESTARTS", "PYTHONPATH")}
    env.update(BOG_STATE_DIR=str(tmp_path / "state"), BOG_LOG_DIR=str(tmp_path / "logs"))
    return env


def _pipeline_up(sup: subprocess.Popen, out: Path) -> bool:
    assert sup.poll() is None, f"bog run exited {sup.returncode}:\n{out.read_text()[-3000:]}"
    return b"pipeline up" in out.read_bytes()


def test_bog_run_and_bogctl_start_never_import_from_the_working_directory(tmp_path):
    cwd, marker = _plant(tmp_path)
    cfg = tmp_path / "bog.toml"
    cfg.write_text(to_toml(FAST))
    inst = unique_instance("cwd")
    names = SegmentNames(inst)
    out = open(tmp_path / "run.out", "wb")
    sup = subprocess.Popen([str(VENV_BIN / "bog"), "run", "--instance", inst, "--config",
                            str(cfg), "--no-monitor"], cwd=cwd, env=_env(tmp_path), stdout=out,
                           stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _pipeline_up(sup, tmp_path / "run.out"), 120,
                 what="bog run: pipeline up")
        assert _engine_pid(names) and not marker.exists(), marker.read_text()
    finally:
        if sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            assert sup.wait(60) == 0, (tmp_path / "run.out").read_text()[-3000:]
        out.close()
        cleanup_segments(inst)
    assert not marker.exists(), marker.read_text()
    # bogctl start: its supervisor (and that one's children) neither
    ctl = [str(VENV_BIN / "bogctl"), "--instance", inst, "--config", str(cfg)]
    try:
        r = subprocess.run([ctl[0], "start", *ctl[1:], "--timeout", "120"], cwd=cwd,
                           env=_env(tmp_path), capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _engine_pid(names) and not marker.exists(), marker.read_text()
    finally:
        r = subprocess.run([ctl[0], "stop", *ctl[1:]], cwd=cwd, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert list_segments(inst) == []
        cleanup_segments(inst)


def _children(ppid: int, word: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_bytes()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()  # "bog-engine" once it runs
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[1]) == ppid and fields[0] != b"Z" and word.encode() in cmd:
            out.append(int(d))
    return out


def test_monitor_restart_count_equals_the_supervisors(tmp_path):
    port = free_port()
    cfg = tmp_path / "bog.toml"
    cfg.write_text(to_toml(merge(FAST, {"monitor": {"port": port}})))
    inst = unique_instance("rst")
    names = SegmentNames(inst)
    out = open(tmp_path / "run.out", "wb")
    sup = subprocess.Popen([sys.executable, "-I", "-m", "bog.cli", "run", "--instance", inst,
                            "--config", str(cfg)], env=_env(tmp_path), stdout=out,
                           stderr=subprocess.STDOUT, cwd=tmp_path)
    killed: list[int] = []
    try:
        wait_for(lambda: b"pipeline up" in (tmp_path / "run.out").read_bytes(), 120,
                 what="bog run: pipeline up")
        # kill -9 the engine three times: once running, once right after it was started
        # (before it has created any shared memory), once running again
        for when in ("running", "starting", "running"):
            pid = wait_for(lambda: next((p for p in _children(sup.pid, "engine")
                                         if p not in killed), 0), 60, 0.01,
                           what="a new engine child of the supervisor")
            if when == "running":
                wait_for(lambda: _engine_pid(names) == pid, 90, what=f"engine {pid} running")
            else:
                assert _engine_pid(names) != pid
            assert signal_pid(pid, signal.SIGKILL)
            killed.append(pid)
        wait_for(lambda: _engine_pid(names) not in (0, *killed), 120, what="the 4th engine")
        log = (tmp_path / "logs" / "bog.log").read_text()
        supervisor_count = len(re.findall(r"bog-engine exited with status -9; restarting", log))
        assert supervisor_count == 3, log
        wait_for(lambda: "bog_process_restarts" in _get(port, "/metrics"), 30,
                 what="the monitor's /metrics")
        text = _get(port, "/metrics")
        assert f'bog_process_restarts_total{{process="engine"}} {supervisor_count}.0' in text
        assert 'bog_process_restarts_total{process="feed"} 0.0' in text
    finally:
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(60) == 0, (tmp_path / "run.out").read_text()[-3000:]
        out.close()
        cleanup_segments(inst)


def test_signal_pid_refuses_pids_that_are_not_one_live_process():
    # 0 would be our own process group (the e2e test once sent SIGSTOP to MainPID 0 and hung
    # the run), a negative pid a whole group. Signal 0 only checks: harmless if it got through.
    for pid in (0, -1, -os.getpgid(0)):
        with pytest.raises(ValueError, match=f"refusing to signal pid {pid}: not a process"):
            signal_pid(pid, 0)
    p = subprocess.Popen(["sleep", "60"])
    try:
        ticks = _proc_start_ticks(p.pid)
        assert not signal_pid(p.pid, signal.SIGTERM, ticks + 1)  # a reused pid: another process
        assert p.poll() is None
        assert signal_pid(p.pid, signal.SIGTERM, ticks)
        assert p.wait(10) == -signal.SIGTERM
        assert not signal_pid(p.pid, signal.SIGTERM)  # gone
    finally:
        p.kill()
        p.wait()
