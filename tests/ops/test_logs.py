"""Logs: journald priorities, JSON lines, shared rotation, and the guide's greps on real logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest
from support import FAST, merge, wait_for

from bog import logview as lv
from bog.log import RateLimiter

EMIT = textwrap.dedent("""
    import logging, sys
    from bog.log import setup_logging
    log = setup_logging("engine", "inst1", "1000001", sys.argv[1])
    log.info("Signal::QuoteBoth bid=1 ask=2")
    log.warning("Sequence gap: expected 1, got 3 (2 updates missing)")
    try:
        1 / 0
    except ZeroDivisionError:
        log.error("Stale data: boom", exc_info=True)
    log.critical("CRITICAL fills dropped: queue full")
""")


def emit(tmp_path: Path, env: dict, journal_stream: bool) -> tuple[str, Path]:
    err = tmp_path / "stderr.txt"
    log_dir = tmp_path / "logs"
    with open(err, "wb") as f:
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "BOG_LOG_JSON")} | env
        if journal_stream:
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-c", EMIT, str(log_dir)], stderr=f, env=env, check=True)
    return err.read_text(), log_dir


def test_journald_lines_carry_their_priority_on_every_line(tmp_path):
    text, log_dir = emit(tmp_path, {}, journal_stream=True)
    lines = text.splitlines()
    assert lines[0].startswith("<6>INFO Signal::QuoteBoth")
    assert lines[1].startswith("<4>WARNING Sequence gap")
    assert lines[2].startswith("<3>ERROR Stale data: boom")
    tb = [x for x in lines if "Traceback" in x or "ZeroDivisionError" in x]
    assert tb and all(x.startswith("<3>") for x in tb)  # -p err shows the whole traceback
    assert lines[-1].startswith("<2>CRITICAL CRITICAL fills dropped")
    assert all(x.startswith("<") for x in lines)
    assert "[instance=inst1 process=engine market=1000001]" in lines[0]
    assert not (log_dir / "bog.log").exists()  # the journal has it: no file under systemd


def test_journal_stream_of_another_file_means_no_prefixes(tmp_path):
    err = tmp_path / "other"
    err.write_text("")
    st = os.stat(err)
    text, log_dir = emit(tmp_path, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, False)
    assert not any(x.startswith("<") for x in text.splitlines())
    assert "Sequence gap" in (log_dir / "bog.log").read_text()


def test_json_lines(tmp_path):
    _, log_dir = emit(tmp_path, {"BOG_LOG_JSON": "1"}, journal_stream=False)
    docs = [orjson.loads(x) for x in (log_dir / "bog.log").read_text().splitlines()]
    assert [d["level"] for d in docs] == ["INFO", "WARNING", "ERROR", "CRITICAL"]
    assert all(d["instance"] == "inst1" and d["process"] == "engine" and d["market"] == "1000001"
               for d in docs)
    assert "ZeroDivisionError" in docs[2]["exc"]
    # bogctl logs reads them back
    es = list(lv.file_entries(str(log_dir)))
    assert [e.priority for e in es] == [6, 4, 3, 2] and "ZeroDivisionError" in es[2].message


ROTATE = textwrap.dedent("""
    import logging, sys
    from bog.log import SharedRotatingFileHandler
    h = SharedRotatingFileHandler(sys.argv[1], max_bytes=20000, backup_count=1000)
    log = logging.getLogger("x"); log.addHandler(h); log.setLevel(logging.INFO)
    for i in range(int(sys.argv[3])):
        log.info("%s line %06d %s", sys.argv[2], i, "x" * 40)
""")


def test_rotation_shared_by_processes_loses_no_line(tmp_path):
    path = tmp_path / "bog.log"
    n = 2000
    procs = [subprocess.Popen([sys.executable, "-c", ROTATE, str(path), f"p{k}", str(n)])
             for k in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    files = [path] + sorted(tmp_path.glob("bog.log.*"))
    files = [f for f in files if not f.name.endswith(".lock")]
    assert len(files) > 5  # it did rotate, many times
    lines = [x for f in files for x in f.read_text().splitlines()]
    assert len(lines) == 3 * n and len(set(lines)) == 3 * n
    assert all(f.stat().st_size < 20000 + 200 for f in files)


SIZE_CAP = textwrap.dedent("""
    import logging, os, resource, sys
    from bog.log import SharedRotatingFileHandler
    h = SharedRotatingFileHandler(sys.argv[1], max_bytes=20000, backup_count=3)
    log = logging.getLogger("x"); log.addHandler(h); log.setLevel(logging.INFO)
    if sys.argv[3] == "exhaust":  # like a monitor flooded with connections: no descriptor left
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            os.open("/dev/null", os.O_RDONLY)
            raise SystemExit("descriptors not exhausted")
        except OSError:
            pass
    for i in range(int(sys.argv[2])):
        log.error("storm line %06d %s", i, "x" * 60)
