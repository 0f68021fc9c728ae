"""The engine's persisted pause: ``<state dir>/<instance>/paused``, next to the journal.

A pause is a safety action: an engine paused by ``bogctl pause`` must stay paused across a
restart or a crash until ``bogctl resume``. The engine saves the flag before it applies a
pause, removes it when it applies a resume, and starts paused (before its kernel first runs,
so no order is placed) when the file is there. The file is owner-only (0600, in the 0700
state directory) and holds one JSON line saying when the pause was requested.
"""

from __future__ import annotations

import json
import os
import time

PAUSE_FILE = "paused"


class PauseFlag:
    def __init__(self, state_dir: str):
        self.dir = state_dir
        self.path = os.path.join(state_dir, PAUSE_FILE)

    def is_set(self) -> bool:
        return os.path.exists(self.path)

    def save(self, paused: bool) -> None:
        """Make the flag durable (``paused``) or remove it; raises OSError on failure."""
        if paused:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            tmp = self.path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps({"paused_at_ns": time.time_ns(),
                                         "by": "bogctl pause"}).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the rename or unlink itself survives a power loss
        finally:
            os.close(dfd)
