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


# ---- orders and accounts ---------------------------------------------------------------------
# Learned from lighter-sdk 1.1.8 (signer_client.py, api/*, models/*) and by signing real
# transactions with its native signer here: [read]. The WebSocket docs (account channels,
# jsonapi/sendtx): [docs]. Error codes other than 200 come from other connectors: [others].
# bog/venue/fake.py serves exactly these names; anything the real venue does that is not known
# is marked [fake] where the fake had to choose (docs/lighter.md lists those choices).

# tx types: the txType the signer returns with each tx_info [read: signed here]
TX_CREATE_ORDER = 14
TX_CANCEL_ORDER = 15
TX_CANCEL_ALL = 16
TX_MODIFY_ORDER = 17

# order types (tx_info "Type") [read: SignerClient.ORDER_TYPE_*]
ORDER_TYPE_LIMIT = 0
ORDER_TYPE_MARKET = 1
ORDER_TYPE_STOP_LOSS = 2
ORDER_TYPE_STOP_LOSS_LIMIT = 3
ORDER_TYPE_TAKE_PROFIT = 4
ORDER_TYPE_TAKE_PROFIT_LIMIT = 5
ORDER_TYPE_TWAP = 6

# time in force (tx_info "TimeInForce" of a create order) [read]
TIF_IOC = 0  # immediate or cancel
TIF_GTT = 1  # good till time (OrderExpiry)
TIF_POST_ONLY = 2  # rests or is cancelled ("canceled-post-only"), never takes [read name]

# cancel-all time in force (tx_info "TimeInForce" of tx 16) [read: CANCEL_ALL_TIF_*]
CANCEL_ALL_NOW = 0
CANCEL_ALL_SCHEDULED = 1  # cancel everything at tx_info "Time" (ms): the dead-man switch
CANCEL_ALL_ABORT = 2  # abort the scheduled one

NIL_TRIGGER_PRICE = 0  # [read]
ORDER_EXPIRY_28_DAYS = -1  # order_expiry=-1: the signer fills in now + 28 days [read]
ORDER_EXPIRY_IOC = 0  # [read] DEFAULT_IOC_EXPIRY
NIL_MARKET_INDEX = 255  # cancel-all over every market [read]
API_KEY_ROTATE = 255  # api_key_index=255 lets the SDK pick a key: bog always names its key [read]
NONCE_FETCH = -1  # nonce=-1 makes the signer fetch it over HTTP, synchronously: never use [read]
CLIENT_ORDER_INDEX_MAX = (1 << 48) - 1  # [others] client order indices are below 2^48 ...
ORDER_INDEX_BASE = 1 << 48  # ... venue order indices above it [others], so a cancel's "Index"
#                             can name either (the fake accepts both) [others]
PRICE_MAX = (1 << 32) - 1  # the signer's Price is a C uint32 [read]

# tx_info JSON keys (the signer's output, a JSON string) [read: signed here]
TXI_ACCOUNT = "AccountIndex"
TXI_API_KEY = "ApiKeyIndex"
TXI_MARKET = "MarketIndex"
TXI_CLIENT_ORDER = "ClientOrderIndex"  # create
TXI_BASE_AMOUNT = "BaseAmount"  # integer: size * 10**size_decimals
TXI_PRICE = "Price"  # integer: price * 10**price_decimals
TXI_IS_ASK = "IsAsk"  # 0/1
TXI_ORDER_TYPE = "Type"
TXI_TIF = "TimeInForce"  # create (TIF_*) and cancel-all (CANCEL_ALL_*)
TXI_REDUCE_ONLY = "ReduceOnly"
TXI_TRIGGER_PRICE = "TriggerPrice"
TXI_ORDER_EXPIRY = "OrderExpiry"  # ms; 0 for IOC
TXI_EXPIRED_AT = "ExpiredAt"  # ms: the transaction itself is void after this
TXI_NONCE = "Nonce"
TXI_SIG = "Sig"  # base64 signature (the fake does not verify it)
TXI_ORDER_INDEX = "Index"  # cancel / modify: the order (venue or client order index)
TXI_TIME = "Time"  # cancel-all: ms of the scheduled cancel (0 for now / abort)
TXI_ATTRIBUTES = "L2TxAttributes"  # null from 1.1.8's signer

