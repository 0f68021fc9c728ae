"""CSV of L2 book snapshots (tardis.dev ``book_snapshot_N`` layout) -> TICK_SLOT records.

The layout (see docs/replay.md): a header line naming the columns, then one snapshot per line::

    exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,
    bids[0].amount,asks[1].price,...

Columns are found by name, so their order does not matter and extra columns are ignored;
``timestamp`` (microseconds since the Unix epoch) and level 0 of both sides are required,
``local_timestamp`` is optional. Absent levels (a thin book) are empty fields. Only the first
``DEPTH`` levels are kept. No quoting: tardis files have none.

Parsing is one numba kernel over the raw bytes (``parse_rows``), chunk by chunk, so a
million-row file loads in a second or two. Decimal text is converted straight to fixed point
x1e9 with integer arithmetic (exact for up to 18 significant digits; digits below 1e-9 are
rounded half up), never through a float. The kernel only checks syntax (field count,
numbers, NaN); book sanity (prices, crossing, order, time) is checked for every format alike
in ``bog.feed.replay.check_rows``.
"""

from __future__ import annotations

import mmap
import re

import numba as nb
import numpy as np

from bog.shm.layouts import DEPTH, FLAG_FULL_SNAPSHOT, TICK_SLOT, TICK_SLOT_WORDS

CHUNK_BYTES = 8 << 20  # bytes parsed per kernel call (bounds the transient memory)

# Parse status of one field
F_OK, F_EMPTY, F_BAD, F_NAN, F_RANGE = 0, 1, 2, 3, 4

# Row errors found while parsing (code, column index)
E_COLUMNS = 1  # column = number of fields found
E_TIMESTAMP = 2
E_NUMBER = 3
E_NAN = 4
E_RANGE = 5
E_HALF_LEVEL = 6  # a price without its amount or the reverse
PARSE_REASONS = {
    E_COLUMNS: "wrong number of fields",
    E_TIMESTAMP: "missing or unparsable timestamp",
    E_NUMBER: "unparsable number",
    E_NAN: "NaN or infinite value",
    E_RANGE: "number out of range for fixed point x1e9",
    E_HALF_LEVEL: "level has a price without an amount or an amount without a price",
}

MAX_I64 = np.int64(9223372036854775807)

# colmap layout: [timestamp, local_timestamp (-1 if absent)] + per level k < nlev:
# [asks[k].price, asks[k].amount, bids[k].price, bids[k].amount]
CM_TS, CM_LOCAL_TS, CM_LEVELS = 0, 1, 2

_LEVEL_RE = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


class CsvHeaderError(ValueError):
    """The header line does not describe a book-snapshot CSV."""


def parse_header(line: str) -> tuple[np.ndarray, int, list[str], int]:
    """(colmap, number of columns, column names, levels used) for a header line."""
    names = [c.strip() for c in line.rstrip("\r\n").split(",")]
    index = {n: i for i, n in enumerate(names)}
    if "timestamp" not in index:
        raise CsvHeaderError(
            "bad header: no 'timestamp' column (expected the tardis book_snapshot layout: "
            f"exchange,symbol,timestamp,local_timestamp,asks[0].price,...); got {_preview(names)}")
    levels = 0
    while all(f"{side}[{levels}].{f}" in index for side in ("asks", "bids")
              for f in ("price", "amount")):
        levels += 1
    if levels == 0:
        raise CsvHeaderError(
            "bad header: needs at least asks[0].price, asks[0].amount, bids[0].price, "
            f"bids[0].amount; got {_preview(names)}")
    nlev = min(levels, DEPTH)
    cm = np.full(CM_LEVELS + 4 * nlev, -1, np.int64)
    cm[CM_TS] = index["timestamp"]
    cm[CM_LOCAL_TS] = index.get("local_timestamp", -1)
    for k in range(nlev):
        b = CM_LEVELS + 4 * k
        cm[b] = index[f"asks[{k}].price"]
        cm[b + 1] = index[f"asks[{k}].amount"]
        cm[b + 2] = index[f"bids[{k}].price"]
        cm[b + 3] = index[f"bids[{k}].amount"]
    return cm, len(names), names, nlev


def _preview(names: list[str]) -> str:
    shown = ",".join(names[:6])
    return repr(shown + (",..." if len(names) > 6 else ""))


# ---- numba kernels -------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def _is_word(buf, s, e, w):
    """Case-insensitive: buf[s:e] == w (w lowercase ASCII codes)."""
    if e - s != w.shape[0]:
        return False
    for k in range(e - s):
        if (buf[s + k] | 32) != w[k]:
            return False
    return True


