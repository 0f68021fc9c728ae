"""Helpers for the operations tests: a real systemd booted in a container (systemd-nspawn), and the runbook.

``Machine`` boots the host's own /usr with a volatile root (recipe in
../shared/notes/platform.md) and runs commands in it with ``nsenter``. The repository (with
its venv) and the Python installation the venv points to are bind-mounted read-only at the
same paths, so the units rendered by ``bogctl install-units`` run this very checkout.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import USAGE_ERROR

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
PATH_IN_MACHINE = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# numba's cache for the container, kept between runs so units start in seconds, not ~30 s
NUMBA_CACHE = Path(os.environ.get("BOG_TEST_NUMBA_CACHE", "/var/tmp/bog-test-numba-cache"))


def require_tools(*tools: str) -> None:
    """Fail (not skip) with what to install: scripts/test installs all of these."""
    missing = [t for t in tools if not shutil.which(t)]
    assert not missing, (f"missing {', '.join(missing)}: run scripts/setup --test (installs "
                         "systemd-container and systemd) or apt-get install them")


class Machine:
    """A booted systemd container; ``sh()`` runs a shell command inside it as root."""

    def __init__(self, tmp: Path, name: str, binds: tuple[str, ...] = (),
                 path: str = PATH_IN_MACHINE):
        self.tmp, self.name, self.extra_binds, self.path = tmp, name, binds, path
        self.proc: subprocess.Popen | None = None
        self.init_pid = 0
        self.boot_log = tmp / "boot.log"

    def boot(self, timeout_s: float = 60.0) -> "Machine":
        require_tools("systemd-nspawn", "nsenter")
        assert os.geteuid() == 0, "booting a systemd container needs root"
        binds = [f"--bind-ro={ROOT}", f"--bind-ro={self.tmp}:/mnt/bogtest", *self.extra_binds]
        if (ROOT / ".git").is_file():  # a git worktree: its repository lives elsewhere
            common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--git-common-dir"],
                                    capture_output=True, text=True, timeout=30).stdout.strip()
            if common:
                binds.append(f"--bind-ro={(ROOT / common).resolve()}")
        base = Path(sys.base_prefix)
        if not str(base).startswith("/usr"):
            binds.append(f"--bind-ro={base}")
        argv = ["systemd-nspawn", "-D", "/", "--volatile=yes", "--overlay=/etc::/etc",
                "-M", self.name, "--register=no", "--keep-unit", "--private-network",
                *binds, "--console=pipe", "-b"]
        with open(self.boot_log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.close)  # even if pytest is interrupted before the fixture ends
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self.init_pid:
            assert self.proc.poll() is None, f"systemd-nspawn exited:\n{self.boot_log.read_text()}"
            kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
            for k in kids:
                try:
                    if Path(f"/proc/{k}/comm").read_text().strip() == "systemd":
                        self.init_pid = int(k)
                except FileNotFoundError:  # a short-lived helper of nspawn
                    pass
            time.sleep(0.1)
        assert self.init_pid, f"no systemd in the container:\n{self.boot_log.read_text()}"
        while True:  # until systemd answers (its socket appears a moment after it starts)
            r = self.sh("systemctl is-system-running --wait", check=False, timeout=timeout_s)
            if r.stdout.strip() in ("running", "degraded") or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert r.stdout.strip() in ("running", "degraded"), r.stdout + r.stderr
        return self

    def sh(self, cmd: str, check: bool = True, timeout: float = 60.0,
           user: str | None = None) -> subprocess.CompletedProcess:
        inner = cmd if user is None else f"runuser -u {user} -- sh -c {shlex.quote(cmd)}"
        argv = ["nsenter", "-t", str(self.init_pid), "-a", "env", "-i", f"PATH={self.path}",
                "HOME=/root", "LANG=C.UTF-8", "sh", "-c", inner]
        # its own session: a `kill 0` (e.g. a pid that came out as 0) cannot reach pytest's
        # process group
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           start_new_session=True)
        if check:
            assert r.returncode == 0, f"`{cmd}` exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r

    def wait(self, cmd: str, pred, timeout_s: float = 60.0, what: str = "") -> str:
        end = time.monotonic() + timeout_s
        out = ""
        while time.monotonic() < end:
            out = self.sh(cmd, check=False).stdout
            if pred(out):
                return out
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what or cmd}; "
                             f"last output:\n{out}")

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # nspawn powers the container off
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def run_runbook_block(m: Machine, cmds: list[str], allow_fail: tuple[str, ...] = ()) -> dict:
    """Run each command; each must be valid (exit 0, or 1 = nothing found / degraded).

    ``allow_fail``: substrings of commands expected to fail in this state (e.g. curl to a
    stopped monitor). Returns command -> CompletedProcess; a command run again in the block is
    keyed ``cmd#2``, ``cmd#3``, ... so no result hides another."""
    results = {}
    for cmd in cmds:
        follow = " -f" in cmd and ("journalctl" in cmd or "bogctl logs" in cmd)
        run = f"timeout 3 {cmd}" if follow else cmd
        r = m.sh(run, check=False, timeout=90)
        key, n = cmd, 1
        while key in results:
            n += 1
            key = f"{cmd}#{n}"
        results[key] = r
        text = r.stdout + r.stderr
        expected = any(a in cmd for a in allow_fail)
        assert not USAGE_ERROR.search(text) or expected, f"`{cmd}` looks broken:\n{text}"
        ok = {0, 1, 124} if follow else {0, 1}
        assert r.returncode in ok or expected, f"`{cmd}` exited {r.returncode}:\n{text}"
    return results