# REST (under REST_PREFIX) [read: api/transaction_api.py, account_api.py, order_api.py]
REST_NEXT_NONCE = "/nextNonce"  # GET ?account_index=&api_key_index= -> {code, nonce}
REST_SEND_TX = "/sendTx"  # POST form: tx_type, tx_info (JSON string), price_protection
REST_SEND_TX_BATCH = "/sendTxBatch"  # POST form: tx_types, tx_infos (each a JSON list string)
REST_ACCOUNT = "/account"  # GET ?by=index&value=N -> {code, total, accounts: [account]}
REST_ACTIVE_ORDERS = "/accountActiveOrders"  # GET ?account_index=&market_id=, header
#                                              "authorization": token -> {code, orders}
Q_ACCOUNT_INDEX = "account_index"
Q_API_KEY_INDEX = "api_key_index"
Q_MARKET_ID = "market_id"
Q_BY = "by"  # "index" [read]
Q_VALUE = "value"
Q_AUTH = "auth"  # [docs/others] the token as a query parameter; 1.1.8 sends the header:
H_AUTHORIZATION = "authorization"  # [read]
FORM_TX_TYPE = "tx_type"
FORM_TX_INFO = "tx_info"
FORM_PRICE_PROTECTION = "price_protection"
FORM_TX_TYPES = "tx_types"
FORM_TX_INFOS = "tx_infos"

# replies [read: models resp_send_tx, resp_send_tx_batch, next_nonce, result_code]
CODE_OK = 200  # "code" of every successful reply [read]
F_TX_HASH = "tx_hash"  # sendTx: a string; sendTxBatch: a list, one per tx [read]
F_PREDICTED_MS = "predicted_execution_time_ms"
F_VOLUME_QUOTA = "volume_quota_remaining"
F_NEXT_NONCE = "nonce"
# errors: HTTP 400 with {code, message} [read: ResultCode on 400]; the codes [others]
ERR_INVALID_NONCE = 21104  # [others: NautilusTrader] refetch the nonce and resend
ERR_INVALID_TX_INFO = 21501  # [others: ccxt, as all below]
ERR_UNSUPPORTED_TX_TYPE = 21505
ERR_TOO_MANY_PENDING = 21506
ERR_INVALID_MARKET = 21602
ERR_INVALID_ORDER_INDEX = 21700
ERR_INVALID_BASE_AMOUNT = 21701
ERR_INVALID_PRICE = 21702
ERR_INVALID_ORDER_TYPE = 21704
ERR_INVALID_TIF = 21705
ERR_NOT_ORDER_OWNER = 21707
ERR_ORDER_INACTIVE = 21709
ERR_INVALID_EXPIRY = 21711
ERR_INVALID_CANCEL_ALL_TIF = 21713
ERR_INVALID_CANCEL_ALL_TIME = 21714
ERR_ORDER_NOT_ACTIVE = 21715  # cancel of an order that is not resting
ERR_MAX_ACTIVE_ORDERS = 21717
ERR_INVALID_CLIENT_ORDER_INDEX = 21727
ERR_CLIENT_ORDER_INDEX_EXISTS = 21728
ERR_TOO_MANY_REQUESTS = 23000  # [others] rate limited; with HTTP 429 [fake]
ERR_TOO_MANY_SUBSCRIPTIONS = 23001
ERR_ALREADY_SUBSCRIBED = 30003  # [others]
ERR_AUTH = 20013  # [fake] missing/invalid auth token on an account channel: code unknown
HTTP_RATE_LIMITED = 429  # [fake] status of a rate-limited REST request: unknown

# WebSocket transactions [docs: {"type":"jsonapi/sendtx","data":{"tx_type":..,"tx_info":..}}]
T_SEND_TX = "jsonapi/sendtx"
T_SEND_TX_BATCH = "jsonapi/sendtxbatch"  # data: tx_types, tx_infos (JSON list strings) [docs]
F_DATA = "data"
F_ID = "id"  # client's request id, echoed in the reply [docs/others]
# Reply [fake: shape unverified]: {"type": "jsonapi/sendtx", "id": .., "code": 200,
# "tx_hash": .., ...the sendTx reply fields}; a refusal: {"type": "error", "id": .., "code":
# 21104, "message": ..} (NautilusTrader attributes bare error frames to in-flight sendtx).
BATCH_MAX = 50  # [docs] (elsewhere 15: documented inconsistently)

