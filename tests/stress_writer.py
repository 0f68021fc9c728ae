"""Writer for the seqlock stress test: publishes slots whose every word encodes its position.

Usage: python stress_writer.py SEGMENT_NAME SECONDS
"""

import sys
import time

import numba as nb
import numpy as np

from bog.shm.layouts import RING_HEAD, TICK_SLOT_WORDS
from bog.shm.ring import TicksRing, ticks_publish


@nb.njit(cache=True)
def _burst(ctrl, words, staging, n):
    for _ in range(n):
        pos = ctrl[RING_HEAD]
        for k in range(2, TICK_SLOT_WORDS):
            staging[k] = pos * 1000 + k
        ticks_publish(ctrl, words, staging)


def main():
    ring = TicksRing.create(sys.argv[1], 4)
    ring.segment.mark_ready()
    staging = np.zeros(TICK_SLOT_WORDS, np.int64)
    _burst(ring.ctrl, ring.words, staging, 1)
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        _burst(ring.ctrl, ring.words, staging, 100_000)
    print("published", int(ring.ctrl[RING_HEAD]), flush=True)
    ring.close()


if __name__ == "__main__":
    main()
