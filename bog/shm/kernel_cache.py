"""Keep numba's on-disk kernel cache in step with every source a kernel depends on.

numba (``@njit(cache=True)``) reuses a compiled kernel as long as the kernel's *own* source
file is unchanged. It does not notice a change in what the kernel imported and froze at
compile time: a code in ``bog/shm/codes.py``, a bucket edge or dtype in
``bog/shm/layouts.py``, an intrinsic in ``bog/shm/atomics.py``. After such a change (an
upgrade of an installed bog, or a developer's edit) the stale kernel would keep the old
constants: metrics silently relabelled, or worse.

``ensure_fresh()`` fingerprints every source file in the kernels' packages and, where the
fingerprint stored next to the cache differs, deletes that directory's cached kernels so they
are compiled again. It runs when ``bog.shm.atomics`` is imported, which every kernel module
does before any kernel can be called (numba reads its cache at a kernel's first call). It uses
numba's own cache locators to find the cache directory (``__pycache__`` next to the source
when writable, else ``NUMBA_CACHE_DIR`` or the user-wide cache); if numba's internals change,
it logs a warning and does nothing.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re

log = logging.getLogger("bog")

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../bog
# the packages whose modules hold kernels or constants that kernels freeze
_SOURCE_DIRS = ("shm", "engine", "feed")
FINGERPRINT_FILE = "bog-kernel-sources.sha256"
_NUMBA_IMPORT = re.compile(rb"^\s*(import numba|from numba)", re.M)  # a module with kernels


def _sources() -> list[tuple[str, bytes]]:
    """(path, content) of every module a kernel is compiled from or freezes constants of:
    all of ``bog/shm`` (layouts, codes, atomics, rings) and the numba modules elsewhere."""
    out = []
    for sub in _SOURCE_DIRS:
        for path in sorted(glob.glob(os.path.join(_PKG, sub, "*.py"))):
            with open(path, "rb") as f:
                data = f.read()
            if sub == "shm" or _NUMBA_IMPORT.search(data):
                out.append((path, data))
    return out


def fingerprint(sources: list[tuple[str, bytes]] | None = None) -> str:
    """sha256 over the kernels' sources (relative path and content)."""
    h = hashlib.sha256()
    for path, data in sources if sources is not None else _sources():
        h.update(os.path.relpath(path, _PKG).encode() + b"\0" + data)
    return h.hexdigest()


def _cache_dir(source: str) -> str | None:
    """Where numba caches the kernels of ``source`` (the first usable locator, as numba)."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    for cls in impl._locator_classes:
        loc = cls.from_function(_probe, source)  # None when unusable (e.g. not writable)
        if loc is not None:
            return loc.get_cache_path()
    return None


def _probe():
    """Stands in for a kernel when asking numba's locators (they read its code object)."""


def ensure_fresh() -> list[str]:
    """Discard cached kernels compiled from other sources; returns the directories cleared."""
    try:
        files = _sources()
        fp = fingerprint(files)
        sources: dict[str, list[str]] = {}
        for path, _ in files:
            d = _cache_dir(path)
            if d is not None:
                sources.setdefault(d, []).append(path)
    except Exception as e:  # numba internals moved: never stop a process for this
        log.warning("numba kernel cache check skipped: %s", e)
        return []
    cleared = []
    for d, paths in sources.items():
        stamp = os.path.join(d, FINGERPRINT_FILE)
        try:
            with open(stamp) as f:
                if f.read().strip() == fp:
                    continue
        except OSError:
            pass
        for path in paths:
            stem = os.path.splitext(os.path.basename(path))[0]
            for cached in glob.glob(os.path.join(d, f"{stem}.*.nb[ic]")):
                try:
                    os.unlink(cached)
                except OSError:
                    pass
        try:
            tmp = f"{stamp}.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(fp + "\n")
            os.replace(tmp, stamp)
        except OSError as e:
            log.warning("numba kernel cache %s: cannot record its sources (%s)", d, e)
        cleared.append(d)
    return cleared
