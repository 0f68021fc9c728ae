"""POSIX shared-memory segments: naming, ownership, stale detection, numpy views.

One process owns a segment: it creates it (mode 0600), marks it READY, and on clean shutdown
marks it CLOSED and unlinks it. Other processes attach (read-only where they only read).
If the owner crashed, the segment is left behind with state READY and a dead owner pid; the
next owner detects that (pid gone, or pid reused by another process) and replaces it with a
fresh segment and a new epoch. A live owner's segment is never taken over.

posix_ipc is used rather than multiprocessing.shared_memory, whose resource tracker unlinks a
segment when any process that merely attached to it exits (Python < 3.13).
"""

from __future__ import annotations

import logging
import mmap
import os
import re
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


class SegmentError(RuntimeError):
    """A segment cannot be created or attached; the message says why and what to do."""


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
    """Start time of ``pid`` in clock ticks since boot, 0 if the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    # comm may contain spaces and parentheses: fields resume after the last ')'
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[19])


def owner_alive(pid: int, start_ticks: int) -> bool:
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


def _map(shm: posix_ipc.SharedMemory, size: int, writable: bool) -> mmap.mmap:
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        return mmap.mmap(shm.fd, size, mmap.MAP_SHARED, prot)
    finally:
        shm.close_fd()


def create(name: str, kind: int, body_bytes: int) -> Segment:
    """Create ``name`` owned by this process, replacing a crashed owner's stale segment.

    Raises SegmentError if a live process owns it (e.g. the same service started twice).
    """
    size = SEGMENT_HEADER.itemsize + body_bytes
    try:
        existing = attach(name, kind=None, writable=False, wait_ready_s=0)
    except SegmentError:
        existing = None
    if existing is not None:
        h = existing.header[0]
        pid, start = int(h["owner_pid"]), int(h["owner_start_ticks"])
        state = int(h["state"])
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
    try:
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
    except posix_ipc.ExistentialError as e:
        raise SegmentError(f"shared memory {name} appeared while creating it: {e}") from e
    except posix_ipc.PermissionsError as e:
        raise SegmentError(f"no permission to create shared memory {name}: {e}") from e
    inode = os.fstat(shm.fd).st_ino
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
        )
    size = shm.size
    inode = os.fstat(shm.fd).st_ino
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
