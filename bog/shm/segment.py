"""POSIX shared-memory segments: naming, ownership, stale detection, numpy views.

One process owns a segment: it creates it (mode 0600), marks it READY, and on clean shutdown
marks it CLOSED and unlinks it. Other processes attach (read-only where they only read).
If the owner crashed, the segment is left behind with state READY and a dead owner pid; the
next owner detects that (pid gone, or pid reused by another process) and replaces it with a
fresh segment and a new epoch. A live owner's segment is never taken over.

Trust: a segment is only ever attached (or taken over) when it belongs to a trusted user -
this process's own uid, or the configured ``[process] shm_owner`` (``set_shm_owner``) - and
has mode 0600, checked with ``fstat`` on the descriptor before anything is mapped. Anything
else (e.g. a ticks segment another local user created while the feed was restarting, with a
valid-looking header and fake ticks) is refused with ``UntrustedSegmentError`` ("CRITICAL
shared memory ... refusing to attach"); ``create`` removes such a squatter when it may (root,
or the file's owner) and otherwise refuses to start, saying what to remove. Each untrusted
segment is counted once per process (``untrusted_total``, exported by every process).

posix_ipc is used rather than multiprocessing.shared_memory, whose resource tracker unlinks a
segment when any process that merely attached to it exits (Python < 3.13).
"""

from __future__ import annotations

import logging
import mmap
import os
import pwd
import re
import stat
import time
from dataclasses import dataclass

import numpy as np
import posix_ipc

from bog.shm.layouts import (
    LAYOUT_VERSION,
    MAGIC,
    SEGMENT_HEADER,
    STATE_CLOSED,
    STATE_INIT,
    STATE_READY,
)

log = logging.getLogger("bog.shm")

SHM_DIR = "/dev/shm"
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


RESTARTS_ENV = "BOG_RESTARTS"  # set by `bog run` for each child: times it restarted it
SEGMENT_MODE = 0o600


class SegmentError(RuntimeError):
    """A segment cannot be created or attached; the message says why and what to do."""


class UntrustedSegmentError(SegmentError):
    """The segment is owned by an untrusted user or its mode is not 0600: possible spoofing.

    ``first`` is True the first time this process meets this segment (log it then)."""

    def __init__(self, msg: str, name: str, uid: int, mode: int, first: bool):
        super().__init__(msg)
        self.name, self.uid, self.mode, self.first = name, uid, mode, first


# -- trust ----------------------------------------------------------------------------------
_shm_owner_uid: int | None = None  # [process] shm_owner, resolved (None: own uid only)
_untrusted_seen: set[tuple] = set()  # (name, inode, uid, mode) of each refused segment