""")


def _log_files(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.name.startswith("bog.log") and
                  not f.name.endswith(".lock"))


@pytest.mark.parametrize("writers,mode", [(1, "exhaust"), (4, "normal")])
def test_size_cap_holds_for_a_storm_out_of_descriptors_and_with_several_writers(tmp_path, writers,
                                                                                  mode):
    path = tmp_path / "bog.log"
    procs = [subprocess.Popen([sys.executable, "-c", SIZE_CAP, str(path), "3000", mode],
                              stderr=subprocess.PIPE, text=True) for _ in range(writers)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, errs
    files = _log_files(tmp_path)
    assert [f.name for f in files] == ["bog.log", "bog.log.1", "bog.log.2", "bog.log.3"]
    line = 120
    assert all(f.stat().st_size <= 20000 + writers * line for f in files), \
        [(f.name, f.stat().st_size) for f in files]
    assert "storm line 002999" in path.read_text()  # the newest line is in the live file


OWNER_ONLY = textwrap.dedent("""
    import logging, os, sys
    os.umask(0o022)  # an ordinary umask: the files must still be owner-only
    from bog.log import SharedRotatingFileHandler, setup_logging
    log = setup_logging("engine", "inst1", "1", sys.argv[1])
    fh = [h for h in logging.getLogger().handlers if isinstance(h, SharedRotatingFileHandler)][0]
    fh.max_bytes = 3000
    for i in range(400):
        log.warning("Sequence gap %d %s", i, "y" * 40)
