"""Recent readings, one per second, and windowed arithmetic over them.

Counters and histogram buckets in shared memory count since their process started. What
alerts and ``/health`` need is what happened recently ("P99 over the last 60 s", "gaps in the
last minute"), so the sampler keeps one ``Reading`` per second for the longest window in use
(an hour, for position corrections) and a ``Window`` computes deltas between the reading at
hand and the one ``seconds`` earlier, the way Prometheus' ``increase()`` would: a counter
whose process restarted in between counts from zero (its reset).

Memory: one reading is ~2 KB (both blocks), so an hour is ~7 MB.
"""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np

from bog.monitor.reader import Reading
from bog.shm.metrics import histogram_quantile

HISTORY_S = 3660.0  # longest window in use (1 h) plus a margin


class History:
    """Readings in time order, oldest dropped past ``keep_s``."""

    def __init__(self, keep_s: float = HISTORY_S):
        self.keep_s = keep_s
        self._readings: deque[Reading] = deque()
        self._times: deque[float] = deque()

    def add(self, r: Reading) -> None:
        self._readings.append(r)
        self._times.append(r.mono_s)
        while self._times and r.mono_s - self._times[0] > self.keep_s:
            self._readings.popleft()
            self._times.popleft()

    def __len__(self) -> int:
        return len(self._readings)

    def __iter__(self):
        return iter(self._readings)

    @property
    def latest(self) -> Reading | None:
        return self._readings[-1] if self._readings else None

    def at_or_before(self, mono_s: float) -> Reading | None:
        """Latest reading taken at or before ``mono_s``; None if all are later."""
        i = bisect.bisect_right(self._times, mono_s)
        return self._readings[i - 1] if i else None

    def oldest(self) -> Reading | None:
        return self._readings[0] if self._readings else None

    def since(self, mono_s: float) -> list[Reading]:
        i = bisect.bisect_left(self._times, mono_s)
        return [self._readings[j] for j in range(i, len(self._readings))]


# A reading sampled up to this late still stands for "seconds ago" (the sampler runs each 1 s).
_SLACK_S = 0.5


class Window:
    """Arithmetic over ``now`` and the readings before it in ``history``."""

    def __init__(self, history: History, now: Reading):
        self.history = history
        self.now = now

    # -- plain reads ------------------------------------------------------------------------
    def rec(self, process: str) -> np.void | None:
        return self.now.rec(process)

    def gauge(self, process: str, field: str) -> float | None:
        rec = self.now.rec(process)
        return None if rec is None else float(rec[field])

    # -- windows ----------------------------------------------------------------------------
    def _base(self, process: str, seconds: float) -> tuple[np.void | None, float] | None:
        """(base record, seconds covered) for a window of ``seconds`` ending now.

        Base None means "count from zero": the process started inside the window. Returns
        None when the process is not readable now.
        """
        rec = self.now.rec(process)
        if rec is None:
            return None
        start_ns = int(rec["start_ns"])
        uptime = (self.now.wall_ns - start_ns) / 1e9 if start_ns else 0.0
        if start_ns and uptime <= seconds:  # started inside the window: all it counted is in
            return None, uptime
        base = self.history.at_or_before(self.now.mono_s - seconds + _SLACK_S)
        if base is None:  # history shorter than the window: use the oldest reading
            base = self.history.oldest()
        if base is None or base is self.now:
            return rec, 0.0  # nothing earlier to compare with: no increase known yet
        brec = base.rec(process)
        if brec is None or int(brec["start_ns"]) != start_ns:
            return rec, 0.0  # not readable then (cannot tell what it counted): unknown
        return brec, self.now.mono_s - base.mono_s

    def covered_s(self, process: str, seconds: float) -> float:
        """Seconds of the window for which a delta is known (0 if the process is unreadable)."""
        b = self._base(process, seconds)
        return 0.0 if b is None else min(b[1], seconds)

    def covers(self, process: str, seconds: float) -> bool:
        return self.covered_s(process, seconds) >= seconds - _SLACK_S - 0.5

    def delta(self, process: str, field: str, seconds: float):
        """Increase of a counter (scalar or array field) over the window; None if unreadable."""
        b = self._base(process, seconds)
        if b is None:
            return None
        cur = self.now.rec(process)[field]
        if b[0] is None:
            return np.asarray(cur, dtype=np.float64) if np.ndim(cur) else float(cur)
        old = b[0][field]
        if np.ndim(cur):
            d = cur.astype(np.float64) - old.astype(np.float64)
            return np.maximum(d, 0.0)
        return max(float(cur) - float(old), 0.0)

    def rate(self, process: str, field: str, seconds: float) -> float | None:
        """Per-second increase of a scalar counter over the window, like PromQL's ``rate()``
        (without its extrapolation): the delta over the seconds the window covers. None when
        unreadable or nothing earlier to compare with yet."""
        b = self._base(process, seconds)
        if b is None or b[1] <= 0:
            return None
        return self.delta(process, field, seconds) / b[1]

    def hist_delta(self, process: str, hist: str, seconds: float) -> np.ndarray | None:
        return self.delta(process, hist + "_bucket", seconds)

    def quantile(self, q: float, process: str, hist: str, edges: np.ndarray,
                 seconds: float) -> float | None:
        """Quantile of observations in the window (None: unreadable or no observations)."""
        b = self.hist_delta(process, hist, seconds)
        if b is None or b.sum() <= 0:
            return None
        return histogram_quantile(q, b, edges)

    def count_above(self, process: str, hist: str, edges: np.ndarray, threshold: float,
                    seconds: float) -> float | None:
        """Observations in the window above ``threshold``, which must be a bucket edge."""
        b = self.hist_delta(process, hist, seconds)
        if b is None:
            return None
        i = int(np.searchsorted(edges, threshold))
        if i >= len(edges) or edges[i] != threshold:
            raise ValueError(f"{threshold} is not a bucket edge of {hist}")
        return float(b[i + 1:].sum())
