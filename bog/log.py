"""Logging for every bog process: greppable lines, journald priorities, rate limiting.

- Under systemd (``$JOURNAL_STREAM`` names our stderr) each stderr line is prefixed with its
  syslog priority (``<3>`` ...) so ``journalctl -p err`` filters correctly; every line of a
  multi-line message (a traceback) carries it, so ``-p err`` shows the whole traceback.
- Otherwise human-readable lines go to stderr and to ``<log_dir>/bog.log`` (rotated at 20 MB,
  5 kept, every file 0600), which is where the guide's ``grep "Circuit breaker" logs/bog.log``
  looks. The feed, engine, monitor and supervisor all append to that one file; rotation is
  coordinated through a lock file (held open from the start, so it works without free
  descriptors) and the file's real size, so the cap holds with several writers.
- Every line carries instance, process and market. ``BOG_LOG_JSON=1`` switches to JSON lines
  (``ts``, ``level``, ``msg``, ``instance``, ``process``, ``market``, ``pid``, ``logger``).
- ``RateLimiter`` collapses storms (gap storms) into one line plus "suppressed N similar".
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import sys
import time

import orjson

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _ContextFilter(logging.Filter):
    def __init__(self, instance: str, process: str, market: str):
        super().__init__()
        self.instance, self.process, self.market = instance, process, market

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        record.bogproc = self.process
        record.market = self.market
        return True


class _TextFormatter(logging.Formatter):
    def __init__(self, journald: bool):
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        ctx = f"instance={record.instance} process={record.bogproc} market={record.market}"
        if self.journald:
            # journald adds its own timestamp and identifier
            return _prefix_lines(f"{record.levelname} {msg} [{ctx}]", record.levelno)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        return f"{ts}.{ms:03d}Z {record.levelname:<8} bog-{record.bogproc}[{record.process}] {msg} [{ctx}]"


def _prefix_lines(text: str, levelno: int) -> str:
    """``<N>`` on every line: journald reads each line of a stream as its own entry."""
    p = f"<{_PRIORITY.get(levelno, 6)}>"
    return p + text.replace("\n", "\n" + p)


def journald_stderr() -> bool:
    """True when stderr is the journal stream systemd connected (``$JOURNAL_STREAM``).

    Compares the variable's ``device:inode`` with stderr's, as sd_journal_stream_fd(3) asks:
    a child whose stderr was redirected (``bog run 2>file`` under a service) must not write
    ``<N>`` prefixes into a file.
    """
    val = os.environ.get("JOURNAL_STREAM", "")
    if not val:
        return False
    try:
        dev, ino = (int(x) for x in val.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class SharedRotatingFileHandler(logging.handlers.WatchedFileHandler):
    """Append-only log file shared by several processes, rotated safely, owner-only.

    ``RotatingFileHandler`` in several processes loses lines and overruns its cap: one process
    renames the file and the others keep appending to the renamed one. Here every process
    reopens the file when its inode changed (``WatchedFileHandler``), and rotation happens
    under an exclusive ``flock`` on ``<file>.lock``, only if the file is still the one that
    grew past the limit. The size checked is the file's real size (``fstat``), which counts
    every process's lines, so a file exceeds ``max_bytes`` by at most one line per process.

    The lock file is opened once, here: a process out of descriptors (EMFILE, e.g. a monitor
    flooded with connections) is exactly the one logging a storm, and its rotation must not
    need a new descriptor. Files are created 0600 (and an existing file or backup with a
    wider mode is narrowed to 0600), whatever the process's umask. A line that cannot be
    written (no descriptor, disk full) is counted, reported once on stderr, and the count
    is written to the file as soon as it can be written again: never lost silently.
    """

    def __init__(self, filename: str, max_bytes: int = 20 << 20, backup_count: int = 5):
        self.max_bytes, self.backup_count = max_bytes, backup_count
        self.lost_lines, self._lost_reason = 0, ""
        super().__init__(filename, mode="a", encoding="utf-8", delay=False)
        self.lock_path = self.baseFilename + ".lock"
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        _owner_only(fd)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        try:
            self.reopenIfNeeded()  # another process rotated the file
            if self.stream is None:
                self.stream = self._open()
                self._statstream()
            if os.fstat(self.stream.fileno()).st_size >= self.max_bytes:
                self._rotate()
                self.reopenIfNeeded()
            if self.lost_lines:
                self.stream.write(self._lost_line())
                self.lost_lines = 0
            self.stream.write(msg)
            self.stream.flush()
        except OSError as e:
            self._lost(e)

    def _lost(self, e: OSError) -> None:
        if not self.lost_lines:
            sys.stderr.write(f"bog: cannot write {self.baseFilename}: {e.strerror}; counting the "
                             "lines not written\n")
        self.lost_lines += 1
        self._lost_reason = e.strerror or str(e)

    def _lost_line(self) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return (f"{ts}.000Z ERROR    bog-log[{os.getpid()}] {self.lost_lines} log lines not "
                f"written to this file ({self._lost_reason})\n")

    def _rotate(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            try:
                st = os.stat(self.baseFilename)
            except FileNotFoundError:
                return
            if (st.st_dev, st.st_ino) != (self.dev, self.ino) or st.st_size < self.max_bytes:
                return  # someone else rotated already; emit() reopens
            for i in range(self.backup_count - 1, 0, -1):
                src, dst = f"{self.baseFilename}.{i}", f"{self.baseFilename}.{i + 1}"
                if os.path.exists(src):
                    os.replace(src, dst)
                    _chmod_owner_only(dst)
            os.replace(self.baseFilename, self.baseFilename + ".1")
            _chmod_owner_only(self.baseFilename + ".1")
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        super().close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _owner_only(fd: int) -> None:
    """Narrow an open log file to 0600 (a file left by an older version, or another umask)."""
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        pass  # not ours: leave it, the write still works or fails on its own


def _chmod_owner_only(path: str) -> None:
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        pass


class _JsonFormatter(logging.Formatter):
    def __init__(self, journald: bool):
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": record.created,
            "level": record.levelname,
            "msg": record.getMessage(),
            "instance": record.instance,
            "process": record.bogproc,
            "market": record.market,
            "pid": record.process,
            "logger": record.name,
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(doc).decode()
        return f"<{_PRIORITY.get(record.levelno, 6)}>{line}" if self.journald else line


def setup_logging(process: str, instance: str, market: str = "-", log_dir: str | None = "logs",
                  level: int = logging.INFO) -> logging.Logger:
    """Configure the root logger for one bog process; returns the ``bog`` logger."""
    journald = journald_stderr()
    as_json = os.environ.get("BOG_LOG_JSON", "") not in ("", "0", "false")
    fmt_cls = _JsonFormatter if as_json else _TextFormatter
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(level)
    ctx = _ContextFilter(instance, process, market)
    # BOG_LOG_STDERR=0 (set by ``bogctl start`` for a detached ``bog run``): the file only
    to_stderr = journald or not log_dir or os.environ.get("BOG_LOG_STDERR", "1") not in ("0", "false")
    if to_stderr:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(fmt_cls(journald))
        err.addFilter(ctx)
        root.addHandler(err)
    if log_dir and not journald:
        path = os.path.join(log_dir, "bog.log")
        old = os.umask(0o077)
        try:
            os.makedirs(log_dir, mode=0o700, exist_ok=True)
            fh = SharedRotatingFileHandler(path)
        except OSError as e:  # a one-line error for the command line, not a traceback
            from bog.config import ConfigError

            raise ConfigError(f"log file {path} (BOG_LOG_DIR or process.log_dir): "
                              f"{e.strerror or e}") from None
        finally:
            os.umask(old)
        fh.setFormatter(fmt_cls(False))
        fh.addFilter(ctx)
        root.addHandler(fh)
    return logging.getLogger("bog")


class RateLimiter:
    """At most ``burst`` lines per ``period_s`` per key; then one 'suppressed N similar' line.

    ``allow(key)`` returns (allowed, suppressed_before): when a new period starts and lines were
    suppressed in the previous one, the caller appends "(suppressed N similar)".
    """

    def __init__(self, burst: int = 5, period_s: float = 10.0, clock=time.monotonic):
        self.burst, self.period_s, self.clock = burst, period_s, clock
        self._state: dict[str, list] = {}  # key -> [period_start, count, suppressed]

    def allow(self, key: str) -> tuple[bool, int]:
        now = self.clock()
        st = self._state.get(key)
        if st is None or now - st[0] >= self.period_s:
            suppressed = st[2] if st else 0
            self._state[key] = [now, 1, 0]
            return True, suppressed
        if st[1] < self.burst:
            st[1] += 1
            return True, 0
        st[2] += 1
        return False, 0

    def flush(self) -> list[tuple[str, int]]:
        """Keys whose period ended with suppressed lines (call from housekeeping)."""
        now = self.clock()
        out = []
        for key, st in self._state.items():
            if st[2] and now - st[0] >= self.period_s:
                out.append((key, st[2]))
                st[0], st[1], st[2] = now, 0, 0
        return out
