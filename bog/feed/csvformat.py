"""CSV of L2 book snapshots (tardis.dev ``book_snapshot_N`` layout) -> TICK_SLOT records.

The layout (see docs/replay.md): a header line naming the columns, then one snapshot per line::

    exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,
    bids[0].amount,asks[1].price,...

Columns are found by name, so their order does not matter and extra columns are ignored;
``timestamp`` (microseconds since the Unix epoch) and level 0 of both sides are required,
``local_timestamp`` is optional. Absent levels (a thin book) are empty fields. Only the first
``DEPTH`` levels are kept. No quoting: tardis files have none.

Parsing is one numba kernel over the raw bytes (``parse_rows``), chunk by chunk, one pass
over each line: plain decimals are converted as they are scanned, anything else goes through
``parse_fixed``. Decimal text is converted straight to fixed point
x1e9 with integer arithmetic (exact for up to 18 significant digits; digits below 1e-9 are
rounded half up), never through a float. The kernel only checks syntax (field count,
numbers, NaN); book sanity (prices, crossing, order, time) is checked for every format alike
in ``bog.feed.replay.check_rows``.
"""

from __future__ import annotations

import re

import numba as nb
import numpy as np

from bog.shm.layouts import DEPTH, FLAG_FULL_SNAPSHOT, TICK_SLOT, TICK_SLOT_WORDS

CHUNK_BYTES = 4 << 20  # bytes parsed per block: bounds the memory a replay needs

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
_POW10 = np.array([10 ** k for k in range(19)], np.int64)

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
    st, v = _fixed_value(mant, exp10)
    return st, -v if neg else v


