"""The WebSocket event codec: pure functions, no I/O (see docs/protocol.md for every event with an example).

Client → server messages are decoded and validated into small frozen dataclasses (`decode_client`); anything
wrong raises `ProtocolError` with a stable `code`, a message naming the field, and the offending event's id when
the message carried one. Server → client events are built as JSON-able dicts from `livesight.types` /
`livesight.protocols.contract.api` values (`encode_*`) and serialised with `dumps` (compact, UTF-8, no NaN).

The MQTT bridge uses the same encoders for its payloads.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from livesight.protocols.contract.api import RelayedEvent, StatsSnapshot
from livesight.types import (
    CameraStatus,
    Citation,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseEvent,
    ResponseKind,
    ResponseStatus,
    SceneChange,
)

PROTOCOL_VERSION = 1
MAX_TEXT_CHARS = 2000  # question / watch text
MAX_ID_CHARS = 64
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CAMERA_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ErrorCode:
    """Stable `error.code` values (documented in docs/protocol.md)."""

    INVALID_JSON = "invalid_json"  # not UTF-8 JSON, or a binary frame
    INVALID_MESSAGE = "invalid_message"  # JSON, but not an object with a string `type`
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"  # wrong type, bad pattern, too long, unknown field
    UNKNOWN_CAMERA = "unknown_camera"
    CAMERA_UNAVAILABLE = "camera_unavailable"  # gateway: the camera's node is offline or unreachable (retry later)
    UNKNOWN_ID = "unknown_id"  # cancel/remove of an id this session does not have
    DUPLICATE_ID = "duplicate_id"  # a query id still running in this session
    BUSY = "busy"  # too many queries running (this session) or queued (server)
    RATE_LIMITED = "rate_limited"  # this session sent too many messages too fast
    LIMIT = "limit_exceeded"  # e.g. too many watches
    MODEL_UNAVAILABLE = "model_unavailable"  # the model server is unreachable, timed out or failed (5xx)
    MODEL_RATE_LIMITED = "model_rate_limited"  # the model server answered 429 (retry after its Retry-After)
    MODEL_REJECTED = "model_rejected"  # the model server refused the request (4xx: key, model id, strict fields)
    INTERNAL = "internal_error"


class ProtocolError(Exception):
    """A client message was refused. Sent back as an `error` event; the connection stays up."""

    def __init__(self, code: str, message: str, *, event_id: str | None = None, event_type: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.event_id = event_id
        self.event_type = event_type

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r}, event_id={self.event_id!r})"


# ---- client messages ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """Change this session's defaults. Fields left out are unchanged; `camera: null` resets to the first camera."""

    camera: str | None
    camera_set: bool  # True when `camera` was present in the message (null included)
    proactive: bool | None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str
    camera: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueryCancel:
    id: str  # the query's id (or its response_id)
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class WatchAdd:
    id: str
    text: str
    camera: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class WatchRemove:
    id: str
    event_id: str | None = None


ClientMessage = SessionUpdate | Query | QueryCancel | WatchAdd | WatchRemove

