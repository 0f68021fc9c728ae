"""bog: a market-making pipeline over shared-memory rings (feed, engine, monitor)."""

__version__ = "0.1.0"
