"""Test helpers: unique instances, real bog processes, cleanup of shared memory.

A module of its own (not conftest) so that test files can import it by a unique name."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


from bog.process import stop_child
from bog.shm import SegmentNames
from bog.shm.metrics import ENGINE, FEED, MetricsBlock
from bog.shm.segment import SegmentError, unlink_instance

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def unique_instance(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


cleanup_segments = unlink_instance


def wait_for(pred, timeout=30.0, interval=0.05, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Proc:
    """One bog process started exactly as systemd or the supervisor would start it."""

    def __init__(self, argv, env, log_path):
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        self.p = subprocess.Popen(argv, env=env, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20.0) -> int:
        code = stop_child(self.p, sig, timeout)
        self.logf.close()
        return code

    def output(self) -> str:
        if not self.logf.closed:  # (closed once the process was stopped)
            self.logf.flush()
        return Path(self.log_path).read_text(errors="replace")


class Pipeline:
    """Starts feed/engine (and optionally monitor) processes for one instance in tmp dirs."""

    def __init__(self, tmp_path: Path, instance: str, config: "str | dict" = "",
                 env: dict | None = None):
        self.tmp = tmp_path
        self.instance = instance
        self.names = SegmentNames(instance)
        self.config_path = tmp_path / "bog.toml"
        self.config_path.write_text(config if isinstance(config, str) else to_toml(config))
        self.state_dir = tmp_path / "state"
        self.log_dir = tmp_path / "logs"
        self.env = dict(os.environ)
        self.env.update({"BOG_STATE_DIR": str(self.state_dir), "BOG_LOG_DIR": str(self.log_dir),
                         "PYTHONUNBUFFERED": "1"})
        for k in ("MAX_POSITION", "MAX_DAILY_LOSS", "FILL_QUEUE_SIZE", "SPREAD_BPS", "ORDER_SIZE",
                  "JOURNAL_STREAM", "NOTIFY_SOCKET"):
            self.env.pop(k, None)
        self.env.update(env or {})
        self.procs: dict[str, Proc] = {}

    def argv(self, process: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "bog.cli", process, "--instance", self.instance,
                "--config", str(self.config_path), *extra]

    def start(self, process: str, *extra: str, wait=True, timeout=90.0) -> Proc:
        p = Proc(self.argv(process, *extra), self.env, self.tmp / f"{process}.out")
        self.procs[process] = p
        if wait and process in (FEED, ENGINE, "gateway"):
            def ready():
                if not p.alive():
                    raise AssertionError(f"bog {process} exited:\n{p.output()}")
                try:
                    blk = MetricsBlock.attach(self.names.metrics(process), process)
                except SegmentError:
                    return False
                try:
                    return (blk.segment.state == 1 and int(blk.m[0]["running"]) == 1
                            and int(blk.m[0]["pid"]) == p.pid)
                finally:
                    blk.close(unlink=False)
            wait_for(ready, timeout, what=f"bog {process} ready")
        return p

    def start_all(self):
        self.start(FEED)
        self.start(ENGINE)
        return self

    def metrics(self, process: str = ENGINE):
        blk = MetricsBlock.attach(self.names.metrics(process), process)
        try:
            return blk.snapshot()
        finally:
            blk.close(unlink=False)

    def journal_path(self) -> Path:
        return self.state_dir / self.instance / "journal.jsonl"

    def log_text(self) -> str:
        p = self.log_dir / "bog.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop_all(self):
        codes = {}
        for name in ("monitor", ENGINE, "gateway", FEED):
            if name in self.procs:
                codes[name] = self.procs[name].stop()
        return codes


def merge(*parts: dict) -> dict:
    """Merge config dicts section by section (later parts win)."""
    out: dict = {}
    for part in parts:
        for sec, kv in part.items():
            out.setdefault(sec, {}).update(kv)
    return out


def to_toml(data: dict) -> str:
    lines = []
    for sec, kv in data.items():
        lines.append(f"[{sec}]")
        for k, v in kv.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, str):
                v = f'"{v}"'
            lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


# Quick housekeeping and reconciliation for end-to-end tests.
# Idle back-off keeps many test engines from each spinning a core (the kernel logic is the same;
# test_bench covers the default busy-poll).
FAST = {"process": {"housekeeping_ms": 20.0, "engine_idle_sleep_us": 200.0},
        "execution": {"reconcile_every_s": 0.2}}


# -- the runbook's commands (docs/runbook.md): run by the systemd e2e and the lighter tests ----
RUNBOOK = ROOT / "docs" / "runbook.md"
LIGHTER_RUNBOOK = "(lighter feed)"  # sections run against a lighter pipeline (test_lighter.py)


def runbook_blocks() -> dict[str, list[list[str]]]:
    """Section title -> its ``bash`` blocks, each a list of commands (comments dropped). A
    ``###`` subsection (the execution gateway's alerts) is a section of its own."""
    out: dict[str, list[list[str]]] = {}
    section = ""
    in_block = False
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith(("## ", "### ")) and not in_block:
            section = line.split(" ", 1)[1].strip()
        elif line.strip() == "```bash":
            in_block = True
            out.setdefault(section, []).append([])
        elif line.strip() == "```" and in_block:
            in_block = False
        elif in_block and line.strip() and not line.lstrip().startswith("#"):
            out[section][-1].append(line.strip())
    return out


def section(blocks: dict, prefix: str) -> list[list[str]]:
    hits = [v for k, v in blocks.items() if k.startswith(prefix)]
    assert len(hits) == 1, f"runbook section {prefix!r} not found (have {list(blocks)})"
    return hits[0]


USAGE_ERROR = re.compile(r"^usage: |invalid choice|unrecognized arguments|command not found|"
                    r"Traceback \(most recent call last\)|Unknown (command|operation|option)|"
                    r"invalid option", re.M)
