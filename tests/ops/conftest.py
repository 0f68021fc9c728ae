"""Fixtures of the operations tests (helpers live in opshelpers.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opshelpers import NUMBA_CACHE


@pytest.fixture(scope="session")
def numba_cache():
    """Warm numba's cache for this checkout once (reused across test runs)."""
    NUMBA_CACHE.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(NUMBA_CACHE))
    subprocess.run([sys.executable, "-m", "bog.warmup"], env=env, check=True,
                   capture_output=True, timeout=600)
    return NUMBA_CACHE
