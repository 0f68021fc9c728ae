"""Compile (and cache) every numba kernel once: ``python -m bog.warmup`` (run by scripts/setup).

Each process would otherwise compile its kernels at its first start (several seconds)."""

from __future__ import annotations

import time


def warm() -> float:
    t = time.monotonic()
    import numpy as np

    from bog.config import load_config
    from bog.engine import kernel as K
    from bog.engine.process import _NoFeed
    from bog.feed.synthetic import make_params, make_state, new_staging, synth_run
    from bog.shm.layouts import ENGINE_METRICS, FEED_METRICS, FILL_WORDS, RING_CAPACITY
    from bog.shm.ring import fills_commit, fills_peek_into, ticks_read

    cfg = load_config(None, env={})
    feed = _NoFeed()
    fm = np.zeros(1, FEED_METRICS)
    synth_run(make_params(cfg.feed), make_state(cfg.feed), new_staging(), feed.ctrl, feed.words,
              fm, 0, 1)
    b = K.Buffers()
    ex = K.Exec()
    fctrl = np.zeros(8, np.int64)
    fctrl[RING_CAPACITY] = 4
    fwords = np.zeros(4 * FILL_WORDS, np.int64)
    em = np.zeros(1, ENGINE_METRICS)
    st = K.make_state()
    K.engine_run(st, K.make_params(cfg), em, feed.ctrl, feed.words, b.snap, b.snap_words,
                 b.orders, np.zeros(2, np.int64), b.fill, fctrl, fwords, b.events, b.mailbox,
                 np.zeros(1, np.int64), 0, ex.ictrl, ex.iwords, b.intent, ex.vctrl, ex.vwords,
                 b.vev, b.trade_ids)
    K.cancel_all_orders(st, em, b.orders, b.events, 0)
    K.cancel_all_venue(st, em, b.orders, b.events, ex.ictrl, ex.iwords, b.intent, 0, 0)
    fills_peek_into(fctrl, fwords, np.zeros((2, FILL_WORDS), np.int64))
    fills_commit(fctrl, 0)
    ticks_read(feed.ctrl, feed.words, 0, b.snap_words)
    try:
        from bog.feed import replay  # noqa: F401  (compiles its kernel if present)

        if hasattr(replay, "warm"):
            replay.warm()
    except ImportError:
        pass
    from bog.feed import lighterbook

    lighterbook.warm()
    return time.monotonic() - t


if __name__ == "__main__":
    print(f"bog: numba kernels ready ({warm():.1f} s)")
