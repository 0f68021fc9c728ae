"""Shared-memory layouts, segments, rings and metrics blocks: one definition for all sides."""

from __future__ import annotations

from dataclasses import dataclass

from bog.shm.segment import segment_name, validate_instance


@dataclass(frozen=True)
class SegmentNames:
    """The POSIX names of one instance's segments (``--instance`` namespaces them all)."""

    instance: str

    def __post_init__(self):
        validate_instance(self.instance)

    @property
    def ticks(self) -> str:  # owner: feed
        return segment_name(self.instance, "ticks")

    @property
    def feed_metrics(self) -> str:  # owner: feed
        return segment_name(self.instance, "feed")

    @property
    def fills(self) -> str:  # owner: engine
        return segment_name(self.instance, "fills")

    @property
    def engine_metrics(self) -> str:  # owner: engine
        return segment_name(self.instance, "engine")

    @property
    def control(self) -> str:  # owner: engine; written by bogctl
        return segment_name(self.instance, "control")

    @property
    def monitor(self) -> str:  # owner: monitor; its listen address, read by bogctl
        return segment_name(self.instance, "monitor")

    @property
    def intents(self) -> str:  # owner: engine (producer); consumed by the gateway
        return segment_name(self.instance, "intents")

    @property
    def venue_events(self) -> str:  # owner: gateway (producer); consumed by the engine
        return segment_name(self.instance, "vevents")

    @property
    def gateway_metrics(self) -> str:  # owner: gateway
        return segment_name(self.instance, "gateway")

    def metrics(self, process: str) -> str:
        return {"feed": self.feed_metrics, "engine": self.engine_metrics,
                "gateway": self.gateway_metrics}[process]
