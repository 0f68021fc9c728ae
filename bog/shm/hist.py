"""Histogram observation for numba kernels: bucket counts live in the metrics blocks."""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True, nogil=True, inline="always")
def bucket_index(edges, v):
    """Index of the first bucket whose upper bound (``le``) is >= v; len(edges) is +Inf."""
    lo = 0
    hi = edges.shape[0]
    while lo < hi:  # binary search: <= 5 steps for the 19 latency edges
        mid = (lo + hi) >> 1
        if edges[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo
