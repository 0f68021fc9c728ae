"""bog-gateway: the only process that holds the venue API key, signs and talks to the venue
(execution.mode dry-run / live; docs/live-trading.md).

- ``process``: the gateway process (intent ring in, venue events out, its own hard limits).
- ``limits``: the gateway's hard limits and request token bucket.
- ``signer``: the API key file and the SDK's signer (the only importer of ``lighter-sdk``).
- ``venue``: ``VenueSession``, bog's side of Lighter's order protocol (nonces, sendTx over
  WebSocket with HTTP fallback, account channels, fills exactly once, reconciliation, the
  dead-man switch).
"""