# account channels: subscribe with "auth" (SignerClient.create_auth_token_with_expiry) [docs]
F_AUTH = "auth"
CH_ACCOUNT_ALL_ORDERS = "account_all_orders"  # account_all_orders/<acct> [docs]
CH_ACCOUNT_ALL_TRADES = "account_all_trades"  # account_all_trades/<acct> [docs]
CH_ACCOUNT_ALL_POSITIONS = "account_all_positions"  # account_all_positions/<acct> [docs]
CH_ACCOUNT_ORDERS = "account_orders"  # account_orders/<market>/<acct> [docs]
CH_ACCOUNT_ALL = "account_all"  # [read: ws_client.py]
T_SUBSCRIBED_PREFIX = "subscribed/"  # + channel name: the first frame (a snapshot) [docs]
T_UPDATE_PREFIX = "update/"  # + channel name: later frames [docs]
F_ORDERS = "orders"  # {"<market_id>": [order]} [docs]
F_POSITIONS = "positions"  # {"<market_id>": position} [docs]
F_ACCOUNT = "account"
AUTH_SEP = ":"  # token "expiry:account:api_key:signature_hex" [read: signed here]
AUTH_MAX_S = 8 * 3600  # [docs] a token lives at most 8 h
AUTH_DEFAULT_S = 10 * 60  # [read] the SDK's default

# order fields (account channel frames, GET accountActiveOrders) [read: models/order.py]
O_ORDER_INDEX = "order_index"
O_CLIENT_ORDER_INDEX = "client_order_index"
O_ORDER_ID = "order_id"  # order_index as a string
O_CLIENT_ORDER_ID = "client_order_id"
O_MARKET_INDEX = "market_index"
O_OWNER = "owner_account_index"
O_INITIAL_BASE = "initial_base_amount"  # decimal string, human units
O_PRICE = "price"  # decimal string
O_NONCE = "nonce"
O_REMAINING_BASE = "remaining_base_amount"
O_IS_ASK = "is_ask"  # bool
O_BASE_SIZE = "base_size"  # integer (remaining, venue units) [read; meaning: others]
O_BASE_PRICE = "base_price"  # integer price, venue units
O_FILLED_BASE = "filled_base_amount"
O_FILLED_QUOTE = "filled_quote_amount"
O_SIDE = "side"
O_TYPE = "type"  # ORDER_TYPE_NAMES
O_TIF = "time_in_force"  # TIF_NAMES
O_REDUCE_ONLY = "reduce_only"
O_TRIGGER_PRICE = "trigger_price"
O_ORDER_EXPIRY = "order_expiry"
O_STATUS = "status"  # ST_*
O_TIMESTAMP = "timestamp"
O_CREATED_AT = "created_at"
O_UPDATED_AT = "updated_at"
O_TRANSACTION_TIME = "transaction_time"
ORDER_TYPE_NAMES = {ORDER_TYPE_LIMIT: "limit", ORDER_TYPE_MARKET: "market"}  # [read enum]
TIF_NAMES = {TIF_IOC: "immediate-or-cancel", TIF_GTT: "good-till-time",
             TIF_POST_ONLY: "post-only"}  # [read enum]
# order statuses [read: the Order model's enum]
ST_IN_PROGRESS = "in-progress"
ST_PENDING = "pending"
ST_OPEN = "open"
ST_FILLED = "filled"
ST_CANCELED = "canceled"  # by a cancel or a cancel-all
ST_CANCELED_POST_ONLY = "canceled-post-only"
ST_CANCELED_REDUCE_ONLY = "canceled-reduce-only"
ST_CANCELED_EXPIRED = "canceled-expired"
ST_CANCELED_SELF_TRADE = "canceled-self-trade"
ST_CANCELED_NOT_ENOUGH_LIQUIDITY = "canceled-not-enough-liquidity"
ST_CANCELED_MARGIN = "canceled-margin-not-allowed"
ST_CANCELED_TOO_MUCH_SLIPPAGE = "canceled-too-much-slippage"
ST_CANCELED_PREFIX = "canceled"  # every final not-filled status starts with it
ST_ACTIVE = (ST_IN_PROGRESS, ST_PENDING, ST_OPEN)
# The venue refuses an order it accepted as a transaction (a post-only that would take, ...)
# by giving it a final status, not a code. bog reports it as a rejection with a code of its
# own: negative and <= STATUS_CODE_BASE (the venue's codes are positive) [bog]. Not refusals:
# ST_CANCELED (a cancel or cancel-all) and ST_CANCELED_EXPIRED.
STATUS_CODE_BASE = -200
STATUS_REJECT_CODES = {ST_CANCELED_POST_ONLY: -201, ST_CANCELED_REDUCE_ONLY: -202,
                       ST_CANCELED_SELF_TRADE: -203, ST_CANCELED_NOT_ENOUGH_LIQUIDITY: -204,
                       ST_CANCELED_MARGIN: -205, ST_CANCELED_TOO_MUCH_SLIPPAGE: -206}
