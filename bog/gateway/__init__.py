"""bog-gateway: the only process that holds the venue API key, signs and talks to the venue
(execution.mode dry-run / live; docs/live-trading.md)."""
