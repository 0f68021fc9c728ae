"""Trading venues: what bog knows about each venue's protocol, and fakes of them for tests.

- ``lighter``: every Lighter-specific constant (URLs, channels, frame types and fields,
  keepalive, limits), each marked with how sure it is.
- ``fake``: ``bog fake-venue``, a local process that speaks the Lighter protocol.
"""
