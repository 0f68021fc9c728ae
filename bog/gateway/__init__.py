"""The execution gateway: the only bog process that holds the API key and talks to the venue.

- ``signer``: the API key file and the SDK's signer (the only importer of ``lighter-sdk``).
- ``venue``: ``VenueSession``, bog's side of Lighter's order protocol (nonces, sendTx over
  WebSocket with HTTP fallback, account channels, fills exactly once, reconciliation, the
  dead-man switch).
"""