# type → (required fields, optional fields); every message may also carry `event_id`.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "session.update": ((), ("camera", "proactive")),
    "query": (("id", "text"), ("camera",)),
    "query.cancel": (("id",), ()),
    "watch.add": (("id", "text"), ("camera",)),
    "watch.remove": (("id",), ()),
}
CLIENT_TYPES = tuple(_FIELDS)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_client(raw: str | bytes) -> ClientMessage:
    """Parse and validate one client message. Raises ProtocolError (and nothing else) when it is not acceptable."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError(ErrorCode.INVALID_JSON, "binary frames are not supported: send JSON text")
    try:
        obj = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {_short(str(e))}") from None
    return decode_client_obj(obj)


def decode_client_obj(obj: Any) -> ClientMessage:
    """Validate an already parsed JSON value (used by decode_client and the MQTT bridge)."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"a message must be a JSON object, not {_json_kind(obj)}")
    event_id = _event_id(obj)
    typ = obj.get("type")
    if typ is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'type'", event_id=event_id)
    if not isinstance(typ, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'type' must be a string", event_id=event_id)
    if typ not in _FIELDS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {_short(typ)!r} (expected one of: {', '.join(CLIENT_TYPES)})",
            event_id=event_id,
        )
    required, optional = _FIELDS[typ]
    allowed = {"type", "event_id", *required, *optional}
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"{typ}: unknown field {_short(unknown[0])!r} (allowed: {', '.join(sorted(allowed - {'type'}))})",
            event_id=event_id,
            event_type=typ,
        )
    for name in required:
        if name not in obj:
            raise ProtocolError(
                ErrorCode.MISSING_FIELD, f"{typ}: missing field {name!r}", event_id=event_id, event_type=typ
            )

    ctx = _Ctx(typ, event_id)
    if typ == "session.update":
        proactive = obj.get("proactive")
        if proactive is not None and not isinstance(proactive, bool):
            raise ctx.invalid("'proactive' must be true or false")
        return SessionUpdate(
            camera=ctx.camera(obj), camera_set="camera" in obj, proactive=proactive, event_id=_plain_event_id(obj)
        )
    if typ == "query":
        return Query(id=ctx.ident(obj), text=ctx.text(obj), camera=ctx.camera(obj), event_id=_plain_event_id(obj))
    if typ == "query.cancel":
        return QueryCancel(id=ctx.ident(obj), event_id=_plain_event_id(obj))
    if typ == "watch.add":
        return WatchAdd(id=ctx.ident(obj), text=ctx.text(obj), camera=ctx.camera(obj), event_id=_plain_event_id(obj))
    return WatchRemove(id=ctx.ident(obj), event_id=_plain_event_id(obj))


@dataclass(frozen=True, slots=True)
class _Ctx:
    typ: str
    event_id: str | None

    def invalid(self, message: str) -> ProtocolError:
        return ProtocolError(
            ErrorCode.INVALID_FIELD, f"{self.typ}: {message}", event_id=self.event_id, event_type=self.typ
        )

    def ident(self, obj: dict[str, Any]) -> str:
        v = obj["id"]
        if not isinstance(v, str) or not ID_PATTERN.match(v):
            raise self.invalid(f"'id' must be 1-{MAX_ID_CHARS} characters of A-Z a-z 0-9 _ . : -")
        return v

    def text(self, obj: dict[str, Any]) -> str:
        v = obj["text"]
        if not isinstance(v, str):
            raise self.invalid("'text' must be a string")
        v = v.strip()
        if not v:
            raise self.invalid("'text' is empty")
        if len(v) > MAX_TEXT_CHARS:
            raise self.invalid(f"'text' is longer than {MAX_TEXT_CHARS} characters ({len(v)})")
        if "\x00" in v:
            raise self.invalid("'text' contains a NUL character")
        return v

    def camera(self, obj: dict[str, Any]) -> str | None:
        v = obj.get("camera")
        if v is None:
            return None
        if not isinstance(v, str) or not CAMERA_PATTERN.match(v):
            raise self.invalid("'camera' must be a camera id (letters, digits, _ . -; at most 64)")
        return v


def _plain_event_id(obj: dict[str, Any]) -> str | None:
    v = obj.get("event_id")
    return v if isinstance(v, str) and ID_PATTERN.match(v) else None


def _event_id(obj: dict[str, Any]) -> str | None:
    """The id an error should name: the message's `id` (query/watch id) or else its `event_id`, when well-formed."""
    for key in ("id", "event_id"):
        v = obj.get(key)
        if isinstance(v, str) and ID_PATTERN.match(v):
            return v
    return None


