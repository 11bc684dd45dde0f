"""Prometheus counters of the OpenAI endpoint and the camera pictures, read at scrape time (added to the server's
own registry by ws_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from livesight.contract.api import ImageSource
from livesight.web.openai_routes import OpenAICounters

_OPENAI_HELP = {
    "requests": "HTTP requests to the OpenAI-compatible API (/v1/)",
    "completions": "chat completions started",
    "refused": "OpenAI API requests answered with an error status",
    "disconnected": "OpenAI API clients gone before their answer ended (the answer was cancelled)",
}


class PartsCollector(Collector):
    def __init__(self, openai: OpenAICounters, images: ImageSource | None) -> None:
        self._openai = openai
        self._images = images

    def collect(self) -> Iterator[Metric]:
        for key, value in asdict(self._openai).items():
            yield CounterMetricFamily(f"livesight_openai_{key}", _OPENAI_HELP.get(key, key), value=float(value))
        if self._images is not None:
            for key, value in self._images.counters().items():
                yield CounterMetricFamily(f"livesight_pictures_{key}", f"camera pictures: {key}", value=float(value))
