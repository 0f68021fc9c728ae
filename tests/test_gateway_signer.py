"""The API key file and the signer: real files, real users, the real SDK signer.

The signer is the official SDK's native library with a throwaway key from
``lighter.create_api_key()``; nothing here touches a network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys

import pytest

import lighter  # noqa: E402  the lighter extra (./scripts/setup --test): missing = an error, never a skip

from bog.gateway.signer import CredentialError, Signer, SignerError, load_api_key  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def key():
    from lighter.signer_client import create_api_key
    priv, _pub, err = create_api_key()
    assert err is None
    return priv


def write_key(path, text, mode=0o600):
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return str(path)


def assert_clean(text: str, key: str):
    body = key[2:] if key.startswith("0x") else key
    for frag in (body, body[:16], body[-16:], body[20:36]):
        assert frag.lower() not in text.lower(), "key material leaked"


def test_load_api_key_good(tmp_path, key):
    assert load_api_key(write_key(tmp_path / "k", key)) == key[2:]
    assert load_api_key(write_key(tmp_path / "k2", key[2:], 0o400)) == key[2:]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700, 0o660, 0o200])
def test_load_api_key_wrong_mode_refused(tmp_path, key, mode):
    p = write_key(tmp_path / "k", key, mode)
    with pytest.raises(CredentialError) as ei:
        load_api_key(p)
    msg = str(ei.value)
    assert p in msg and f"mode {mode:04o}" in msg and "\n" not in msg
    assert_clean(msg, key)


def test_load_api_key_other_owner_symlink_dir_missing_garbage(tmp_path, key):
    p = write_key(tmp_path / "k", key)
    os.chown(p, 65534, 65534)  # nobody (tests run as root)
    with pytest.raises(CredentialError, match="owned by uid 65534"):
        load_api_key(p)
    good = write_key(tmp_path / "g", key)
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(CredentialError, match="symbolic link"):
        load_api_key(str(link))
    d = tmp_path / "d"
    d.mkdir(mode=0o600)
    with pytest.raises(CredentialError, match="not a regular file"):
        load_api_key(str(d))
    with pytest.raises(CredentialError, match="does not exist"):
        load_api_key(str(tmp_path / "none"))
    with pytest.raises(CredentialError, match="is empty"):
        load_api_key(write_key(tmp_path / "e", ""))
    secret = "0x" + "z" * 78 + key[-4:]  # wrong content: never echoed
    with pytest.raises(CredentialError, match="not a Lighter API private key") as ei:
        load_api_key(write_key(tmp_path / "bad", secret))
    assert "zzzz" not in str(ei.value)


def test_load_api_key_as_other_user_cannot_read(tmp_path, key):
    """Acting as nobody: a root-owned 0600 key is unreadable, and the error says so in one
    line (a real user switch, not a mock)."""
    p = write_key(tmp_path / "k", key)
    os.chmod(tmp_path, 0o755)
    code = ("import sys; from bog.gateway.signer import load_api_key, CredentialError\n"
            "try: load_api_key(sys.argv[1])\n"
            "except CredentialError as e: print(e); sys.exit(3)\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code, p], capture_output=True, text=True,
                       timeout=30, cwd="/", env={**os.environ,
                                                 "PYTHONPATH": os.getcwd()})
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip() == f"API key file {p}: permission denied"


def test_signer_signs_and_never_shows_the_key(key, caplog, capfd):
    caplog.set_level(logging.DEBUG)

    async def main():
        s = Signer(url="http://127.0.0.1:9", private_key=key, account_index=7, api_key_index=3)
        try:
            tx_type, info = s.create_order(market_index=1, client_order_index=42, base_amount=20,
                                           price=600000, is_ask=True, post_only=True, nonce=5)
            assert tx_type == 14
            d = json.loads(info)
            assert (d["AccountIndex"], d["ApiKeyIndex"], d["MarketIndex"],
                    d["ClientOrderIndex"], d["BaseAmount"], d["Price"], d["IsAsk"],
                    d["TimeInForce"], d["Nonce"]) == (7, 3, 1, 42, 20, 600000, 1, 2, 5)
            assert d["Sig"]
            tx_type, info = s.create_order(market_index=1, client_order_index=43, base_amount=20,
                                           price=600000, is_ask=False, post_only=False, nonce=6)
            assert json.loads(info)["TimeInForce"] == 1 and json.loads(info)["IsAsk"] == 0
            tx_type, info = s.cancel_order(market_index=1, order_index=99, nonce=7)
            assert tx_type == 15 and json.loads(info)["Index"] == 99
            tx_type, info = s.cancel_all(time_in_force=1, time_ms=1_800_000_000_000, nonce=8)
            d = json.loads(info)
            assert tx_type == 16 and d["TimeInForce"] == 1 and d["Time"] == 1_800_000_000_000
            tok = s.auth_token(600)
            assert tok.split(":")[1:3] == ["7", "3"]
            errors = []
            for bad in (dict(nonce=-1), dict(nonce=9, base_amount=-5)):
                kw = dict(market_index=1, client_order_index=1, base_amount=20, price=600000,
                          is_ask=True, post_only=True)
                kw.update(bad)
                with pytest.raises(SignerError) as ei:
                    s.create_order(**kw)
                errors.append(str(ei.value))
            assert "non-negative" in errors[0] and "BaseAmount" in errors[1]
            with pytest.raises(SignerError) as ei:
                s.auth_token(10 ** 6)
            errors.append(str(ei.value))
            shown = repr(s) + str(s) + " ".join(errors)
            assert "account_index=7" in repr(s)
            logging.getLogger("bog.test").info("signer %s %r", s, s)
            return shown
        finally:
            await s.close()

    shown = asyncio.run(main())
    out, err = capfd.readouterr()
    assert_clean(shown + out + err + caplog.text, key)


def test_signer_bad_key_and_outside_loop(key):
    with pytest.raises(SignerError, match="running asyncio loop"):
        Signer(url="http://127.0.0.1:9", private_key=key, account_index=1, api_key_index=0)

    async def main():
        with pytest.raises(CredentialError) as ei:
            Signer(url="http://127.0.0.1:9", private_key=key[:-2] + "zz", account_index=1,
                   api_key_index=0)
        assert_clean(str(ei.value), key)
        # valid hex but not a key the native library accepts (wrong curve point, say)
        try:
            s = Signer(url="http://127.0.0.1:9", private_key="f" * 80, account_index=1,
                       api_key_index=0)
            await s.close()
        except SignerError as e:
            assert "f" * 16 not in str(e)

    asyncio.run(main())
