"""Reading bog's logs for ``bogctl logs``: from the journal or from ``logs/bog.log``.

Both sources become the same ``Entry`` stream, filtered by the guide's patterns, a start
time and a syslog priority. The journal is read through ``journalctl -o json`` (no Python
binding needed); the file is parsed line by line (text or ``BOG_LOG_JSON`` lines;
continuation lines of a traceback belong to the entry above them).
"""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import orjson

# The guide's greps, by name (``bogctl logs --pattern sequence-gap``); other text is literal.
PATTERNS = {
    "circuit-breaker": "Circuit breaker",
    "fills-dropped": "fills dropped",
    "position-correction": "Position correction",
    "sequence-gap": "Sequence gap",
    "stale-data": "Stale data",
    "signals": "Signal::",
    "critical": "CRITICAL",
}
PRIORITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5,
              "info": 6, "debug": 7}
LEVEL_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}
_UNITS_S = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
            "hour": 3600, "d": 86400, "day": 86400}
_TEXT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z (\w+)\s+bog-([\w-]+)\[(\d+)\] (.*)$")

_INSTANCE = re.compile(r"\[instance=([A-Za-z0-9_-]+) process=")


class LogError(ValueError):
    """Bad option or unreadable source; the message says what to do."""


def pattern_text(p: str) -> str:
    return PATTERNS.get(p, p)


def parse_priority(text: str) -> int:
    """``err``, ``warning``, ... or ``0``-``7`` -> the number (as journalctl -p)."""
    t = text.strip().lower()
    if t.isdigit() and 0 <= int(t) <= 7:
        return int(t)
    if t in PRIORITIES:
        return PRIORITIES[t]
    raise LogError(f"-p {text!r}: use one of {', '.join(PRIORITIES)} or 0-7")


def parse_since(text: str, now: float | None = None) -> float:
    """journalctl's common forms -> epoch seconds: "10 minutes ago", "-10m", "today",
    "yesterday", "now", "2026-11-25", "2026-11-25 10:00[:00]" (local time), or epoch "@N"."""
    now = time.time() if now is None else now
    t = text.strip().lower()
    if t == "now":
        return now
    if t in ("today", "yesterday"):
        lt = time.localtime(now)
        midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
        return midnight - (86400 if t == "yesterday" else 0)
    if t.startswith("@"):
        try:
            return float(t[1:])
        except ValueError:
            pass
    m = re.fullmatch(r"(?:-\s*)?(\d+(?:\.\d+)?)\s*([a-z]+?)s?(?:\s+ago)?", t)
    if m and m.group(2) in _UNITS_S and (t.startswith("-") or t.endswith("ago")):
        return now - float(m.group(1)) * _UNITS_S[m.group(2)]
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(text.strip(), fmt))
        except ValueError:
            continue
    raise LogError(f"--since {text!r}: use e.g. '10 minutes ago', '-1h', 'today', "
                   "'2026-11-25 10:00'")


@dataclass
class Entry:
    ts: float
    priority: int
    ident: str  # bog-engine, systemd, ...
    pid: int
    message: str
    raw: str  # the line as the source wrote it (file) or formatted like journalctl (journal)
    instance: str | None = None  # from the line's context (file); None from the journal

    def to_json(self) -> dict:
        return {"ts": _iso(self.ts), "priority": self.priority, "ident": self.ident,
                "pid": self.pid, "message": self.message}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


# -- logs/bog.log ------------------------------------------------------------------------------
def log_files(log_dir: str) -> list[str]:
    """bog.log and its rotations, oldest first."""
    base = os.path.join(log_dir, "bog.log")
    rotated = []
    for name in os.listdir(log_dir) if os.path.isdir(log_dir) else []:
        m = re.fullmatch(r"bog\.log\.(\d+)", name)
        if m:
            rotated.append((int(m.group(1)), os.path.join(log_dir, name)))
    return [p for _, p in sorted(rotated, reverse=True)] + ([base] if os.path.exists(base) else [])


def parse_line(line: str) -> Entry | None:
    """One line of bog.log as an Entry; None for a continuation line (traceback)."""
    if line.startswith("{"):
        try:
            d = orjson.loads(line)
            msg = d.get("msg", "") + ("\n" + d["exc"] if d.get("exc") else "")
            return Entry(float(d["ts"]), LEVEL_PRIORITY.get(d.get("level"), 6),
                         f"bog-{d.get('process', '?')}", int(d.get("pid", 0)), msg, line,
                         d.get("instance"))
        except (ValueError, KeyError, TypeError):
            return None
    m = _TEXT_LINE.match(line)
    if not m:
        return None
    ts = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000
    inst = _INSTANCE.search(m.group(6))
    return Entry(ts, LEVEL_PRIORITY.get(m.group(3), 6), f"bog-{m.group(4)}", int(m.group(5)),
                 f"{m.group(3)} {m.group(6)}", line, inst.group(1) if inst else None)