@nb.njit(cache=True, nogil=True, inline="always")
def _fixed_value(mant, exp10):
    """(status, mant x 10^exp10 in fixed point x1e9): digits below 1e-9 rounded half up."""
    if mant == 0:
        return F_OK, np.int64(0)
    p = exp10 + 9  # fixed point x1e9
    if p >= 0:
        if p > 18:
            return F_RANGE, np.int64(0)
        pw = _POW10[p]
        if mant > MAX_I64 // pw:
            return F_RANGE, np.int64(0)
        return F_OK, mant * pw
    if p < -18:
        return F_OK, np.int64(0)
    pw = _POW10[-p]
    return F_OK, (mant + pw // 2) // pw  # round half up


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


R_OTHER, R_NUM = 0, 1  # column roles in parse_rows: a level price/amount is R_NUM


@nb.njit(cache=True, nogil=True)
def parse_rows(buf, colmap, ncols, nlev, line0, out, lines, err_line, err_code, err_col,
               err_off, counts):
    """Parse the complete lines of ``buf`` (bytes after the header) into ``out``.

    ``out`` is TICK_SLOT records as int64 words (n, TICK_SLOT_WORDS), written whole (every
    word of a good row; the words a CSV has no column for are 0); ``line0`` is the file line
    number of the line before ``buf``. Good rows go to ``out`` with their line numbers in
    ``lines``; bad rows to ``err_*`` (line, E_* code, column, byte offset of the line in
    ``buf``). Blank lines are skipped. counts <- [rows ok, rows bad, last line].

    One pass over each line's bytes: the level columns' plain decimals (digits, an optional
    '.' and digits) are converted to fixed point as they are scanned; any other text (sign,
    exponent, spaces, NaN, junk, empty) goes through ``parse_fixed``, so values and statuses
    are exactly ``parse_fixed``'s. The row's errors are then decided from the fields'
    statuses in the same order as always: field count, timestamp, local timestamp, then level
    by level (asks before bids; price, amount, half level).
    """
    n = buf.shape[0]
    nw = out.shape[1]
    fs = np.empty(ncols, np.int64)
    fe = np.empty(ncols, np.int64)
    cst = np.zeros(ncols, np.int64)  # R_NUM columns: parse status and value of this row
    cval = np.zeros(ncols, np.int64)
    role = np.zeros(ncols, np.int64)
    for q in range(CM_LEVELS, CM_LEVELS + 4 * nlev):
        role[colmap[q]] = R_NUM
    line = line0
    nok = 0
    nerr = 0
    i = 0
    while i < n:
        start = i
        line += 1
        c0 = buf[i]
        if c0 == 10:
            i += 1
            continue  # blank line: not a row
        if c0 == 13 and (i + 1 == n or buf[i + 1] == 10):
            i += 2
            continue  # blank line (CRLF)
        k = i
        nf = 0
        while True:  # one field per iteration; k at its first byte
            s = k
            num = nf < ncols and role[nf] == R_NUM
            done = False
            if num:
                mant = np.int64(0)
                exp10 = 0
                sig = 0
                ndig = 0
                while k < n:
                    d = np.int64(buf[k]) - 48
                    if d < 0 or d > 9:
                        break
                    if sig < 18:
                        mant = mant * 10 + d
                        if mant > 0:
                            sig += 1
                    else:
                        exp10 += 1  # integer digit beyond 18 significant ones
                    ndig += 1
                    k += 1
                if k < n and buf[k] == 46:  # '.'
                    k += 1
                    while k < n:
                        d = np.int64(buf[k]) - 48
                        if d < 0 or d > 9:
                            break
                        if sig < 18:
                            mant = mant * 10 + d
                            exp10 -= 1
                            if mant > 0:
                                sig += 1
                        ndig += 1
                        k += 1
                if ndig > 0:
                    if k == n or buf[k] == 44 or buf[k] == 10:
                        done = True
                    elif buf[k] == 13 and (k + 1 == n or buf[k + 1] == 10):
                        done = True  # the line's CR: not part of the field
                if done:
                    st, v = _fixed_value(mant, exp10)
                    cst[nf] = st
                    cval[nf] = v
                    fs[nf] = s
                    fe[nf] = k
                    if k < n and buf[k] == 13:
                        k += 1
            if not done:  # any other field: find its end (from where the scan stopped)
                while k < n:
                    c = buf[k]
                    if c == 44 or c == 10:
                        break
                    k += 1
                f_end = k
                if (k == n or buf[k] == 10) and f_end > s and buf[f_end - 1] == 13:
                    f_end -= 1  # the line's CR
                if nf < ncols:
                    fs[nf] = s
                    fe[nf] = f_end
                    if num:
                        st, v = parse_fixed(buf, s, f_end)
                        cst[nf] = st
                        cval[nf] = v
            nf += 1
            if k >= n or buf[k] == 10:
                break
            k += 1  # the comma
        i = k + 1
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
        full = True
        if code == 0:
            for lv in range(nlev):
                b = CM_LEVELS + 4 * lv
                for side in range(2):  # 0 asks, 1 bids
                    cp = colmap[b + 2 * side]
                    ca = colmap[b + 2 * side + 1]
                    sp = cst[cp]
                    sa = cst[ca]
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
                if code != 0:
                    break
        if code != 0:
            err_line[nerr] = line
            err_code[nerr] = code
            err_col[nerr] = col
            err_off[nerr] = start
            nerr += 1
            continue
        r = out[nok]
        for w in range(nw):
            r[w] = 0
        for lv in range(nlev):
            b = CM_LEVELS + 4 * lv
            r[W_ASK_PX_L + lv] = cval[colmap[b]]  # an empty field's value is 0
            r[W_ASK_SZ_L + lv] = cval[colmap[b + 1]]
            r[W_BID_PX_L + lv] = cval[colmap[b + 2]]
            r[W_BID_SZ_L + lv] = cval[colmap[b + 3]]
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
MAX_LINE_BYTES = 1 << 20  # a longer line is dropped (a book_snapshot_25 row is ~1 KB)
# what the parser sees in place of a dropped line: not a row, so it is rejected (counted and
# logged with its line number) with the reason below, and later line numbers stay right
OVERSIZED_LINE = b"\x00oversized"
OVERSIZED_REASON = f"line longer than {MAX_LINE_BYTES:,} bytes (dropped unread)"


class LineChunks:
    """Blocks of complete lines read from a binary file, about ``chunk_bytes`` each (a line
    longer than that comes whole in a bigger block); the last line needs no newline. Only
    one block and the unfinished line after it are in memory at a time: a line longer than
    ``max_line_bytes`` (a file with no newlines, binary data) is skipped to its end without
    being kept, and comes out as one ``OVERSIZED_LINE`` for the parser to reject."""

    def __init__(self, f, chunk_bytes: int = CHUNK_BYTES, max_line_bytes: int = MAX_LINE_BYTES):
        self.f = f
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.carry = b""
        self.eof = False
        self.skipping = False  # inside an over-long line: discard up to its newline

    def next(self) -> bytes | None:
        """The next block (ends with a newline, except at the end of the file); None at EOF."""
        while not self.eof:
            block = self.f.read(self.chunk_bytes)
            if not block:
                self.eof = True
                break
            data = self.carry + block if self.carry else block
            if self.skipping:
                end = data.find(b"\n")
                if end < 0:
                    self.carry = b""
                    continue
                data = OVERSIZED_LINE + data[end:]
                self.skipping = False
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > self.max_line_bytes:
                    self.skipping, self.carry = True, b""
                else:
                    self.carry = data
                continue
            self.carry = data[cut + 1:]
            if len(self.carry) > self.max_line_bytes:  # the next line is over-long already
                self.skipping, self.carry = True, b""
            return data[:cut + 1]
        if self.skipping:
            self.skipping = False
            return OVERSIZED_LINE
        data, self.carry = self.carry, b""
        return data or None


def read_header(f) -> str:
    """The header line of an open binary file (BOM and line end removed)."""
    header = f.readline(1 << 20)
    return header.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")


class ParsedChunk:
    """One block of a CSV, parsed (syntax-checked only): ``rows[:n]`` with their file line
    numbers, ``rows_read`` (rows in the block, parsed or not) and the (line, reason) of the
    rows that failed to parse. The arrays are reused by the next block."""

    __slots__ = ("rows", "lines", "rows_read", "rejects")

    def __init__(self, rows, lines, rows_read, rejects):
        self.rows, self.lines, self.rows_read, self.rejects = rows, lines, rows_read, rejects


class BookCsvReader:
    """A tardis ``book_snapshot_N`` CSV, parsed block by block (``next_chunk``), so memory
    stays bounded by the block size whatever the file size. Raises CsvHeaderError."""

    def __init__(self, f, chunk_bytes: int = CHUNK_BYTES, header: str | None = None):
        text = read_header(f) if header is None else header
        self.colmap, self.ncols, self.names, self.nlev = parse_header(text)
        self.levels_in_file = sum(1 for n in self.names
                                  if n.startswith("asks[") and n.endswith("].price"))
        self.src = LineChunks(f, chunk_bytes)
        self.line = 1  # file line number of the last line parsed (header = 1)
        self.counts = np.zeros(3, np.int64)
        self._rows = np.zeros(0, TICK_SLOT)
        self._lines = np.zeros(0, np.int64)
        self._errs = np.zeros((4, 0), np.int64)

    def next_chunk(self) -> ParsedChunk | None:
        data = self.src.next()
        if data is None:
            return None
        cap = data.count(b"\n") + 1
        if len(self._rows) < cap:  # (the parser writes every word of the rows it keeps)
            self._rows = np.zeros(cap, TICK_SLOT)
            self._lines = np.zeros(cap, np.int64)
            self._errs = np.zeros((4, cap), np.int64)
        buf = np.frombuffer(data, np.uint8)
        words = self._rows.view(np.int64).reshape(len(self._rows), TICK_SLOT_WORDS)
        e_line, e_code, e_col, e_off = self._errs
        parse_rows(buf, self.colmap, self.ncols, self.nlev, self.line, words, self._lines,
                   e_line, e_code, e_col, e_off, self.counts)
        nok, nerr = int(self.counts[0]), int(self.counts[1])
        self.line = int(self.counts[2])
        rejects = error_reasons(data, nerr, e_line, e_code, e_col, e_off, self.names, self.ncols)
        return ParsedChunk(self._rows[:nok], self._lines[:nok], nok + nerr, rejects)


def error_reasons(data: bytes, nerr: int, e_line, e_code, e_col, e_off, names, ncols,
                  reasons=None) -> list[tuple[int, str]]:
    """(line, reason) of the rows a parse kernel refused (their codes, columns, offsets)."""
    out = []
    for k in range(nerr):
        off = int(e_off[k])
        end = data.find(b"\n", off)
        text = data[off:end if end >= 0 else len(data)].rstrip(b"\r")
        oversized = text == OVERSIZED_LINE or len(text) > MAX_LINE_BYTES  # (read whole when
        # it fitted in one block: the same reason whatever the block size)
        out.append((int(e_line[k]), OVERSIZED_REASON if oversized else
                    _reason(int(e_code[k]), int(e_col[k]), names, ncols, text, reasons)))
    return out


def _reason(code: int, col: int, names: list[str], ncols: int, line_text: bytes,
            reasons=None) -> str:
    if code == E_COLUMNS:
        return f"expected {ncols} fields, found {col}"
    name = names[col] if 0 <= col < len(names) else f"#{col}"
    fields = line_text.split(b",")
    value = fields[col].decode("utf-8", "replace").strip() if 0 <= col < len(fields) else ""
    table = PARSE_REASONS if reasons is None else reasons
    return f"{table.get(code, 'bad row')} in column {name}: {value!r}"


def warm() -> None:
    """Compile the parser for the argument types used above."""
    import io

    sample = (b"exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
              b"bids[0].price,bids[0].amount\nx,y,1,2,1.5,1,1.0,2e-1\nx,y,2\n")
    r = BookCsvReader(io.BytesIO(sample))
    while r.next_chunk() is not None:
        pass