def resolve_user(spec: str | int | None) -> int | None:
    """uid of a user name or number; None for "" / None. Raises SegmentError if unknown."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or str(spec).isdigit():
        return int(spec)
    try:
        return pwd.getpwnam(str(spec)).pw_uid
    except KeyError:
        raise SegmentError(f"process.shm_owner = {spec!r}: no such user") from None


def set_shm_owner(spec: str | int | None) -> None:
    """Trust segments of this user as well as our own (``[process] shm_owner``); e.g. root
    running ``bogctl`` against units that run as ``bog``. "" = only our own uid."""
    global _shm_owner_uid
    _shm_owner_uid = resolve_user(spec)


def trusted_uids() -> tuple[int, ...]:
    own = os.geteuid()
    extra = _shm_owner_uid
    return (own,) if extra is None or extra == own else (own, extra)


def untrusted_total() -> int:
    """Untrusted segments this process refused or removed (each counted once)."""
    return len(_untrusted_seen)


_HELD_UNCHECKED = object()


def try_attach(open_fn, metrics_rec, logger: logging.Logger, held=_HELD_UNCHECKED):
    """What a process polling for a peer's segment does each pass: ``open_fn()`` (e.g.
    ``lambda: IntentRing.attach(name, writable=True)``), or None.

    A missing segment is None, silently (the peer is not running yet). One owned by another
    user or with the wrong mode is None, counted (``metrics_rec["shm_untrusted_total"]``:
    ``bog_shm_untrusted_segments_total``) and logged CRITICAL on ``logger`` the first time this
    process meets it. Given ``held`` (what is attached now, or None), a segment that is not
    READY yet, or is the very one held, is closed and None too."""
    try:
        obj = open_fn()
    except UntrustedSegmentError as e:
        metrics_rec["shm_untrusted_total"] = untrusted_total()
        if e.first:
            logger.critical("%s", e)
        return None
    except SegmentError:
        return None
    if held is not _HELD_UNCHECKED and (
            obj.segment.state != STATE_READY
            or (held is not None and obj.segment.inode == held.segment.inode)):
        obj.close(unlink=False)
        return None
    return obj


def _shm_path(name: str) -> str:
    return os.path.join(SHM_DIR, name.lstrip("/"))


def _check_trusted(name: str, st: os.stat_result, trusted: tuple[int, ...]) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid in trusted and mode == SEGMENT_MODE:
        return
    key = (name, st.st_ino, st.st_uid, mode)
    first = key not in _untrusted_seen
    _untrusted_seen.add(key)
    want = " or ".join(str(u) for u in trusted)
    raise UntrustedSegmentError(
        f"CRITICAL shared memory {name} is owned by uid {st.st_uid} mode {mode:04o}, expected "
        f"uid {want} mode {SEGMENT_MODE:04o}: refusing to attach (possible spoofing; remove "
        f"it: rm {_shm_path(name)})", name, st.st_uid, mode, first)


def validate_instance(instance: str) -> str:
    if not _INSTANCE_RE.match(instance):
        raise SegmentError(
            f"invalid instance name {instance!r}: use 1-40 characters of A-Z a-z 0-9 _ -"
        )
    return instance


def segment_name(instance: str, part: str) -> str:
    """POSIX name of one segment, e.g. ``/bog.default.ticks``."""
    return f"/bog.{validate_instance(instance)}.{part}"


def _proc_start_ticks(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot; 0 if there is no such live process
    (never existed, exited, or a zombie: exited but not yet reaped by its parent)."""
    if pid <= 0:
        return 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    # comm may contain spaces and parentheses: fields resume after the last ')'
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] in (b"Z", b"X"):  # zombie / dead: its segments are as stale as a crash's
        return 0
    return int(rest[19])


def owner_alive(pid: int, start_ticks: int) -> bool:
    """True if ``pid`` is a live (not zombie) process that started at ``start_ticks``."""
    return pid > 0 and start_ticks != 0 and _proc_start_ticks(pid) == start_ticks


@dataclass
class Segment:
    """An mmap'd segment: ``header`` (record view) and ``buf`` (the whole mapping)."""

    name: str
    kind: int
    size_bytes: int
    mm: mmap.mmap
    owner: bool
    inode: int
    header: np.ndarray  # shape (1,), dtype SEGMENT_HEADER

    # -- views ------------------------------------------------------------------------------
    def view(self, dtype, offset: int = 0, count: int = 1) -> np.ndarray:
        """A numpy view of ``count`` items of ``dtype`` at ``offset`` bytes into the body."""
        base = SEGMENT_HEADER.itemsize + offset
        return np.ndarray((count,), dtype=dtype, buffer=self.mm, offset=base)

    def words(self, offset: int, count: int) -> np.ndarray:
        return self.view(np.int64, offset, count)

    @property
    def epoch(self) -> int:
        return int(self.header["epoch"][0])

    @property
    def state(self) -> int:
        return int(self.header["state"][0])

    @property
    def restarts(self) -> int:
        return int(self.header["restarts"][0])

    def replaced_or_closed(self) -> bool:
        """True if the owner closed this segment or a new one now has its name."""
        if self.state == STATE_CLOSED:
            return True
        try:
            st = os.stat(os.path.join(SHM_DIR, self.name.lstrip("/")))
        except FileNotFoundError:
            return True
        return st.st_ino != self.inode

    # -- lifecycle --------------------------------------------------------------------------
    def mark_ready(self) -> None:
        self.header["state"][0] = STATE_READY

    def close(self, unlink: bool | None = None) -> None:
        """Owner: mark CLOSED and unlink (unless ``unlink=False``). Reader: just unmap."""
        if unlink is None:
            unlink = self.owner
        if self.owner:
            self.header["state"][0] = STATE_CLOSED
        self.header = None  # release numpy views before closing the mmap
        if unlink:
            try:
                posix_ipc.unlink_shared_memory(self.name)
            except posix_ipc.ExistentialError:
                pass
        try:
            self.mm.close()
        except BufferError:
            # numpy views still alive somewhere: the mapping goes with the process
            log.debug("segment %s: views still referenced at close", self.name)


