"""numba's kernel cache follows every kernel source, not only the kernel's own file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import bog

SRC = Path(bog.__file__).parent


def _run(root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    env["PYTHONPATH"] = str(root)
    code = ("import numpy as np\nfrom bog.shm.ring import ticks_head\n"
            "ticks_head(np.zeros(8, np.int64))\n")
    subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True, timeout=120)


def _cached(root: Path) -> dict[str, int]:
    d = root / "bog" / "shm" / "__pycache__"
    return {p.name: p.stat().st_mtime_ns for p in d.glob("ring.ticks_head-*.nb*")}


def test_cached_kernels_are_discarded_when_a_module_they_import_changes(tmp_path):
    """A copy of bog compiles ring.ticks_head (cached); a second run reuses the cache; after
    an edit of codes.py (which the ring kernels never name) the cache is rebuilt."""
    root = tmp_path / "copy"
    shutil.copytree(SRC, root / "bog", ignore=shutil.ignore_patterns("__pycache__"))
    _run(root)
    first = _cached(root)
    assert first, "the kernel was not cached"
    _run(root)
    assert _cached(root) == first  # nothing changed: loaded from the cache
    with open(root / "bog" / "shm" / "codes.py", "a") as f:
        f.write("\n# an edit of a module the kernels freeze constants from\n")
    _run(root)
    again = _cached(root)
    assert again and all(again[k] != first.get(k) for k in again)  # compiled anew
