"""The one-pass CSV kernel (``csvformat.parse_rows``) against a plain reference: the parser
as it is specified (docs/replay.md): split each line on commas, ``parse_int`` the timestamps,
``parse_fixed`` every level field, then decide the row's error in a fixed order (field count,
timestamp, local timestamp, then level by level: asks before bids; price, amount, half
level). Random lines from a vocabulary of good and bad fields (signs, exponents, spaces, NaN,
junk, empties, CRs, too many or too few fields, blank lines) must give the same rows, values,
line numbers, error codes, columns and offsets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hst

from bog.feed import csvformat as C
from bog.shm.layouts import TICK_SLOT, TICK_SLOT_WORDS

HEADER = ("exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
          "bids[0].price,bids[0].amount,asks[1].price,asks[1].amount,bids[1].price,"
          "bids[1].amount,asks[2].price,asks[2].amount,bids[2].price,bids[2].amount")
# level fields: mostly good plain decimals, then everything parse_fixed handles specially
NUMS = ["42283.5", "3.165", "0.001", "1", "100", "0", "0.0", "7.", ".5", "12345678.123456789",
        "0.0000000005", "0.0000000004", "9223372036.85477580", "9223372037",
        "0.1234567891234567899", "123456789012345678901", "123456789.123456789",
        "123456789.1234567891", "0000000000000000000001.5", "9.99999999999999999999", "1e-05", "2E3", "1e30", "-1.5",
        "+2", " 3 ", "4 ", "", "", "", "NaN", "-inf", "Infinity", "nano", "abc", "1.2.3", ".",
        "1e", "5\r", "0x10", "١"]
TS = ["1704067200123456", "1704067200123457", "", "0", "-5", "abc", " 1704067200000000 ",
      "17040672001234560000", "9223372036854775", "9223372036854776"]
ENDS = ["\n", "\r\n"]


def reference(data: bytes, colmap, ncols, nlev):
    """(rows: [(line, words)], errors: [(line, code, col, offset)]) as specified."""
    buf = np.frombuffer(data, np.uint8)
    rows, errs = [], []
    line, i, n = 0, 0, len(data)
    while i < n:
        j = data.find(b"\n", i)
        j = n if j < 0 else j
        line += 1
        start, e = i, j
        i = j + 1
        if e > start and data[e - 1] == 13:
            e -= 1
        if e == start:
            continue
        bounds, s = [], start
        for k in range(start, e + 1):
            if k == e or data[k] == 44:
                bounds.append((s, k))
                s = k + 1
        code, col = 0, 0
        if len(bounds) != ncols:
            code, col = C.E_COLUMNS, len(bounds)
        ts = local = 0
        if code == 0:
            c = colmap[C.CM_TS]
            st, ts = C.parse_int(buf, *bounds[c])
            if st != C.F_OK:
                code, col = C.E_TIMESTAMP, c
            elif ts > C.MAX_I64 // 1000:
                code, col = C.E_RANGE, c
        if code == 0 and colmap[C.CM_LOCAL_TS] >= 0:
            c = colmap[C.CM_LOCAL_TS]
            st, v = C.parse_int(buf, *bounds[c])
            if st == C.F_OK and v <= C.MAX_I64 // 1000:
                local = v
            elif st != C.F_EMPTY:
                code, col = C.E_TIMESTAMP, c
        words = np.zeros(TICK_SLOT_WORDS, np.int64)
        full = True
        for lv in range(nlev if code == 0 else 0):
            b = C.CM_LEVELS + 4 * lv
            for side in range(2):
                cp, ca = colmap[b + 2 * side], colmap[b + 2 * side + 1]
                sp, px = C.parse_fixed(buf, *bounds[cp])
                sa, sz = C.parse_fixed(buf, *bounds[ca])
                if sp not in (C.F_OK, C.F_EMPTY):
                    code, col = C._field_error(sp), cp
                elif sa not in (C.F_OK, C.F_EMPTY):
                    code, col = C._field_error(sa), ca
                elif (sp == C.F_EMPTY) != (sa == C.F_EMPTY):
                    code, col = C.E_HALF_LEVEL, cp if sp == C.F_EMPTY else ca
                if code:
                    break
                full = full and sp != C.F_EMPTY
                pw, sw = (C.W_ASK_PX_L, C.W_ASK_SZ_L) if side == 0 else (C.W_BID_PX_L,
                                                                          C.W_BID_SZ_L)
                words[pw + lv], words[sw + lv] = px, sz
            if code:
                break
        if code:
            errs.append((line, code, col, start))
            continue
        words[C.W_EXCHANGE_TS], words[C.W_LOCAL_RECV] = ts * 1000, local * 1000
        words[C.W_BID_PX], words[C.W_BID_SZ] = words[C.W_BID_PX_L], words[C.W_BID_SZ_L]
        words[C.W_ASK_PX], words[C.W_ASK_SZ] = words[C.W_ASK_PX_L], words[C.W_ASK_SZ_L]
        words[C.W_FLAGS] = C.FLAG_FULL_SNAPSHOT if full else 0
        rows.append((line, words))
    return rows, errs


def kernel(data: bytes, colmap, ncols, nlev):
    cap = data.count(b"\n") + 1
    # garbage in every word: the kernel must write the rows it keeps whole
    out = np.full(cap * TICK_SLOT.itemsize, 0x55, np.uint8).view(TICK_SLOT)
    words = out.view(np.int64).reshape(cap, TICK_SLOT_WORDS)
    lines = np.zeros(cap, np.int64)
    e = np.zeros((4, cap), np.int64)
    counts = np.zeros(3, np.int64)
    C.parse_rows(np.frombuffer(data, np.uint8), colmap, ncols, nlev, 0, words, lines, *e,
                 counts)
    nok, nerr = int(counts[0]), int(counts[1])
    rows = [(int(lines[k]), words[k].copy()) for k in range(nok)]
    errs = [tuple(int(x) for x in e[:, k]) for k in range(nerr)]
    return rows, errs, int(counts[2])


field_lists = hst.lists(hst.sampled_from(NUMS), min_size=12, max_size=12)
line_st = hst.tuples(hst.sampled_from(TS), hst.sampled_from(TS + ["", ""]), field_lists,
                     hst.sampled_from([0, 0, 0, 0, 1, -1]), hst.sampled_from(ENDS),
                     hst.booleans())


@settings(max_examples=400, deadline=None)
@given(hst.lists(line_st, min_size=1, max_size=12), hst.booleans(), hst.booleans())
def test_one_pass_kernel_matches_the_specified_parse(lines, last_newline, two_levels):
    """Every row's words, line numbers, error codes, columns and offsets equal the reference."""
    header = HEADER
    if two_levels:  # fewer levels than the file has: level 2 columns are ignored
        header = header.replace("asks[2].price", "x").replace("bids[2].amount", "y")
    colmap, ncols, _, nlev = C.parse_header(header)
    text = []
    for ts, local, nums, extra, end, blank in lines:
        fields = ["binance", "BTCUSDT", ts, local] + nums
        if extra > 0:
            fields.append("1")
        elif extra < 0:
            fields.pop()
        text.append(",".join(fields) + end)
        if blank:
            text.append(end)
    data = "".join(text).encode()
    if not last_newline:
        data = data.rstrip(b"\n")
    rows, errs, last = kernel(data, colmap, ncols, nlev)
    want_rows, want_errs = reference(data, colmap, ncols, nlev)
    assert errs == want_errs
    assert [ln for ln, _ in rows] == [ln for ln, _ in want_rows]
    for (ln, got), (_, want) in zip(rows, want_rows):
        assert got.tolist() == want.tolist(), ln
    assert last == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def test_kernel_fast_and_slow_fields_agree_exactly_on_every_vocabulary_value():
    """Each value of the vocabulary as a best ask price: kernel == parse_fixed."""
    colmap, ncols, _, nlev = C.parse_header(HEADER)
    for v in NUMS:
        nums = ["2", "1", "1", "1"] * 3
        nums[0] = v
        for end in ENDS:
            data = (",".join(["x", "y", "1704067200123456", ""] + nums) + end).encode()
            rows, errs, _ = kernel(data, colmap, ncols, nlev)
            want_rows, want_errs = reference(data, colmap, ncols, nlev)
            assert errs == want_errs, v
            assert [w.tolist() for _, w in rows] == [w.tolist() for _, w in want_rows], v
