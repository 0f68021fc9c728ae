"""Lighter (zkLighter perpetuals DEX): every venue-specific constant, in one place.

How sure each fact is, as in ``docs/lighter.md`` (from the venue reference notes):
**[read]** read and run from the official SDK (``lighter-sdk`` 1.1.8); **[docs]** from the
published docs/examples; **[others]** only from other open-source connectors (NautilusTrader,
Hummingbot, ccxt): likely, unverified. No machine here reaches the venue; if the real venue
disagrees with a constant, fix it here and nowhere else.

Prices and sizes arrive as decimal strings in human units (``"2325.00"``); bog converts them
straight to fixed point x1e9 (``bog.shm.layouts.FIXED``), never through a float.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# ---- endpoints [read] -----------------------------------------------------------------------
NETWORKS = {
    "mainnet": "wss://mainnet.zklighter.elliot.ai/stream",  # [read]
    "testnet": "wss://testnet.zklighter.elliot.ai/stream",  # [read]
}
WS_PATH = "/stream"  # [read]
REST_PREFIX = "/api/v1"  # [read] REST base is https://<host>/api/v1
READONLY_QUERY = "readonly=true"  # [docs] read-only session; bog's feed never sends orders

# REST paths under REST_PREFIX
REST_ORDER_BOOKS = "/orderBooks"  # [read] market list
REST_ORDER_BOOK_DETAILS = "/orderBookDetails"  # [read] ?market_id=N: adds size/price decimals

# ---- market list fields (GET /orderBooks) [read paths; names from a mainnet capture] --------
MARKETS_KEY = "order_books"  # [others] list key of the /orderBooks reply
DETAILS_KEY = "order_book_details"  # [others] list key of the /orderBookDetails reply
F_SYMBOL = "symbol"
F_MARKET_ID = "market_id"
F_MARKET_TYPE = "market_type"
F_STATUS = "status"
F_MIN_BASE = "min_base_amount"  # decimal string, base units: the minimum order size
F_MIN_QUOTE = "min_quote_amount"
F_SIZE_DECIMALS = "supported_size_decimals"  # [read] in /orderBooks
F_PRICE_DECIMALS = "supported_price_decimals"  # [read] in /orderBooks
F_DETAIL_SIZE_DECIMALS = "size_decimals"  # [read] in /orderBookDetails
F_DETAIL_PRICE_DECIMALS = "price_decimals"
F_MAKER_FEE = "maker_fee"
F_TAKER_FEE = "taker_fee"
# Market 0 is ETH (size 4 / price 2 decimals), BTC is believed to be 1 (5 / 1) [others];
# spot markets start at 2048 and ids widen past 16 bits: always resolve from /orderBooks.
MAX_DECIMALS = 9  # bog's fixed point is x1e9: a venue with more decimals cannot be exact

# ---- WebSocket frames [read] unless marked ---------------------------------------------------
T_CONNECTED = "connected"  # first frame from the server; subscribe only after it [read]
T_SUBSCRIBE = "subscribe"  # {"type":"subscribe","channel":"order_book/<id>"} [read]
T_UNSUBSCRIBE = "unsubscribe"  # [others]
T_PING = "ping"  # both directions; answered with pong [read/docs]
T_PONG = "pong"
T_SHUTDOWN = "shutdown"  # {"type":"shutdown","close_in_ms":N}: server closes soon [docs]
T_ERROR = "error"  # {"type":"error","code":N,"message":"..."} [docs]
T_BOOK_SNAPSHOT = "subscribed/order_book"  # full book [others; consistent with SDK models]
T_BOOK_UPDATE = "update/order_book"  # changed levels only; size 0 removes the level
T_TRADE_SNAPSHOT = "subscribed/trade"  # recent trades on subscribe [docs/others]
T_TRADE_UPDATE = "update/trade"  # [docs/others]

CH_BOOK = "order_book"  # subscribe with "order_book/<id>", replies say "order_book:<id>" [read]
CH_TRADE = "trade"  # "trade/<id>" [docs/others]
SUB_SEP = "/"  # channel separator in a subscribe frame [read]
REPLY_SEP = ":"  # channel separator in the server's frames [read]

F_TYPE = "type"
F_CHANNEL = "channel"
F_CLOSE_IN_MS = "close_in_ms"
F_CODE = "code"
F_MESSAGE = "message"
F_TIMESTAMP_MS = "timestamp"  # top-level frame time, ms [others]
F_ORDER_BOOK = "order_book"  # body of a book frame [others]
F_ASKS = "asks"
F_BIDS = "bids"
F_PRICE = "price"  # decimal string, human units [read]
F_SIZE = "size"  # decimal string, human units; zero removes the level [read]
F_NONCE = "nonce"  # continuity: an update is contiguous when begin_nonce == previous nonce
F_BEGIN_NONCE = "begin_nonce"  # [others]
F_OFFSET = "offset"  # NOT contiguous: never use it for gaps [others]
F_LAST_UPDATED_US = "last_updated_at"  # book time, us [others]
F_TRADES = "trades"  # list in trade frames [docs/others]
F_TRADE_PRICE = "price"
F_TRADE_SIZE = "size"
F_TRADE_IS_MAKER_ASK = "is_maker_ask"  # true: the ask rested, so the taker bought
F_TRADE_TIME_US = "transaction_time"  # us [docs/others]; fallback F_TRADE_TIME_MS
F_TRADE_TIME_MS = "timestamp"

# ---- connection life -------------------------------------------------------------------------
CLIENT_KEEPALIVE_MAX_S = 120.0  # the client must send something at least this often [read/docs]
PROTOCOL_PING_INTERVAL_S = 20.0  # bog's WebSocket-level pings (they count as traffic) [read]
PROTOCOL_PING_TIMEOUT_S = 20.0
APP_PING_INTERVAL_S = 60.0  # an application {"type":"ping"} too, well inside the 2 min
MAX_FRAME_BYTES = 16 << 20  # a full book snapshot of a deep market stays well below this

# ---- limits [others, unverified] -------------------------------------------------------------
CLIENT_MESSAGES_PER_MIN = 200
MESSAGES_IN_FLIGHT = 50
SUBSCRIPTIONS_PER_CONNECTION = 500
NEW_CONNECTIONS_PER_MIN_PER_IP = 80  # bog's reconnect back-off stays far below this


def subscribe_frame(channel: str, market_id: int) -> dict:
    return {F_TYPE: T_SUBSCRIBE, F_CHANNEL: f"{channel}{SUB_SEP}{market_id}"}


def reply_channel(channel: str, market_id: int) -> str:
    return f"{channel}{REPLY_SEP}{market_id}"


def ws_url(network: str, url: str = "") -> str:
    """The WebSocket URL: ``url`` when given, else the network's."""
    return url or NETWORKS[network]


def rest_base(ws: str) -> str:
    """REST base URL for a WebSocket URL: wss://h/stream -> https://h/api/v1 (ws -> http)."""
    parts = urlsplit(ws)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, REST_PREFIX, "", ""))


def timestamp_ns(v) -> int:
    """A venue timestamp to ns. The unit of each field is [others] (``timestamp`` ms,
    ``last_updated_at``/``transaction_time`` us), so it is taken from the magnitude instead:
    seconds, ms, us or ns since the epoch all give the right ns. TypeError if not a number."""
    if type(v) is not int:
        if type(v) is float and v == v:
            v = int(v)
        else:
            raise TypeError("timestamp is not a number")
    if v >= 10 ** 17:
        return v
    if v >= 10 ** 14:
        return v * 1_000
    if v >= 10 ** 11:
        return v * 1_000_000
    return v * 1_000_000_000
