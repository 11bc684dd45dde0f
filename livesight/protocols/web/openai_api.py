"""OpenAI-compatible chat completions: pure request/response mapping (no I/O).

Each camera is a model named `livesight/<camera>` (the bare camera id is accepted too). The last `user` message of
`messages` is the question; earlier messages and `system` messages are ignored (the model has its own system prompt
and the camera's memory is the context). HTTP plumbing: openai_routes.py. Wire facts: docs/protocol.md.

    req = parse_chat_request(body, cameras, max_body=…)        # raises OpenAIError (status, type, param, code)
    completion(id, model, created, text, usage, finish_reason, citations)  # stream: false
    chunk(...), usage_chunk(...), sse(obj), SSE_DONE                       # stream: true (last chunk: citations)

Beside OpenAI's fields, a completion and the final streamed chunk (the one with `finish_reason`) carry `citations`:
the past timeline entries recalled into the answer, as on `response.done` ([] when none was).

`ask()` is the one place that calls the ServiceAPI, and maps its refusals to OpenAI errors.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from livesight.protocols.contract.api import (
    BusyError,
    CameraUnavailableError,
    InvalidRequestError,
    LimitExceededError,
    ModelUnavailableError,
    RemoteError,
    ServiceAPI,
    UnknownCameraError,
)
from livesight.protocols.contract.events import encode_citation
from livesight.types import Citation, ResponseEvent

MODEL_PREFIX = "livesight/"
OWNER = "livesight"
MAX_MESSAGES = 256
MODELS_NAMED = 20  # models listed in a model_not_found message (a fleet has thousands)
MAX_TEXT_CHARS = 2000  # the same limit as a WebSocket/MQTT question (events.MAX_TEXT_CHARS)
SSE_DONE = b"data: [DONE]\n\n"
# Accepted and ignored: sampling knobs and client metadata that tools like Open WebUI and LangChain always send.
_IGNORED = {
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "user",
    "seed",
    "stop",
    "logit_bias",
    "metadata",
    "store",
    "parallel_tool_calls",
    "reasoning_effort",
    "service_tier",
    "response_format",
    "tool_choice",
    "tools",
    "logprobs",
    "top_logprobs",
}
_KNOWN = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", *_IGNORED}


class OpenAIError(Exception):
    """A refused request, answered as HTTP `status` with OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def unauthorized() -> OpenAIError:
    return OpenAIError(401, "Missing or incorrect API key (a bearer token).", code="invalid_api_key")


def not_found(path: str) -> OpenAIError:
    return OpenAIError(404, f"Unknown request URL: {path}.", code="unknown_url")


def method_not_allowed(method: str, path: str) -> OpenAIError:
    return OpenAIError(405, f"Method {method} is not allowed for {path}.", code="method_not_allowed")


def busy(message: str) -> OpenAIError:
    return OpenAIError(429, message, type="rate_limit_error", code="rate_limit_exceeded")


def server_error(message: str) -> OpenAIError:
    return OpenAIError(500, message, type="server_error", code=None)


def camera_unavailable(message: str) -> OpenAIError:
    """The fleet gateway: the camera's node is offline or unreachable (retry later)."""
    return OpenAIError(503, message, type="server_error", code="camera_unavailable")


def remote_error(code: str, message: str) -> OpenAIError:
    """A refusal a node sent (its protocol error code) as the OpenAI error the node itself would have answered."""
    if code in ("busy", "limit_exceeded", "rate_limited"):
        return busy(message)
    if code == "unknown_camera":
        return OpenAIError(404, message, param="model", code="model_not_found")
    if code == "invalid_field":
        return bad_request(message, param="messages")
    if code == "camera_unavailable":
        return camera_unavailable(message)
    return OpenAIError(503, message, type="server_error", code=code)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str  # as the client named it (echoed back)
    camera: str
    question: str
    stream: bool
    include_usage: bool
    max_tokens: int | None  # stop after this many text deltas (finish_reason "length")


def model_id(camera: str) -> str:
    return MODEL_PREFIX + camera


def models_list(cameras: list[str], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model_id(c), "object": "model", "created": created, "owned_by": OWNER} for c in cameras],
    }


def model_object(model: str, cameras: list[str], created: int) -> dict[str, Any]:
    camera = camera_of(model, cameras)
    return {"id": model_id(camera), "object": "model", "created": created, "owned_by": OWNER}


def camera_of(model: str, cameras: list[str]) -> str:
    cam = model.removeprefix(MODEL_PREFIX)
    if cam not in cameras:
        named = ", ".join(model_id(c) for c in cameras[:MODELS_NAMED])
        more = f" and {len(cameras) - MODELS_NAMED} more: GET /v1/models" if len(cameras) > MODELS_NAMED else ""
        raise OpenAIError(
            404,
            f"The model `{model}` does not exist (models: {named}{more}).",
            param="model",
            code="model_not_found",
        )
    return cam


