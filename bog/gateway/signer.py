"""The API key and the signer: the only module that imports the Lighter SDK (``lighter-sdk``).

- ``load_api_key(path)``: reads the key from a file that must be a regular file owned by this
  user with mode 0600 (or 0400, as systemd credentials are); anything else is a one-line
  ``CredentialError`` naming the file and the problem, never the content.
- ``Signer``: wraps the SDK's ``SignerClient`` (built inside a running asyncio loop, as the SDK
  requires). Its ``create_order``/``cancel_order``/``cancel_all`` return ``(tx_type, tx_info)``
  exactly as the official signer produces them; they are synchronous ctypes calls (~3 ms
  each on this VM: the caller measures them) and always take the nonce explicitly: ``-1``
  would make the native library fetch it over HTTP, synchronously, and is refused.

The key never leaves this module in readable form: it is not an attribute of ``Signer``,
``repr``/``str`` show the account and key index only, and every SDK error is rewritten into a
``SignerError`` whose text is checked not to contain the key. The key's format (80 hex digits)
is checked before the SDK sees it: the SDK's own message for a bad key quotes the offending
character.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import string
import threading
import time

from bog.config import ConfigError
from bog.venue import lighter as L

KEY_HEX_DIGITS = 80  # a Lighter API private key: 40 bytes, hex, optionally "0x"-prefixed [read]
KEY_FILE_MAX_BYTES = 4096
KEY_FILE_MODES = (0o600, 0o400)  # owner-only; 0400 is what systemd credentials look like

class CredentialError(ConfigError):
    """The API key file cannot be used; one line naming the file and why, never the key."""


class SignerError(RuntimeError):
    """The signer refused a request; one line, never the key."""


def _check_key_text(text: str, what: str) -> str:
    key = text.strip()
    if not key:
        raise CredentialError(f"{what}: is empty")
    body = key[2:] if key[:2] in ("0x", "0X") else key
    if len(body) != KEY_HEX_DIGITS or any(c not in string.hexdigits for c in body):
        raise CredentialError(f"{what}: not a Lighter API private key (expected "
                              f"{KEY_HEX_DIGITS} hex digits, optionally 0x-prefixed, on one "
                              "line)")
    return body


def load_api_key(path: str) -> str:
    """The private API key from ``path``: a regular file, owned by the effective user, mode
    0600 (or 0400). Raises CredentialError (one line, never the content)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CredentialError(f"API key file {path}: does not exist") from None
    except PermissionError:
        raise CredentialError(f"API key file {path}: permission denied") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CredentialError(f"API key file {path}: is a symbolic link; name the file "
                                  "itself") from None
        raise CredentialError(f"API key file {path}: cannot open ({e.strerror})") from None
    try:
        st = os.fstat(fd)  # of what was opened: no race between the check and the read
        if not stat.S_ISREG(st.st_mode):
            raise CredentialError(f"API key file {path}: not a regular file")
        if st.st_uid != os.geteuid():
            raise CredentialError(f"API key file {path}: owned by uid {st.st_uid}, not by this "
                                  f"user (uid {os.geteuid()})")
        mode = stat.S_IMODE(st.st_mode)
        if mode not in KEY_FILE_MODES:
            raise CredentialError(f"API key file {path}: mode {mode:04o}, must be 0600 "
                                  f"(chmod 600 {path})")
        if st.st_size > KEY_FILE_MAX_BYTES:
            raise CredentialError(f"API key file {path}: {st.st_size} bytes, too large for a "
                                  "key")
        raw = os.read(fd, KEY_FILE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CredentialError(f"API key file {path}: not ASCII text") from None
    return _check_key_text(text, f"API key file {path}")


class Signer:
    """Signs Lighter transactions with the official SDK's native signer.

    Construct inside a running asyncio loop. Every ``sign`` method is synchronous and blocks
    for the signature (~3 ms of native code, the GIL released): ``VenueSession`` calls them in
    its signing thread. One native call at a time (a lock)."""

    __slots__ = ("_client", "url", "account_index", "api_key_index", "_redact", "_lock")

    def __init__(self, *, url: str, private_key: str, account_index: int, api_key_index: int):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise SignerError("Signer must be built inside a running asyncio loop") from None
        body = _check_key_text(private_key, "the API key given to Signer")
        try:
            from lighter.signer_client import SignerClient
        except ImportError:
            raise SignerError("the Lighter SDK is not installed: pip install 'bog[lighter]'"
                              ) from None
        self.url = url
        # one native call at a time: signatures run in the venue session's signing thread,
        # auth tokens on the loop (the native library's thread safety is not documented)
        self._lock = threading.Lock()
        self.account_index = int(account_index)
        self.api_key_index = int(api_key_index)
        # fragments of the key that must never appear in an error we pass on
        self._redact = (body.lower(), body[:16].lower(), body[-16:].lower())
        try:
            self._client = SignerClient(url=url, account_index=self.account_index,
                                        api_private_keys={self.api_key_index: body})
        except Exception as e:
            raise SignerError(f"the signer refused the API key for account {account_index} "
                              f"key {api_key_index} ({self._clean(e)})") from None

    def __repr__(self) -> str:
        return (f"Signer(account_index={self.account_index}, "
                f"api_key_index={self.api_key_index}, url={self.url!r})")

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a Signer cannot be pickled (it holds the API key)")

    def _clean(self, err) -> str:
        """An SDK error as one line, with anything that could be key material removed."""
        text = " ".join(str(err).split())[:200]
        low = text.lower()
        if any(f in low for f in self._redact):
            return "error text withheld: it quoted key material"
        return text

    def _result(self, what: str, res) -> tuple[int, str]:
        tx_type, tx_info, _tx_hash, err = res
        if err is not None:
            raise SignerError(f"signer refused {what}: {self._clean(err)}")
        return int(tx_type), tx_info

    @staticmethod
    def _nonce(nonce: int) -> int:
        if type(nonce) is not int or nonce < 0:  # never L.NONCE_FETCH
            raise SignerError(f"nonce must be an explicit non-negative int, got {nonce!r} (-1 "
                              "would make the SDK fetch it over HTTP, synchronously)")
        return nonce

    def create_order(self, *, market_index: int, client_order_index: int, base_amount: int,
                     price: int, is_ask: bool, post_only: bool, nonce: int) -> tuple[int, str]:
        """A signed limit order (tx type 14): post-only, or good-till-time when not."""
        nonce = self._nonce(nonce)
        with self._lock:
            res = self._client.sign_create_order(
                market_index, client_order_index, base_amount, price, bool(is_ask),
                L.ORDER_TYPE_LIMIT, L.TIF_POST_ONLY if post_only else L.TIF_GTT,
                False, L.NIL_TRIGGER_PRICE, L.ORDER_EXPIRY_28_DAYS,
                nonce=nonce, api_key_index=self.api_key_index)
        return self._result("create_order", res)

    def cancel_order(self, *, market_index: int, order_index: int, nonce: int) -> tuple[int, str]:
        """A signed cancel (tx type 15) of the venue's ``order_index``."""
        nonce = self._nonce(nonce)
        with self._lock:
            res = self._client.sign_cancel_order(market_index, order_index, nonce=nonce,
                                                 api_key_index=self.api_key_index)
        return self._result("cancel_order", res)

    def cancel_all(self, *, time_in_force: int, time_ms: int, nonce: int) -> tuple[int, str]:
        """A signed cancel-all (tx type 16): TIF 0 now, 1 scheduled at ``time_ms`` (the
        dead-man switch), 2 aborts the scheduled one."""
        nonce = self._nonce(nonce)
        with self._lock:
            res = self._client.sign_cancel_all_orders(time_in_force, time_ms, nonce=nonce,
                                                      api_key_index=self.api_key_index)
        return self._result("cancel_all", res)

    def auth_token(self, expiry_s: int) -> str:
        """An auth token for the account channels, valid ``expiry_s`` from now (<= 8 h)."""
        expiry_s = int(expiry_s)
        if not 0 < expiry_s <= L.AUTH_MAX_S:
            raise SignerError(f"auth token expiry {expiry_s} s outside 1..{L.AUTH_MAX_S}")
        with self._lock:
            token, err = self._client.create_auth_token_with_expiry(
                expiry_s, timestamp=int(time.time()), api_key_index=self.api_key_index)
        if err is not None or not token:
            raise SignerError(f"signer refused auth_token: {self._clean(err)}")
        return token

    async def close(self) -> None:
        """Close the SDK's (unused) HTTP session; the signer is not usable afterwards."""
        client = getattr(self, "_client", None)
        if client is not None:
            await client.close()