# Map every page at attach (MAP_POPULATE) instead of on first touch: a ticks ring is ~29 MB
# that a 200/s feed fills over 5 minutes, and until it wraps every ninth tick took a minor page
# fault in the feed and again in the engine's hot thread (issue 11, README "Performance").
# Costs the page-table setup once at start; the pages are shared, not copied.
MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _map(shm: posix_ipc.SharedMemory, size: int, writable: bool) -> mmap.mmap:
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        return mmap.mmap(shm.fd, size, MAP_FLAGS, prot)
    finally:
        shm.close_fd()


def _supervised_restarts() -> int | None:
    """The supervisor's restart count for this process (``$BOG_RESTARTS``), if it set one."""
    text = os.environ.get(RESTARTS_ENV, "")
    return int(text) if text.isdigit() else None


def _remove_squatter(name: str, e: UntrustedSegmentError) -> None:
    """Unlink an untrusted segment squatting our name, or refuse to start saying what to do."""
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        return
    except posix_ipc.PermissionsError:
        raise UntrustedSegmentError(
            f"CRITICAL shared memory {name} is owned by uid {e.uid} mode {e.mode:04o}, not by "
            f"uid {' or '.join(map(str, trusted_uids()))}: cannot remove it (permission "
            f"denied); possible spoofing: remove it as root (rm {_shm_path(name)}) and start "
            "again", name, e.uid, e.mode, False) from None
    log.critical("CRITICAL shared memory %s was owned by uid %d mode %04o, not by a trusted "
                 "user: removed it (possible spoofing)", name, e.uid, e.mode)


def create(name: str, kind: int, body_bytes: int) -> Segment:
    """Create ``name`` owned by this process, replacing a crashed owner's stale segment.

    Raises SegmentError if a live process owns it (e.g. the same service started twice). A
    segment of an untrusted user (or with a mode other than 0600) is removed with a CRITICAL
    line, or, when this user may not remove it, refused (UntrustedSegmentError).
    The header's ``restarts`` is ``$BOG_RESTARTS`` (set by ``bog run``), else the crashed
    owner's count + 1 when its segment is replaced, else 0.
    """
    size = SEGMENT_HEADER.itemsize + body_bytes
    restarts = 0
    try:
        existing = attach(name, kind=None, writable=False, wait_ready_s=0)
    except UntrustedSegmentError as e:
        _remove_squatter(name, e)
        existing = None
    except SegmentError:
        existing = None
        try:  # e.g. another user's 0600 segment we may not even open: a squatter too
            _check_trusted(name, os.lstat(_shm_path(name)), trusted_uids())
        except UntrustedSegmentError as e:
            _remove_squatter(name, e)
        except FileNotFoundError:
            pass
    if existing is not None:
        h = existing.header[0]
        pid, start = int(h["owner_pid"]), int(h["owner_start_ticks"])
        state = int(h["state"])
        restarts = int(h["restarts"]) + 1
        existing.close(unlink=False)
        if state != STATE_CLOSED and owner_alive(pid, start) and pid != os.getpid():
            raise SegmentError(
                f"shared memory {name} is owned by running process {pid}: "
                "is this instance already running? (use another --instance)"
            )
        log.warning(
            "replacing stale shared memory %s left by pid %d (state %d)", name, pid, state
        )
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            pass
    supervised = _supervised_restarts()
    if supervised is not None:
        restarts = supervised
    try:
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=SEGMENT_MODE, size=size)
    except posix_ipc.ExistentialError as e:
        raise SegmentError(f"shared memory {name} appeared while creating it: {e}") from e
    except posix_ipc.PermissionsError as e:
        raise SegmentError(f"no permission to create shared memory {name}: {e}") from e
    st = os.fstat(shm.fd)
    if stat.S_IMODE(st.st_mode) != SEGMENT_MODE:  # shm_open applies the umask: never widen
        os.fchmod(shm.fd, SEGMENT_MODE)
    inode = st.st_ino
    mm = _map(shm, size, writable=True)
    header = np.ndarray((1,), dtype=SEGMENT_HEADER, buffer=mm, offset=0)
    h = header[0]
    h["layout_version"] = LAYOUT_VERSION
    h["kind"] = kind
    h["size_bytes"] = size
    h["epoch"] = time.time_ns()
    h["owner_pid"] = os.getpid()
    h["owner_start_ticks"] = _proc_start_ticks(os.getpid())
    h["state"] = STATE_INIT
    h["restarts"] = restarts
    h["magic"] = MAGIC  # last: a reader never sees a valid magic over a half-made header
    return Segment(name, kind, size, mm, True, inode, header)