def _json_kind(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    return "a number"


def _short(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


# ---- server events --------------------------------------------------------------------------------------------


def encode_session_created(
    *,
    session_id: str,
    cameras: list[dict[str, Any]],
    camera: str,
    proactive: bool,
    limits: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "session.created",
        "protocol": PROTOCOL_VERSION,
        "session": _session(session_id, camera, proactive),
        "cameras": cameras,
        "limits": limits,
    }


def encode_session_updated(*, session_id: str, camera: str, proactive: bool) -> dict[str, Any]:
    return {"type": "session.updated", "session": _session(session_id, camera, proactive)}


def _session(session_id: str, camera: str, proactive: bool) -> dict[str, Any]:
    return {"id": session_id, "camera": camera, "proactive": proactive}


def encode_response(
    ev: ResponseEvent, *, query_id: str | None = None, watch_id: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """Encode a response event. `query_id`/`watch_id`/`kind` annotate deltas and done (which do not carry them)
    so a client can route every response event without keeping state; for `created` they override the event's."""
    if isinstance(ev, ResponseCreated):
        return {
            "type": "response.created",
            "response_id": ev.response_id,
            "kind": kind or ev.kind.value,
            "camera": ev.camera,
            "query_id": query_id if query_id is not None else ev.query_id,
            "watch_id": watch_id if watch_id is not None else ev.watch_id,
            "scene": ev.scene,
            "pts": finite(ev.pts),
        }
    if isinstance(ev, ResponseDelta):
        out: dict[str, Any] = {"type": "response.delta", "response_id": ev.response_id, "delta": ev.text}
    elif isinstance(ev, ResponseDone):
        out = {
            "type": "response.done",
            "response_id": ev.response_id,
            "status": ev.status.value,
            "text": ev.text,
            "usage": {"prompt_tokens": int(ev.prompt_tokens), "completion_tokens": int(ev.completion_tokens)},
            "ttft_ms": finite(ev.ttft_ms),
            "error": ev.error,
            # the past timeline entries recalled into the answer (docs/protocol.md); [] when none was
            "citations": [encode_citation(c) for c in ev.citations],
        }
        if ev.code is not None:  # a failure with a protocol error code (the model server's, docs/protocol.md)
            out["code"] = ev.code
    else:
        raise TypeError(f"not a response event: {type(ev).__name__}")
    if kind is not None:
        out["kind"] = kind
    if query_id is not None:
        out["query_id"] = query_id
    if watch_id is not None:
        out["watch_id"] = watch_id
    return out


MAX_CITATIONS = 64  # read from a node's answer at most (recall sends memory.recall.max_scenes ≤ 16)


def encode_citation(c: Citation) -> dict[str, Any]:
    return {
        "camera": c.camera,
        "scene": int(c.scene),
        "id": c.id,
        "pts": finite(c.pts),
        "wall_time": finite(c.wall_time),
        "thumbnail": c.thumbnail,
    }


def decode_citations(raw: Any) -> tuple[Citation, ...]:
    """A node's `citations` (the gateway relays them): well-formed ones, at most MAX_CITATIONS; others skipped."""
    if not isinstance(raw, list):
        return ()
    out: list[Citation] = []
    for c in raw[:MAX_CITATIONS]:
        if not isinstance(c, dict):
            continue
        scene, pts, wall, thumb = c.get("scene"), c.get("pts"), c.get("wall_time"), c.get("thumbnail")
        if not (isinstance(c.get("camera"), str) and isinstance(c.get("id"), str) and isinstance(scene, int)):
            continue
        if not (isinstance(pts, int | float) and isinstance(wall, int | float)):
            continue
        out.append(
            Citation(c["camera"], scene, c["id"], float(pts), float(wall), thumb if isinstance(thumb, str) else None)
        )
    return tuple(out)


def decode_response(obj: dict[str, Any]) -> ResponseEvent | None:
    """The response event a server sent (the inverse of `encode_response`; the gateway reads its nodes' answers).
    None when it is not a well-formed response event."""
    typ = obj.get("type")
    try:
        rid = str(obj["response_id"])
        if typ == "response.created":
            scene, pts = obj.get("scene"), obj.get("pts")
            return ResponseCreated(
                rid,
                str(obj.get("camera") or ""),
                ResponseKind(obj.get("kind")),
                query_id=obj.get("query_id"),
                watch_id=obj.get("watch_id"),
                scene=scene if isinstance(scene, int) else None,
                pts=float(pts) if isinstance(pts, int | float) else None,
            )
        if typ == "response.delta":
            return ResponseDelta(rid, str(obj.get("delta") or ""))
        if typ == "response.done":
            usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
            ttft = obj.get("ttft_ms")
            return ResponseDone(
                rid,
                ResponseStatus(obj.get("status")),
                str(obj.get("text") or ""),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                ttft_ms=float(ttft) if isinstance(ttft, int | float) else None,
                error=obj.get("error") if isinstance(obj.get("error"), str) else None,
                code=obj.get("code") if isinstance(obj.get("code"), str) else None,
                citations=decode_citations(obj.get("citations")),
            )
    except (KeyError, ValueError, TypeError, OverflowError):  # e.g. a token count of 1e999 (inf) from a node
        return None
    return None


def encode_watch_added(*, watch_id: str, camera: str, text: str) -> dict[str, Any]:
    return {"type": "watch.added", "id": watch_id, "camera": camera, "text": text}


def encode_watch_removed(*, watch_id: str) -> dict[str, Any]:
    return {"type": "watch.removed", "id": watch_id}


def encode_scene_change(ev: SceneChange) -> dict[str, Any]:
    return {
        "type": "scene.change",
        "camera": ev.camera,
        "scene": ev.scene,
        "pts": finite(ev.pts),
        "wall_time": finite(ev.wall_time),
        "score": finite(ev.score),
        # its first frame, served by protocols/web/image_routes.py
        "thumbnail": f"/api/cameras/{ev.camera}/scenes/{ev.scene}.jpg",
    }


def encode_camera_state(ev: CameraStatus) -> dict[str, Any]:
    return {
        "type": "camera.state",
        "camera": ev.camera,
        "state": ev.state.value,
        "reason": ev.reason,
        "wall_time": finite(ev.wall_time),
    }


def encode_stats(ev: StatsSnapshot) -> dict[str, Any]:
    return {
        "type": "stats",
        "wall_time": finite(ev.wall_time),
        "cameras": _jsonable(ev.cameras),
        "totals": _jsonable(ev.totals),
    }


def encode_error(err: ProtocolError) -> dict[str, Any]:
    return {
        "type": "error",
        "code": err.code,
        "message": err.message,
        "event_id": err.event_id,
        "event_type": err.event_type,
    }


def encode_broadcast(ev: Any) -> dict[str, Any]:
    """Encode any subscription event (scene change, camera state, stats, response event)."""
    if isinstance(ev, SceneChange):
        return encode_scene_change(ev)
    if isinstance(ev, CameraStatus):
        return encode_camera_state(ev)
    if isinstance(ev, StatsSnapshot):
        return encode_stats(ev)
    if isinstance(ev, ResponseCreated | ResponseDelta | ResponseDone):
        return encode_response(ev)
    if isinstance(ev, RelayedEvent):
        return ev.event
    raise TypeError(f"cannot encode {type(ev).__name__}")


def dumps(event: dict[str, Any]) -> str:
    """Serialise an encoded event: compact, non-ASCII kept as is, never NaN/Infinity."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def finite(v: float | None) -> float | None:
    """JSON has no NaN/Infinity: they become null. Floats are rounded to microsecond-ish precision."""
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return round(f, 6)


def _jsonable(v: Any) -> Any:
    """Plain JSON values from stats dicts (numpy scalars, tuples, non-finite floats tolerated)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return finite(v)
    item = getattr(v, "item", None)  # numpy scalar
    if callable(item):
        return _jsonable(item())
    return str(v)