STATUS_REJECT_OTHER = -299  # any other final "canceled-..." status

# trade fields (account_all_trades, trade/<id>) [read: models/trade.py; docs]
TR_TRADE_ID = "trade_id"  # unique per trade: the fill's identity
TR_TX_HASH = "tx_hash"
TR_TYPE = "type"  # "trade" (others: "liquidation", "deleverage") [docs]
TR_MARKET_ID = "market_id"
TR_SIZE = "size"  # decimal string
TR_PRICE = "price"  # decimal string
TR_USD_AMOUNT = "usd_amount"
TR_ASK_ID = "ask_id"  # order index of the ask
TR_BID_ID = "bid_id"
TR_ASK_ACCOUNT = "ask_account_id"
TR_BID_ACCOUNT = "bid_account_id"
TR_ASK_CLIENT_ID = "ask_client_id"  # client order index of the ask
TR_BID_CLIENT_ID = "bid_client_id"
TR_IS_MAKER_ASK = "is_maker_ask"  # true: the ask rested (maker), the bid took
TR_TAKER_FEE = "taker_fee"  # integer, omitted when zero [docs] (unit [others]: fee rate
TR_MAKER_FEE = "maker_fee"  # in 1e-6; the fake charges 0 like a standard account)
TR_BLOCK_HEIGHT = "block_height"
TR_TIMESTAMP = "timestamp"
TR_TRANSACTION_TIME = "transaction_time"

# account / position (GET account, account_all_positions) [read: models account_position.py,
# detailed_account.py, detailed_accounts.py]
A_ACCOUNTS = "accounts"
A_TOTAL = "total"
A_INDEX = "index"
A_ACCOUNT_INDEX = "account_index"
A_CANCEL_ALL_TIME = "cancel_all_time"  # ms of the scheduled cancel-all, 0 if none [read name]
A_TOTAL_ORDER_COUNT = "total_order_count"
A_COLLATERAL = "collateral"
A_POSITIONS = "positions"  # a list in GET account, {"<market>": position} on the socket
P_MARKET_ID = "market_id"
P_SYMBOL = "symbol"
P_SIGN = "sign"  # 1 long, -1 short (0 flat [fake])
P_POSITION = "position"  # decimal string, absolute size in human units
P_AVG_ENTRY = "avg_entry_price"
P_OPEN_ORDER_COUNT = "open_order_count"
P_PENDING_ORDER_COUNT = "pending_order_count"
P_POSITION_VALUE = "position_value"
P_UNREALIZED_PNL = "unrealized_pnl"
P_REALIZED_PNL = "realized_pnl"

# limits [others, unverified]
SENDTX_WEIGHT = 6  # a sendTx weighs 6 of a standard account's ~60 weighted REST requests/min
STANDARD_WEIGHT_PER_MIN = 60


def account_channel(channel: str, account: int) -> str:
    """``account_all_orders/7`` (subscribe form)."""
    return f"{channel}{SUB_SEP}{account}"


def account_reply_channel(channel: str, account: int) -> str:
    """``account_all_orders:7`` (the server's form) [docs]."""
    return f"{channel}{REPLY_SEP}{account}"


def parse_auth_token(token) -> tuple[int, int, int] | None:
    """(expiry s, account, api key) of a token of the SDK's form ``expiry:account:key:sig``
    (sig hex), or None if it is not of that form. Says nothing about the signature."""
    if not isinstance(token, str):
        return None
    parts = token.split(AUTH_SEP)
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]) or not parts[3]:
        return None
    try:
        bytes.fromhex(parts[3])
    except ValueError:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


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
