"""The venue API key is nowhere but in its key file: a real throwaway key, real processes.

A fresh key from the official SDK (``lighter.create_api_key()``; the ``lighter`` extra is
installed by ``./scripts/setup --test``) in a 0600 key file; feed, engine, gateway (dry-run:
it loads the key, signs nothing it sends) and monitor run as real processes. Then the key, and
every 16-character fragment of it, is searched for in: the log file, every process's
stdout/stderr, the gateway's journald stream (its stderr with ``$JOURNAL_STREAM`` naming it:
the ``<N>``-prefixed lines systemd's journal would store; no journald is started, it would be
shared with other tests on this machine), the trading journal and everything else in the
state directory, the monitor's ``/metrics``, ``/health`` and ``/alerts``, ``bogctl status``
(text and JSON), every process's command line, title and environment, and the gateway's
shared-memory block. The gateway is shown to be in each of those outputs (so the search is
not vacuous).
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from support import FAST, free_port, merge, wait_for

from bog.shm.codes import INTENT

import lighter  # noqa: E402  the lighter extra (./scripts/setup --test): missing = an error, never a skip

pytestmark = pytest.mark.slow


def fragments(key: str, n: int = 16) -> set[str]:
    k = key[2:] if key.startswith("0x") else key
    return {k[i:i + n] for i in range(len(k) - n + 1)} | {key}


def test_the_key_is_nowhere_with_the_gateway_running(pipeline_factory, tmp_path):
    key, _pub, err = lighter.create_api_key()
    assert err is None and len(key) >= 64
    key_file = tmp_path / "lighter-api-key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"

    port = free_port()
    pl = pipeline_factory(merge(FAST, {
        "execution": {"mode": "dry-run", "maker_latency_ms": 20.0},
        "feed": {"rate_per_s": 500.0}, "monitor": {"port": port},
        "gateway": {"api_key_file": str(key_file)}}))
    pl.start_all()
    # the gateway's stderr is its journald stream: lines as journald would receive them
    out = pl.tmp / "gateway.out"
    out.touch()
    st = os.stat(out)
    pl.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        gw = pl.start("gateway")
    finally:
        del pl.env["JOURNAL_STREAM"]
    pl.start("monitor", wait=False)
    url = f"http://127.0.0.1:{port}"

    def gateway_seen():
        try:
            return "bog_gateway_intents_sent_total" in httpx.get(url + "/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
    wait_for(lambda: int(pl.metrics("gateway")["intents_total"][INTENT.PLACE]) >= 2, 90,
             what="placements through the dry-run gateway")
    wait_for(gateway_seen, 60, what="the monitor exporting the gateway")

    texts: dict[str, str] = {}
    for path in ("/metrics", "/health", "/alerts"):
        texts[path] = httpx.get(url + path, timeout=5).text
    env = dict(pl.env, NO_COLOR="1")
    for fmt in ([], ["--json"]):
        r = subprocess.run([sys.executable, "-m", "bog.ctl", "status", "--instance", pl.instance,
                            "--config", str(pl.config_path), *fmt], capture_output=True,
                           text=True, env=env, timeout=60)
        texts[f"bogctl status {fmt}"] = r.stdout + r.stderr
    for name, p in pl.procs.items():
        for what in ("cmdline", "comm", "environ"):
            with open(f"/proc/{p.pid}/{what}", "rb") as f:
                texts[f"{name} /proc/{what}"] = f.read().decode(errors="replace")
    texts["gateway block"] = pl.metrics("gateway").tobytes().decode("latin-1")
    gw.stop()  # its shutdown lines too
    for p in sorted(pl.tmp.rglob("*")):
        if p.is_file() and p != key_file and p.suffix != ".toml":
            texts[str(p.relative_to(pl.tmp))] = p.read_text(errors="replace")

    # the gateway is really in what was searched
    assert 'bog_up{process="gateway"} 1.0' in texts["/metrics"]
    assert '"gateway"' in texts["/health"] and '"venue_connected": true' in \
        texts["bogctl status ['--json']"]
    assert "gateway:  dry-run on testnet" in texts["bogctl status []"]
    assert texts["gateway /proc/comm"].startswith("bog-gateway")
    journal_lines = [ln for ln in texts["gateway.out"].splitlines() if ln.startswith("<")]
    assert any("dry-run: would send create order" in ln for ln in journal_lines), \
        texts["gateway.out"][-2000:]
    assert "journal.jsonl" in " ".join(texts) and "logs/bog.log" in " ".join(texts)

    frags = fragments(key)
    leaks = [(where, frag) for where, text in texts.items() for frag in frags if frag in text]
    assert leaks == [], f"the key (or a 16-char fragment) is in: {sorted({w for w, _ in leaks})}"
