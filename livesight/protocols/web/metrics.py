"""Prometheus metrics for one server: its own CollectorRegistry (never the global one).

Pipeline numbers (frames, drops, tokens, per camera) are read from `service.stats()` at scrape time by a custom
collector; the server's own numbers (clients, dropped slow clients, messages, errors, query TTFT) are
instruments updated by the WebSocket sessions; the OpenAI endpoint's and the pictures' counters are read at scrape
time (`PartsCollector`); a remote model server's counters from its /healthz part (`_ModelServerCollector`), the
timeline capture's and caption backfill's from theirs (`_TimelineCollector`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from livesight.errors import contain, contained_counts
from livesight.protocols.contract.api import ImageSource, ServiceAPI
from livesight.types import CameraSnapshot

# stats() key → (metric name, kind, help), from the typed snapshot's field metadata (one definition).
# Keys not listed here but numeric (the memory's statistics) become gauges livesight_camera_<key>.
_CAMERA_METRICS: dict[str, tuple[str, str, str]] = {
    f.name: (f.metadata["metric"], f.metadata["kind"], f.metadata["help"])
    for f in dataclasses.fields(CameraSnapshot)
    if "metric" in f.metadata
}
_TOTAL_METRICS: dict[str, tuple[str, str, str]] = {
    "responses_refused": (
        "livesight_responses_refused",
        "counter",
        "questions refused because the response queue was full (policy refuse)",
    ),
    "clients_dropped": (
        "livesight_subscribers_dropped",
        "counter",
        "event subscribers closed because they fell behind (policy disconnect_client)",
    ),
}
log = logging.getLogger(__name__)
_NAME_OK = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _ServiceCollector(Collector):
    def __init__(self, service: ServiceAPI) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        snap = self._service.stats()
        families: dict[str, Metric] = {}

        def family(name: str, kind: str, doc: str, labels: list[str]) -> Metric:
            if name not in families:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                families[name] = cls(name, doc, labels=labels)
            return families[name]

        up = family("livesight_camera_live", "gauge", "1 when the camera delivers frames", ["camera"])
        for cam, values in sorted(snap.cameras.items()):
            up.add_metric([cam], 1.0 if values.get("state") == "live" else 0.0)  # type: ignore[attr-defined]
            for key, value in values.items():
                if not _is_number(value):
                    continue
                name, kind, doc = _CAMERA_METRICS.get(key, (f"livesight_camera_{key}", "gauge", f"per-camera {key}"))
                if not _NAME_OK.match(name):
                    continue
                family(name, kind, doc, ["camera"]).add_metric([cam], float(value))  # type: ignore[attr-defined]
        for key, (name, kind, doc) in _TOTAL_METRICS.items():
            value = snap.totals.get(key)
            if _is_number(value):
                family(name, kind, doc, []).add_metric([], float(value))  # type: ignore[attr-defined]
        for key, value in snap.totals.items():  # the generation scheduler's counters (daemon/generation/queue.py)
            if key.startswith("generation_") and _is_number(value) and _NAME_OK.match(key):
                family(f"livesight_{key}", "counter", f"generation scheduler: {key[11:]}", []).add_metric(
                    [], float(value)
                )
        yield from families.values()


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _ContainedCollector(Collector):
    """Errors the process survived, by kind (errors.py): every broad except counts here."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "livesight_contained_errors",
            "errors contained (survived, logged once per kind) by kind: e.g. worker.batch_encode, camera.close",
            labels=["kind"],
        )
        for kind, n in sorted(contained_counts().items()):
            family.add_metric([kind], float(n))
        yield family


def _health_part(service: ServiceAPI, name: str, kind: str, what: str) -> dict[str, Any] | None:
    """A /healthz part's current dict, for a collector that turns it into metrics; None when the service has no such
    part, or when it raised (contained and counted as `kind`: /healthz shows the broken part, /metrics still
    answers)."""
    part = getattr(service, "health_parts", {}).get(name)
    if part is None:
        return None
    try:
        return part()
    except Exception as e:
        contain(kind, e, log, what)
        return None