def attach(name: str, kind: int | None, writable: bool = False, wait_ready_s: float = 0.0) -> Segment:
    """Attach to an existing segment, optionally waiting up to ``wait_ready_s`` for READY."""
    deadline = time.monotonic() + wait_ready_s
    while True:
        try:
            seg = _attach_once(name, kind, writable)
            if seg.state == STATE_READY or wait_ready_s <= 0:
                return seg
            seg.close(unlink=False)
            reason = f"shared memory {name} is not ready"
        except UntrustedSegmentError:
            raise  # waiting would not make it trustworthy
        except SegmentError as e:
            reason = str(e)
        if time.monotonic() >= deadline:
            raise SegmentError(reason)
        time.sleep(0.05)


def _attach_once(name: str, kind: int | None, writable: bool) -> Segment:
    try:
        shm = posix_ipc.SharedMemory(name, 0, read_only=not writable)
    except posix_ipc.ExistentialError:
        raise SegmentError(f"shared memory {name} does not exist (is the process running?)")
    except posix_ipc.PermissionsError:
        raise SegmentError(
            f"permission denied on shared memory {name}: it belongs to another user "
            "(segments are owner-only; run as the user that runs bog)"
        ) from None
    st = os.fstat(shm.fd)
    try:
        _check_trusted(name, st, trusted_uids())  # before mapping anything of it
    except UntrustedSegmentError:
        shm.close_fd()
        raise
    size = shm.size
    inode = st.st_ino
    if size < SEGMENT_HEADER.itemsize:
        shm.close_fd()
        raise SegmentError(f"shared memory {name} is truncated ({size} bytes)")
    mm = _map(shm, size, writable)
    header = np.ndarray((1,), dtype=SEGMENT_HEADER, buffer=mm, offset=0)
    h = header[0]
    problem = None
    if int(h["magic"]) != MAGIC:
        problem = "has no valid header (being created, or not a bog segment)"
    elif int(h["layout_version"]) != LAYOUT_VERSION:
        problem = f"has layout version {int(h['layout_version'])}, this bog expects {LAYOUT_VERSION}"
    elif kind is not None and int(h["kind"]) != kind:
        problem = f"is of kind {int(h['kind'])}, expected {kind}"
    elif int(h["size_bytes"]) != size:
        problem = f"size {size} does not match its header ({int(h['size_bytes'])})"
    if problem:
        del header, h
        mm.close()
        raise SegmentError(f"shared memory {name} {problem}")
    return Segment(name, int(h["kind"]), size, mm, False, inode, header)


def list_segments(instance: str | None = None) -> list[str]:
    """Names of bog segments present on this machine (optionally for one instance)."""
    prefix = "bog." if instance is None else f"bog.{instance}."
    try:
        return sorted("/" + n for n in os.listdir(SHM_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def unlink_instance(instance: str) -> list[str]:
    """Unlink every segment of ``instance`` (tests and tools, after its processes stopped)."""
    gone = []
    for name in list_segments(instance):
        try:
            posix_ipc.unlink_shared_memory(name)
            gone.append(name)
        except posix_ipc.ExistentialError:
            pass
    return gone
