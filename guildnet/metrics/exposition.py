"""Rendering ``/metrics``: the registry plus a Host App's state collectors, by Accept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from guildnet.metrics.core import REGISTRY


class Exposition:
    """What one Host App exposes: the shared families and its own live state."""

    def __init__(self, collectors: Iterable[Collector] = ()) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        for collector in self.collectors:
            yield from collector.collect()

    def render(self, accept: bytes | None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when the scraper asks for it
        (``Accept: application/openmetrics-text``), else the Prometheus text format."""
        encoder, content_type = choose_encoder((accept or b"").decode("latin-1"))
        return encoder(self), content_type  # type: ignore[arg-type]
