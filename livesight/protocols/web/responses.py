"""The port's plain HTTP answers: the headers every one of them carries (no caching, no MIME sniffing) and the JSON
encoding clients already parse (`json.dumps` defaults: readable, non-ASCII escaped)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", **(extra or {})}
    r = Response(body, status_code=status, headers=headers)
    r.headers["content-type"] = content_type  # as given (Starlette's media_type would append a charset to text/*)
    return r


def text_response(status: int, text: str, extra: dict[str, str] | None = None) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8", extra)


def json_response(status: int, obj: Any, extra: dict[str, str] | None = None) -> Response:
    return response(status, json.dumps(obj, default=str).encode(), "application/json", extra)