def entries_from_lines(lines: Iterable[str]) -> Iterator[Entry]:
    cur: Entry | None = None
    for line in lines:
        line = line.rstrip("\n")
        e = parse_line(line)
        if e is None:
            if cur is not None:  # a traceback line: part of the entry above
                cur.message += "\n" + line
                cur.raw += "\n" + line
            continue
        if cur is not None:
            yield cur
        cur = e
    if cur is not None:
        yield cur


def file_entries(log_dir: str) -> Iterator[Entry]:
    files = log_files(log_dir)
    if not files:
        raise LogError(f"no log file {os.path.join(log_dir, 'bog.log')}: bog logs there when "
                       "it runs outside systemd (set BOG_LOG_DIR or [process] log_dir if it "
                       "was started elsewhere)")

    def lines():
        for p in files:
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    yield from f
            except FileNotFoundError:  # rotated away while reading
                continue
            except PermissionError:
                raise LogError(f"permission denied reading {p}: run as the user that runs bog")

    return entries_from_lines(lines())


def follow_file(log_dir: str, poll_s: float = 0.2) -> Iterator[Entry]:
    """Entries appended to bog.log from now on, across rotations (like ``tail -F``)."""
    path = os.path.join(log_dir, "bog.log")
    f = None
    ino = None
    buf = ""
    first = True  # the file as it is now was already printed: start at its end
    while True:
        if f is None:
            try:
                f = open(path, encoding="utf-8", errors="replace")
            except FileNotFoundError:
                first = False
                time.sleep(poll_s)
                continue
            ino = os.fstat(f.fileno()).st_ino
            if first:
                f.seek(0, os.SEEK_END)
            first = False
        chunk = f.read()
        if chunk:
            buf += chunk
            *complete, buf = buf.split("\n")
            yield from entries_from_lines(complete)
            continue
        try:
            st = os.stat(path)
            if st.st_ino != ino or st.st_size < f.tell():
                f.close()
                f = None  # rotated or truncated: read the new file from its start
                continue
        except FileNotFoundError:
            pass
        time.sleep(poll_s)


# -- the journal -------------------------------------------------------------------------------
def journal_command(units: list[str], since: str | None, priority: str | None, follow: bool,
                    lines: int | None) -> list[str]:
    cmd = ["journalctl", "--no-pager", "-o", "json"]
    for u in units:
        cmd += ["-u", u]
    if since:
        cmd += ["--since", since]
    if priority:
        cmd += ["-p", priority]
    if follow:
        cmd += ["-f", "-n", str(lines if lines is not None else 10)]
    return cmd


def journal_entry(line: bytes) -> Entry | None:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    msg = d.get("MESSAGE", "")
    if isinstance(msg, list):  # journalctl writes non-UTF-8 messages as byte arrays
        msg = bytes(msg).decode("utf-8", "replace")
    ts = int(d.get("__REALTIME_TIMESTAMP", "0")) / 1e6
    ident = d.get("SYSLOG_IDENTIFIER") or d.get("_COMM") or "?"
    pid = int(d.get("_PID", d.get("SYSLOG_PID", 0)) or 0)
    prio = int(d.get("PRIORITY", 6))
    raw = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(ts))} {ident}[{pid}]: {msg}"
    return Entry(ts, prio, ident, pid, msg, raw)


def journal_entries(cmd: list[str]) -> Iterator[Entry]:
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise LogError("journalctl not found")
    try:
        for line in p.stdout:
            e = journal_entry(line)
            if e is not None:
                yield e
        err = p.stderr.read().decode(errors="replace").strip()
        if p.wait() != 0:
            raise LogError(f"journalctl failed: {err or 'exit status %d' % p.returncode}")
        if err and "No journal files were found" not in err and "-- No entries --" not in err:
            if "not seeing messages from other users" in err or "insufficient permissions" in err.lower():
                raise LogError("journalctl: insufficient permissions to read bog's logs: run as "
                               "root or a member of the systemd-journal or adm group")
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait()


def select(entries: Iterable[Entry], patterns: list[str], since_ts: float | None,
           max_priority: int | None) -> Iterator[Entry]:
    texts = [pattern_text(p) for p in patterns]
    for e in entries:
        if since_ts is not None and e.ts < since_ts:
            continue
        if max_priority is not None and e.priority > max_priority:
            continue
        if texts and not any(t in e.message for t in texts):
            continue
        yield e