""")


def test_live_and_rotated_logs_are_owner_only(tmp_path):
    log_dir = tmp_path / "logs"
    env = dict(os.environ, BOG_LOG_STDERR="0")
    env.pop("JOURNAL_STREAM", None)
    subprocess.run([sys.executable, "-c", OWNER_ONLY, str(log_dir)], env=env, check=True,
                   timeout=60)
    files = _log_files(log_dir)
    assert len(files) == 6  # rotated: the live file and 5 kept
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in [*files, log_dir / "bog.log.lock"]}
    assert set(modes.values()) == {"0o600"}, modes
    assert oct(log_dir.stat().st_mode & 0o777) == "0o700"
    # a file left with a wider mode (an older version) is narrowed when it is next opened
    os.chmod(log_dir / "bog.log", 0o644)
    subprocess.run([sys.executable, "-c", OWNER_ONLY, str(log_dir)], env=env, check=True,
                   timeout=60)
    assert {oct(f.stat().st_mode & 0o777) for f in _log_files(log_dir)} == {"0o600"}


def test_lines_that_cannot_be_written_are_counted_not_lost_silently(tmp_path, capfd):
    import logging
    import shutil

    from bog.log import SharedRotatingFileHandler

    d = tmp_path / "logs"
    d.mkdir()
    h = SharedRotatingFileHandler(str(d / "bog.log"))
    log = logging.getLogger("lost-lines-test")
    log.addHandler(h)
    log.propagate = False
    try:
        shutil.rmtree(d)  # the file and its directory vanish: reopening fails (ENOENT)
        for i in range(3):
            log.error("lost %d", i)
        assert "cannot write" in capfd.readouterr().err  # said once, on stderr
        d.mkdir()
        log.error("back")
    finally:
        log.removeHandler(h)
        h.close()
    text = (d / "bog.log").read_text()
    assert "3 log lines not written to this file (No such file or directory)" in text
    assert text.splitlines()[-1].endswith("back")


def test_logview_parsing_selection_and_options():
    now = 1_800_000_000.0
    assert lv.parse_since("10 minutes ago", now) == now - 600
    assert lv.parse_since("-1h", now) == now - 3600
    assert lv.parse_since("2 days ago", now) == now - 2 * 86400
    assert lv.parse_since("now", now) == now
    assert lv.parse_since("@1700000000") == 1_700_000_000
    with pytest.raises(lv.LogError, match="--since"):
        lv.parse_since("last tuesday")
    assert lv.parse_priority("err") == 3 and lv.parse_priority("4") == 4
    with pytest.raises(lv.LogError, match="-p"):
        lv.parse_priority("loud")
    lines = [
        "2026-11-25T10:00:00.000Z INFO     bog-engine[10] Signal::QuoteBoth bid=1 [instance=a process=engine market=1]",
        "2026-11-25T10:00:01.500Z ERROR    bog-engine[10] crashed [instance=a process=engine market=1]",
        "Traceback (most recent call last):",
        "ValueError: x",
        "2026-11-25T10:00:02.000Z CRITICAL bog-engine[10] Circuit breaker CLOSED -> OPEN [instance=b process=engine market=1]",
    ]
    es = list(lv.entries_from_lines(lines))
    assert len(es) == 3 and es[1].message.endswith("ValueError: x") and es[2].instance == "b"
    assert es[1].ts == pytest.approx(1795600801.5)
    sel = lambda **kw: [e.ident + ":" + e.message.split()[1] for e in lv.select(es, **kw)]  # noqa: E731
    assert sel(patterns=["circuit-breaker"], since_ts=None, max_priority=None) == ["bog-engine:Circuit"]
    assert sel(patterns=[], since_ts=None, max_priority=3) == ["bog-engine:crashed", "bog-engine:Circuit"]
    assert sel(patterns=["signals", "CRITICAL"], since_ts=es[0].ts + 1, max_priority=None) == [
        "bog-engine:Circuit"]
    j = lv.journal_entry(json.dumps({"MESSAGE": "WARNING Stale data", "PRIORITY": "4",
                                     "SYSLOG_IDENTIFIER": "bog-engine", "_PID": "7",
                                     "__REALTIME_TIMESTAMP": "1795600801500000"}).encode())
    assert (j.priority, j.ident, j.pid, j.ts) == (4, "bog-engine", 7, 1795600801.5)


def test_rate_limiter_says_how_many_it_suppressed():
    t = [0.0]
    rl = RateLimiter(burst=2, period_s=10, clock=lambda: t[0])
    assert [rl.allow("gap")[0] for _ in range(5)] == [True, True, False, False, False]
    t[0] = 10.0
    assert rl.flush() == [("gap", 3)]


# The guide's critical patterns, produced by a real pipeline with injected faults.
FAULTS = merge(FAST, {
    "feed": {"rate_per_s": 500.0, "sweep_depth_bps": 4.0, "fault_gap_probability": 0.02,
             "fault_stall_every_s": 2.0, "fault_stall_s": 1.5},
    "execution": {"maker_latency_ms": 20.0, "fill_queue_size": 2, "fault_stop_fill_drain": True},
})
GUIDE_GREPS = ["Circuit breaker", "fills dropped", "Position correction", "Sequence gap",
               "Stale data", "Signal::"]


@pytest.mark.slow
def test_guide_greps_and_bogctl_logs_on_a_real_pipeline(pipeline_factory):
    pl = pipeline_factory(FAULTS).start_all()
    wait_for(lambda: all(p in pl.log_text() for p in GUIDE_GREPS), 90,
             what="every pattern of the guide in logs/bog.log")
    cwd = pl.tmp  # the guide greps logs/bog.log relative to where bog runs
    for pattern in GUIDE_GREPS:
        r = subprocess.run(["grep", pattern, "logs/bog.log"], cwd=cwd, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout, pattern
    text = pl.log_text()
    for line in text.splitlines():
        if "fills dropped" in line or "Circuit breaker tripped" in line or "CLOSED -> OPEN" in line:
            assert "CRITICAL" in line, line
        if " bog-" in line:
            assert f"[instance={pl.instance} process=" in line and "market=" in line, line
    env = dict(pl.env, BOG_LOG_DIR=str(pl.log_dir))
    ctl = [sys.executable, "-m", "bog.ctl"]
    for name, needle in [("circuit-breaker", "Circuit breaker"), ("fills-dropped", "fills dropped"),
                         ("position-correction", "Position correction"),
                         ("sequence-gap", "Sequence gap"), ("stale-data", "Stale data"),
                         ("signals", "Signal::")]:
        r = subprocess.run(ctl + ["logs", "--instance", pl.instance, "--pattern", name],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
        assert all(needle in x for x in r.stdout.splitlines() if x[:4].isdigit()), name
    r = subprocess.run(ctl + ["logs", "--instance", pl.instance, "-p", "crit", "--json"],
                       env=env, capture_output=True, text=True)
    docs = [json.loads(x) for x in r.stdout.splitlines()]
    assert docs and all(d["priority"] <= 2 for d in docs)
    r = subprocess.run(ctl + ["logs", "--instance", "nosuchinstance"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    # gap storms are summarised, not flooded
    wait_for(lambda: "suppressed" in pl.log_text(), 30, what="a 'suppressed N similar' line")
    # follow mode prints new lines only (the feed announces a stall every 2 s)
    p = subprocess.Popen(ctl + ["logs", "--instance", pl.instance, "-f", "-n", "0",
                                "--process", "feed", "--pattern", "stalling"], env=env,
                         stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    try:
        time.sleep(5)
    finally:
        p.terminate()
    out = p.communicate(timeout=10)[0].splitlines()
    assert out and all("feed stalling" in x and "bog-feed" in x for x in out)
    assert all(lv.parse_line(x).ts >= t0 - 0.5 for x in out)