def parse_chat_request(body: bytes, cameras: list[str]) -> ChatRequest:
    """Validate a `POST /v1/chat/completions` body. Raises OpenAIError (400/404) naming the offending field."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise bad_request("We could not parse the JSON body of your request (it is not valid JSON).") from None
    if not isinstance(obj, dict):
        raise bad_request("The request body must be a JSON object.")
    unknown = sorted(set(obj) - _KNOWN)
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter (a string)", param="model")
    stream = obj.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", param="stream")
    include_usage = False
    opts = obj.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict) or not isinstance(opts.get("include_usage", False), bool):
            raise bad_request("'stream_options' must be an object like {\"include_usage\": true}", "stream_options")
        if not stream:
            raise bad_request("'stream_options' is only allowed when 'stream' is true", param="stream_options")
        include_usage = bool(opts.get("include_usage", False))
    n = obj.get("n", 1)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n != 1):
        raise bad_request("only n=1 is supported (one answer per question)", param="n")
    max_tokens = _max_tokens(obj)
    question = _last_user_text(obj.get("messages"))
    camera = camera_of(model, cameras)
    return ChatRequest(model, camera, question, stream, include_usage, max_tokens)


def _max_tokens(obj: dict[str, Any]) -> int | None:
    out: int | None = None
    for key in ("max_completion_tokens", "max_tokens"):
        v = obj.get(key)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad_request(f"'{key}' must be a positive integer", param=key)
        out = v if out is None else min(out, v)
    return out


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of messages", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise bad_request(f"at most {MAX_MESSAGES} messages", param="messages")
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request(f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]")
        if m["role"] != "user":
            continue
        text = _content_text(m.get("content"), i).strip()
        if not text:
            raise bad_request(f"messages[{i}].content is empty", param=f"messages[{i}].content")
        if len(text) > MAX_TEXT_CHARS:
            raise bad_request(
                f"messages[{i}].content is longer than {MAX_TEXT_CHARS} characters",
                param=f"messages[{i}].content",
                code="string_above_max_length",
            )
        return text
    raise bad_request("'messages' has no message with role 'user' (its last one is the question)", "messages")


def _content_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise bad_request(
                    f"messages[{i}].content[{j}]: only text parts are supported (the camera is the image)",
                    param=f"messages[{i}].content[{j}]",
                )
            parts.append(p["text"])
        return "\n".join(parts)
    raise bad_request(f"messages[{i}].content must be a string or an array of text parts", f"messages[{i}].content")


# ---- responses ------------------------------------------------------------------------------------------------


def completion_id(response_id: str) -> str:
    return "chatcmpl-" + response_id


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": int(prompt_tokens),
        "completion_tokens": int(completion_tokens),
        "total_tokens": int(prompt_tokens) + int(completion_tokens),
    }


def citations_of(citations: tuple[Citation, ...]) -> list[dict[str, Any]]:
    """`citations` as on `response.done` (docs/protocol.md): the past timeline entries recalled into the answer."""
    return [encode_citation(c) for c in citations]


def completion(
    cid: str,
    model: str,
    created: int,
    text: str,
    use: dict[str, int],
    finish_reason: str,
    citations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A whole answer; `citations` (a livesight field beside OpenAI's: clients ignore it) lists the past timeline
    entries recalled into it, [] when none was."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": use,
        "system_fingerprint": None,
        "citations": citations or [],
    }


def chunk(
    cid: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    citations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A streamed chunk; the final one (with `finish_reason`) also carries `citations` ([] when none)."""
    out = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if citations is not None:
        out["citations"] = citations
    return out


def usage_chunk(cid: str, model: str, created: int, use: dict[str, int]) -> dict[str, Any]:
    """The last chunk when `stream_options.include_usage` is true: no choices, the usage."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": use,
    }


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def now() -> int:
    return int(time.time())


# ---- the calls into the service (the only ones: re-point them here) -------------------------------------------


def stop(service: ServiceAPI, response_id: str) -> bool:
    """Stop generating an answer (e.g. at max_tokens); its `done` still follows, status cancelled."""
    return service.cancel(response_id)


async def ask(service: ServiceAPI, camera: str, question: str) -> AsyncIterator[ResponseEvent]:
    """Ask the service; its refusals become OpenAIError. Closing this iterator early cancels the answer."""
    agen = service.query(camera=camera, text=question, query_id=None)
    try:
        while True:
            try:
                ev = await anext(agen)
            except StopAsyncIteration:
                return
            except UnknownCameraError as e:
                raise OpenAIError(404, str(e.args[0]) if e.args else "unknown camera", param="model") from None
            except (BusyError, LimitExceededError) as e:
                raise busy(str(e)) from None
            except InvalidRequestError as e:
                raise bad_request(str(e), param="messages") from None
            except ModelUnavailableError as e:
                raise OpenAIError(503, str(e), type="server_error", code="unavailable") from None
            except CameraUnavailableError as e:
                raise camera_unavailable(str(e)) from None
            except RemoteError as e:  # a node's refusal, through the fleet gateway
                raise remote_error(e.code, str(e)) from None
            yield ev
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):  # "asynchronous generator is already running"
                await aclose()