_NAN = np.frombuffer(b"nan", np.uint8).copy()
_INF = np.frombuffer(b"inf", np.uint8).copy()
_INFINITY = np.frombuffer(b"infinity", np.uint8).copy()


@nb.njit(cache=True, nogil=True, inline="always")
def _trim(buf, s, e):
    """buf[s:e] without leading and trailing spaces, as (s, e)."""
    while s < e and buf[s] == 32:
        s += 1
    while e > s and buf[e - 1] == 32:
        e -= 1
    return s, e


@nb.njit(cache=True, nogil=True)
def parse_fixed(buf, s, e):
    """Decimal text buf[s:e] -> (status, value x1e9). Accepts sign, fraction and exponent."""
    s, e = _trim(buf, s, e)
    if s == e:
        return F_EMPTY, np.int64(0)
    neg = False
    c = buf[s]
    if c == 45:  # '-'
        neg = True
        s += 1
    elif c == 43:  # '+'
        s += 1
    if s == e:
        return F_BAD, np.int64(0)
    c = buf[s] | 32
    if c == 110 or c == 105:  # 'n' / 'i': nan, inf, infinity
        if _is_word(buf, s, e, _NAN) or _is_word(buf, s, e, _INF) or _is_word(buf, s, e, _INFINITY):
            return F_NAN, np.int64(0)
        return F_BAD, np.int64(0)
    mant = np.int64(0)
    exp10 = 0
    sig = 0
    ndig = 0
    while s < e and 48 <= buf[s] <= 57:
        if sig < 18:
            mant = mant * 10 + (buf[s] - 48)
            if mant > 0:
                sig += 1
        else:
            exp10 += 1  # integer digit beyond 18 significant ones: dropped, scale kept
        ndig += 1
        s += 1
    if s < e and buf[s] == 46:  # '.'
        s += 1
        while s < e and 48 <= buf[s] <= 57:
            if sig < 18:
                mant = mant * 10 + (buf[s] - 48)
                exp10 -= 1
                if mant > 0:
                    sig += 1
            ndig += 1
            s += 1
    if ndig == 0:
        return F_BAD, np.int64(0)
    if s < e and (buf[s] | 32) == 101:  # 'e'
        s += 1
        eneg = False
        if s < e and (buf[s] == 45 or buf[s] == 43):
            eneg = buf[s] == 45
            s += 1
        edig = 0
        ev = 0
        while s < e and 48 <= buf[s] <= 57:
            if ev < 10000:
                ev = ev * 10 + (buf[s] - 48)
            edig += 1
            s += 1
        if edig == 0:
            return F_BAD, np.int64(0)
        exp10 += -ev if eneg else ev
    if s != e:
        return F_BAD, np.int64(0)
    if mant == 0:
        return F_OK, np.int64(0)
    p = exp10 + 9  # fixed point x1e9
    if p >= 0:
        if p > 18:
            return F_RANGE, np.int64(0)
        pw = np.int64(1)
        for _ in range(p):
            pw *= 10
        if mant > MAX_I64 // pw:
            return F_RANGE, np.int64(0)
        v = mant * pw
    elif p < -18:
        v = np.int64(0)
    else:
        pw = np.int64(1)
        for _ in range(-p):
            pw *= 10
        v = (mant + pw // 2) // pw  # round half up
    return F_OK, -v if neg else v


@nb.njit(cache=True, nogil=True)
def parse_int(buf, s, e):
    """Unsigned decimal integer buf[s:e] -> (status, value)."""
    s, e = _trim(buf, s, e)
    if s == e:
        return F_EMPTY, np.int64(0)
    if e - s > 18:
        return F_RANGE, np.int64(0)
    v = np.int64(0)
    for k in range(s, e):
        c = buf[k]
        if c < 48 or c > 57:
            return F_BAD, np.int64(0)
        v = v * 10 + (c - 48)
    return F_OK, v


@nb.njit(cache=True, nogil=True)
def _field_error(status):
    if status == F_NAN:
        return E_NAN
    if status == F_RANGE:
        return E_RANGE
    return E_NUMBER


def _word(name: str) -> int:
    off = TICK_SLOT.fields[name][1]
    assert off % 8 == 0
    return off // 8


# word offsets of the TICK_SLOT fields the parser writes (the kernel writes int64 words)
W_EXCHANGE_TS = _word("exchange_ts_ns")
W_LOCAL_RECV = _word("local_recv_ns")
W_BID_PX, W_BID_SZ = _word("bid_px"), _word("bid_sz")
W_ASK_PX, W_ASK_SZ = _word("ask_px"), _word("ask_sz")
W_BID_PX_L, W_BID_SZ_L = _word("bid_px_l"), _word("bid_sz_l")
W_ASK_PX_L, W_ASK_SZ_L = _word("ask_px_l"), _word("ask_sz_l")
W_FLAGS = _word("flags")  # flags is byte 0 of this word; venue/trade_side (bytes 1-2) stay 0


@nb.njit(cache=True, nogil=True)
def parse_rows(buf, colmap, ncols, nlev, line0, out, lines, err_line, err_code, err_col,
               err_off, counts):
    """Parse the complete lines of ``buf`` (bytes after the header) into ``out``.

    ``out`` is zeroed TICK_SLOT records as int64 words (n, TICK_SLOT_WORDS); ``line0`` is the
    file line number of the line before ``buf``. Good rows go to ``out`` with their line
    numbers in ``lines``; bad rows to ``err_*`` (line, E_* code, column, byte offset of the
    line in ``buf``). Blank lines are skipped. counts <- [rows ok, rows bad, last line].
    """
    n = buf.shape[0]
    fs = np.empty(ncols, np.int64)
    fe = np.empty(ncols, np.int64)
    line = line0
    nok = 0
    nerr = 0
    i = 0
    while i < n:
        j = i
        while j < n and buf[j] != 10:
            j += 1
        line += 1
        start = i
        e = j
        i = j + 1
        if e > start and buf[e - 1] == 13:
            e -= 1
        if e == start:
            continue  # blank line: not a row
        nf = 0
        s = start
        for k in range(start, e + 1):
            if k == e or buf[k] == 44:
                if nf < ncols:
                    fs[nf] = s
                    fe[nf] = k
                nf += 1
                s = k + 1
        code = 0
        col = 0
        ts = np.int64(0)
        if nf != ncols:
            code = E_COLUMNS
            col = nf
        if code == 0:
            c = colmap[CM_TS]
            st, ts = parse_int(buf, fs[c], fe[c])
            if st != F_OK:
                code = E_TIMESTAMP
                col = c
            elif ts > MAX_I64 // 1000:
                code = E_RANGE
                col = c
        local_ts = np.int64(0)
        if code == 0 and colmap[CM_LOCAL_TS] >= 0:
            c = colmap[CM_LOCAL_TS]
            st, v = parse_int(buf, fs[c], fe[c])
            if st == F_OK and v <= MAX_I64 // 1000:
                local_ts = v
            elif st != F_EMPTY:
                code = E_TIMESTAMP
                col = c
        r = out[nok]  # overwritten by the next row if this one fails
        full = True
        if code == 0:
            for lv in range(nlev):
                b = CM_LEVELS + 4 * lv
                for side in range(2):  # 0 asks, 1 bids
                    cp = colmap[b + 2 * side]
                    ca = colmap[b + 2 * side + 1]
                    sp, px = parse_fixed(buf, fs[cp], fe[cp])
                    sa, sz = parse_fixed(buf, fs[ca], fe[ca])
                    if sp != F_OK and sp != F_EMPTY:
                        code = _field_error(sp)
                        col = cp
                        break
                    if sa != F_OK and sa != F_EMPTY:
                        code = _field_error(sa)
                        col = ca
                        break
                    if (sp == F_EMPTY) != (sa == F_EMPTY):
                        code = E_HALF_LEVEL
                        col = cp if sp == F_EMPTY else ca
                        break
                    if sp == F_EMPTY:
                        full = False
                    if side == 0:
                        r[W_ASK_PX_L + lv] = px
                        r[W_ASK_SZ_L + lv] = sz
                    else:
                        r[W_BID_PX_L + lv] = px
                        r[W_BID_SZ_L + lv] = sz
                if code != 0:
                    break
        if code != 0:
            err_line[nerr] = line
            err_code[nerr] = code
            err_col[nerr] = col
            err_off[nerr] = start
            nerr += 1
            continue
        r[W_EXCHANGE_TS] = ts * 1000
        r[W_LOCAL_RECV] = local_ts * 1000
        r[W_BID_PX] = r[W_BID_PX_L]
        r[W_BID_SZ] = r[W_BID_SZ_L]
        r[W_ASK_PX] = r[W_ASK_PX_L]
        r[W_ASK_SZ] = r[W_ASK_SZ_L]
        r[W_FLAGS] = FLAG_FULL_SNAPSHOT if full else 0
        lines[nok] = line
        nok += 1
    counts[0] = nok
    counts[1] = nerr
    counts[2] = line
    return nok


# ---- Python driver -------------------------------------------------------------------------
def alloc_zeros(n: int, dtype) -> np.ndarray:
    """Zeroed array; big ones are mapped with MAP_POPULATE, which faults every page in one go
    (in a VM, touching 450 MB page by page costs seconds)."""
    dtype = np.dtype(dtype)
    size = n * dtype.itemsize
    if size < (64 << 20) or not hasattr(mmap, "MAP_POPULATE"):
        return np.zeros(n, dtype)
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    return np.frombuffer(mm, dtype, n)


class ParsedCsv:
    """Rows parsed from a CSV (syntax-checked only) plus the rows that failed to parse."""

    def __init__(self, names, nlev, levels_in_file, capacity):
        self.names = names  # column names from the header
        self.nlev = nlev  # levels kept (<= DEPTH)
        self.levels_in_file = levels_in_file
        self.rows_read = 0
        self.n = 0  # rows parsed into _rows[:n]
        self._rows = alloc_zeros(capacity, TICK_SLOT)
        self._lines = alloc_zeros(capacity, np.int64)
        self.rejects: list[tuple[int, str]] = []  # (line, reason) of every unparsable row

    def reserve(self, more: int) -> None:
        need = self.n + more
        if need > len(self._rows):
            cap = max(need, 2 * len(self._rows))
            rows = alloc_zeros(cap, TICK_SLOT)
            rows[:self.n] = self._rows[:self.n]
            lines = alloc_zeros(cap, np.int64)
            lines[:self.n] = self._lines[:self.n]
            self._rows, self._lines = rows, lines

    @property
    def rows(self) -> np.ndarray:
        return self._rows[:self.n]

    @property
    def lines(self) -> np.ndarray:
        return self._lines[:self.n]


def _reason(code: int, col: int, names: list[str], ncols: int, line_text: bytes) -> str:
    if code == E_COLUMNS:
        return f"expected {ncols} fields, found {col}"
    name = names[col] if 0 <= col < len(names) else f"#{col}"
    fields = line_text.split(b",")
    value = fields[col].decode("utf-8", "replace").strip() if 0 <= col < len(fields) else ""
    return f"{PARSE_REASONS.get(code, 'bad row')} in column {name}: {value!r}"


def read_csv(f, path: str, size_bytes: int = 0) -> ParsedCsv:
    """Parse an open binary file positioned at the header line. Raises CsvHeaderError.

    ``size_bytes`` (the file size, 0 if unknown) sizes the row array from the first chunk's
    line length, so a plain file is parsed in place without regrowing."""
    header = f.readline(1 << 20)
    text = header.decode("utf-8", "replace").lstrip("\ufeff")
    colmap, ncols, names, nlev = parse_header(text)
    levels_in_file = sum(1 for n in names if n.startswith("asks[") and n.endswith("].price"))
    out = None
    line = 1
    carry = b""
    counts = np.zeros(3, np.int64)
    while True:
        block = f.read(CHUNK_BYTES)
        if block:
            data = carry + block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            data = data[:cut + 1]
        else:
            data, carry = carry, b""
        if out is None:
            lines_here = data.count(b"\n") + 1
            estimate = lines_here
            if size_bytes and data:
                estimate = max(lines_here, int(size_bytes / (len(data) / lines_here) * 1.02) + 16)
            out = ParsedCsv(names, nlev, levels_in_file, estimate)
        if data:
            line = _parse_chunk(data, colmap, ncols, nlev, line, names, out, counts)
        if not block:
            break
    return out


def _parse_chunk(data: bytes, colmap, ncols, nlev, line, names, out: ParsedCsv, counts) -> int:
    buf = np.frombuffer(data, np.uint8)
    cap = data.count(b"\n") + 1
    out.reserve(cap)
    words = out._rows.view(np.int64).reshape(len(out._rows), TICK_SLOT_WORDS)[out.n:]
    e_line = np.zeros(cap, np.int64)
    e_code = np.zeros(cap, np.int64)
    e_col = np.zeros(cap, np.int64)
    e_off = np.zeros(cap, np.int64)
    parse_rows(buf, colmap, ncols, nlev, line, words, out._lines[out.n:], e_line, e_code, e_col,
               e_off, counts)
    nok, nerr = int(counts[0]), int(counts[1])
    out.rows_read += nok + nerr
    out.n += nok
    for k in range(nerr):
        off = int(e_off[k])
        end = data.find(b"\n", off)
        text = data[off:end if end >= 0 else len(data)].rstrip(b"\r")
        out.rejects.append((int(e_line[k]), _reason(int(e_code[k]), int(e_col[k]), names, ncols,
                                                    text)))
    return int(counts[2])


def warm() -> None:
    """Compile the parser for the argument types used above."""
    import io

    sample = (b"exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
              b"bids[0].price,bids[0].amount\nx,y,1,2,1.5,1,1.0,2e-1\nx,y,2\n")
    read_csv(io.BytesIO(sample), "<warm>")
