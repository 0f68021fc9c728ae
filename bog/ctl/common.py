"""What every bogctl verb shares: exit codes, the user-facing error, output and waiting."""

from __future__ import annotations

import json
import os
import time

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NOT_RUNNING = 0, 1, 2


class CtlError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 2 unless given."""

    def __init__(self, msg: str, code: int = EXIT_NOT_RUNNING):
        super().__init__(msg)
        self.code = code


def emit(args, doc: dict, text: str) -> None:
    """Print ``doc`` as JSON with ``--json``, else ``text``."""
    print(json.dumps(doc) if args.json else text)


def wait(pred, timeout_s: float) -> bool:
    """Poll ``pred`` every 100 ms until it is true or ``timeout_s`` passed (last try at the end)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def log_directory(cfg) -> str:
    """Where the local processes write ``bog.log`` (``$BOG_LOG_DIR``, the config, ./logs)."""
    return os.path.abspath(os.environ.get("BOG_LOG_DIR") or cfg.process.log_dir or "logs")