class _ModelServerCollector(Collector):
    """A remote model server's counters (model.backend openai), from the `model` part of /healthz: requests by
    outcome and by kind, images, bytes and estimated image tokens sent, requests in flight, and whether it is well.
    Nothing when the model runs in the process."""

    def __init__(self, service: ServiceAPI) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        h = _health_part(self._service, "model", "metrics.model_server", "the model server's counters")
        if h is None:
            return
        yield GaugeMetricFamily(
            "livesight_model_server_ok",
            "1 while the remote model server answers (health: ok)",
            value=h["state"] == "ok",
        )
        yield GaugeMetricFamily("livesight_model_server_in_flight", "requests in flight", value=h["in_flight"])
        for key, labels, doc in (
            ("requests", "outcome", "requests to the model server by outcome (ok, cancelled, or the error code)"),
            ("requests_by_kind", "kind", "requests sent to the model server by kind (question, proactive, watch, …)"),
        ):
            family = CounterMetricFamily(f"livesight_model_server_{key}", doc, labels=[labels])
            for label, n in sorted(h[key].items()):
                family.add_metric([label], float(n))
            yield family
        for key, doc in (
            ("images_sent", "images sent to the model server"),
            ("image_bytes_sent", "bytes of images sent to the model server"),
            ("image_tokens_sent", "estimated image tokens sent to the model server (re-sent images included)"),
            ("new_image_tokens_sent", "estimated image tokens of images the server had not been sent before"),
        ):
            yield CounterMetricFamily(f"livesight_model_server_{key}", doc, value=float(h[key]))


_TIMELINE_GAUGES = frozenset({"backlog", "in_flight", "waiting_retry", "writes_waiting", "embed_pending"})


class _TimelineCollector(Collector):
    """The timeline capture and caption backfill (the `timeline_capture` part of /healthz): entries closed, written,
    written without keyframes, lost; the caption backlog, captions backfilled, failed, in flight, waiting a retry;
    with semantic search, the embedder's and the query side's counters. Nothing without a timeline."""

    def __init__(self, service: ServiceAPI) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        h = _health_part(self._service, "timeline_capture", "metrics.timeline", "the timeline's counters")
        if h is None:
            return
        for section in ("capture", "backfill", "semantic"):
            prefix = f"livesight_timeline_{section}_"
            for key, value in h.get(section, {}).items():
                if not _is_number(value):
                    continue
                name = "livesight_timeline_backfilled" if key == "backfilled" else prefix + key
                doc = f"timeline {section}: {key.replace('_', ' ')}"
                if key in _TIMELINE_GAUGES:
                    yield GaugeMetricFamily(name, doc, value=float(value))
                else:
                    yield CounterMetricFamily(name, doc, value=float(value))


class ServerMetrics:
    """The registry and instruments of one WSServer."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service: ServiceAPI) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ServiceCollector(service))
        self.registry.register(_ContainedCollector())
        self.registry.register(_ModelServerCollector(service))
        self.registry.register(_TimelineCollector(service))
        r = self.registry
        self.clients = Gauge("livesight_ws_clients", "connected WebSocket clients", registry=r)
        self.clients_dropped = Counter(
            "livesight_ws_clients_dropped",
            "WebSocket clients disconnected because they did not read fast enough: send_queue or subscription full, "
            "or keepalive (no answer to pings for keepalive_s)",
            ["reason"],
            registry=r,
        )
        self.messages = Counter("livesight_ws_messages", "client messages received", ["type"], registry=r)
        self.errors = Counter("livesight_ws_errors", "error events sent to clients", ["code"], registry=r)
        self.queries = Counter("livesight_queries", "queries answered, by final status", ["status"], registry=r)
        self.ttft = Histogram(
            "livesight_query_ttft_seconds",
            "time to first token of answered queries",
            buckets=TTFT_BUCKETS_S,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


_OPENAI_HELP = {
    "requests": "HTTP requests to the OpenAI-compatible API (/v1/)",
    "completions": "chat completions started",
    "refused": "OpenAI API requests answered with an error status",
    "disconnected": "OpenAI API clients gone before their answer ended (the answer was cancelled)",
}


class PartsCollector(Collector):
    """Counters of the OpenAI endpoint (a dataclass of ints), the camera pictures and the access checks (refusals by
    reason, client slots in use), read at scrape time."""

    def __init__(self, openai: Any, images: ImageSource | None, *, gate: Any = None) -> None:
        self._openai = openai
        self._images = images
        self._gate = gate  # protocols/web/access.py Gatekeeper

    def collect(self) -> Iterator[Metric]:
        if self._gate is not None:
            refused = CounterMetricFamily(
                "livesight_http_refused",
                "requests and WebSocket handshakes refused by the access checks, by reason "
                "(malformed, host, method, origin, token, clients)",
                labels=["reason"],
            )
            for reason in ("malformed", "host", "method", "origin", "token", "clients"):
                refused.add_metric([reason], float(self._gate.refused[reason]))
            yield refused
            yield GaugeMetricFamily(
                "livesight_clients", "client slots in use (WebSocket clients + /v1/ requests)", value=self._gate.clients
            )
            yield GaugeMetricFamily("livesight_clients_max", "server.max_clients", value=self._gate.max_clients)
        for key, value in asdict(self._openai).items():
            yield CounterMetricFamily(f"livesight_openai_{key}", _OPENAI_HELP.get(key, key), value=float(value))
        if self._images is not None:
            for key, value in self._images.counters().items():
                yield CounterMetricFamily(f"livesight_pictures_{key}", f"camera pictures: {key}", value=float(value))
