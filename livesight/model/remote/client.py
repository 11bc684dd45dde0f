"""The daemon's link to an OpenAI-compatible vision server: the official `openai` client (AsyncOpenAI), streamed chat
completions, one error vocabulary, backoff, counters and a health part.

    model = RemoteModel(cfg.model)                                      # nothing connects yet
    result = await model.generate(messages, kind="question", max_tokens=64, on_text=..., should_stop=...)
    model.health()                                                      # the /healthz `model` part

Failures become `RemoteError` with a protocol code (docs/protocol.md):
  model_unavailable   refused connection, timeout (request_timeout_s covers the whole streamed answer and the wait
                      for a free slot before it, from the question's arrival), 5xx,
                      a stream that broke off
  model_rate_limited  429: nothing is sent again before its Retry-After (else a backoff) has passed
  model_rejected      4xx other than 429 (e.g. 422 from a strict server, 401/403 bad key, 404 unknown model)
After a failure, background work (captions, proactive messages, watches) waits a jittered backoff capped at
BACKOFF_MAX_S, so a server that comes back is used again within seconds; questions are always tried (a refused
connection fails them at once), except inside a 429's Retry-After. While unreachable or failing (not while refusing:
4xx), `probe()` asks GET /models.

The API key never leaves this module: it is handed to the client, and scrubbed from every error text we keep.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livesight.redact import redact_url, scrub, url_secrets

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from livesight.config import ModelConfig

log = logging.getLogger(__name__)

UNAVAILABLE = "model_unavailable"
RATE_LIMITED = "model_rate_limited"
REJECTED = "model_rejected"
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 5.0  # a server that comes back is used again within seconds
RETRY_AFTER_MAX_S = 300.0
KINDS = ("question", "proactive", "watch", "caption")


class RemoteError(Exception):
    """A request the server did not answer. `code` is the protocol error code; `retry_after` in seconds when known."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class RemoteResult:
    text: str
    prompt_tokens: int  # as the server reported (0 when it did not)
    completion_tokens: int
    ttft_ms: float
    stopped: bool  # should_stop() ended the stream early


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date), capped; None when absent/invalid."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # an HTTP date; anything else (a server's garbage) is no Retry-After at all, never an error
            parsed = email.utils.parsedate_to_datetime(value)
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
        seconds = parsed.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX_S)


class RemoteModel:
    def __init__(self, cfg: ModelConfig) -> None:
        assert cfg.base_url is not None and cfg.name is not None
        self.cfg = cfg
        self.base_url = cfg.base_url
        self.name = cfg.name
        self._secret = cfg.api_key.get_secret_value() if cfg.api_key is not None else ""
        self.shown_url = redact_url(cfg.base_url)  # the server as logs and /healthz show it (no credentials)
        self._secrets = (*url_secrets(cfg.base_url), self._secret)
        self._client: AsyncOpenAI | None = None  # made on first use, on the event loop that uses it
        self._slots: asyncio.Semaphore | None = None
        self.outcomes: Counter[str] = Counter()  # ok | cancelled | model_unavailable | model_rate_limited | …
        self.by_kind: Counter[str] = Counter()  # requests by kind (question, proactive, watch, caption)
        self.images_sent = 0
        self.bytes_sent = 0
        self.image_tokens_sent = 0
        self.new_image_tokens_sent = 0  # of images sent for the first time (re-sent ones hit prefix caches)
        self.in_flight = 0
        self.last_error = ""
        self.last_error_at: float | None = None
        self.last_ok_at: float | None = None
        self._streak = 0  # failures in a row
        self._last_code = ""  # the code of the last failure
        self._down_until = 0.0  # monotonic: background work waits until then
        self._rate_limited_until = 0.0  # monotonic: nothing is sent before then (429 Retry-After)

    # ---- the client ------------------------------------------------------------------------------------------

    def _api(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI, Timeout

            timeout = self.cfg.request_timeout_s
            self._client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._secret or "none",  # local servers want none; the client insists on a value
                max_retries=0,  # retries are ours: questions must end within request_timeout_s
                timeout=Timeout(timeout, connect=min(timeout, 10.0)),
            )
            self._slots = asyncio.Semaphore(self.cfg.concurrent_requests)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ---- state ---------------------------------------------------------------------------------------------

    def wait_s(self, kind: str) -> float:
        """Seconds before a request of `kind` may be sent (0: now). Questions wait only for a 429's Retry-After."""
        now = time.monotonic()
        until = self._rate_limited_until if kind == "question" else max(self._rate_limited_until, self._down_until)
        return max(0.0, until - now)

    @property
    def degraded(self) -> bool:
        return self._streak > 0 or time.monotonic() < self._rate_limited_until

    @property
    def probe_useful(self) -> bool:
        """Failing for a reason GET /models can tell is over (unreachable, 5xx, 429) — not a refused request (4xx:
        the server is up and says no to what we send; only a request that succeeds clears that)."""
        return self.degraded and self._last_code != REJECTED

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)[:300]

    def _failed(self, err: RemoteError) -> None:
        now = time.monotonic()
        self.outcomes[err.code] += 1
        self._streak += 1
        self._last_code = err.code
        backoff = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self._streak - 1)) * random.uniform(0.8, 1.2)
        if err.code == RATE_LIMITED:
            self._rate_limited_until = now + (err.retry_after if err.retry_after is not None else backoff)
        self._down_until = now + backoff
        self.last_error = str(err)
        self.last_error_at = time.time()
        if self._streak <= 3 or self._streak % 50 == 0:
            log.warning("model server %s: %s (%d in a row)", self.shown_url, err, self._streak)

    def _succeeded(self) -> None:
        if self._streak:
            log.info("model server %s answers again", self.shown_url)
        self._streak = 0
        self._down_until = 0.0
        self.last_ok_at = time.time()

    # ---- requests ------------------------------------------------------------------------------------------

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        kind: str,
        max_tokens: int,
        images: int = 0,
        image_bytes: int = 0,
        image_tokens: int = 0,
        new_image_tokens: int = 0,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RemoteResult:
        """One streamed chat completion. Raises RemoteError (never anything else the server caused)."""
        api = self._api()
        assert self._slots is not None
        wait = self.wait_s(kind)
        if wait > 0:  # inside a 429's Retry-After, or (background work) the backoff after a failure: not sent
            self.outcomes["not_sent"] += 1
            if time.monotonic() < self._rate_limited_until:
                raise RemoteError(RATE_LIMITED, f"the server asked us to wait {wait:.1f}s more", retry_after=wait)
            raise RemoteError(
                UNAVAILABLE, f"not sent: the server is failing ({self.last_error}); next try in {wait:.1f}s"
            )
        t0 = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.cfg.request_timeout_s  # from the question's arrival
        await self._take_slot(deadline)
        try:
            self.in_flight += 1
            self.by_kind[kind] += 1
            self.images_sent += images
            self.bytes_sent += image_bytes
            self.image_tokens_sent += image_tokens
            self.new_image_tokens_sent += new_image_tokens
            try:
                result = await self._stream(api, messages, max_tokens, on_text, should_stop, t0, deadline)
            except RemoteError as e:
                self._failed(e)
                raise
            finally:
                self.in_flight -= 1
        finally:
            self._slots.release()
        self.outcomes["cancelled" if result.stopped else "ok"] += 1
        self._succeeded()
        return result

    async def _take_slot(self, deadline: float) -> None:
        """One of model.concurrent_requests' slots, or RemoteError model_unavailable when none is free before the
        request's deadline (the wait for a slot is part of request_timeout_s; counted as `no_slot`, not a failure of
        the server: it is answering, only slowly)."""
        assert self._slots is not None
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            self.outcomes["no_slot"] += 1
            timeout = self.cfg.request_timeout_s
            raise RemoteError(
                UNAVAILABLE,
                f"no request slot came free within {timeout:g}s (model.request_timeout_s; "
                f"model.concurrent_requests {self.cfg.concurrent_requests} busy with slower answers)",
            ) from None

    async def _stream(
        self,
        api: AsyncOpenAI,
        messages: list[dict[str, Any]],
        max_tokens: int,
        on_text: Callable[[str], None] | None,
        should_stop: Callable[[], bool],
        t0: float,
        deadline: float,
    ) -> RemoteResult:
        import openai

        timeout = self.cfg.request_timeout_s
        parts: list[str] = []
        ttft: float | None = None
        usage: Any = None
        stopped = False
        chunks = 0
        try:
            async with asyncio.timeout_at(deadline):
                stream = await api.chat.completions.create(
                    model=self.name,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=max_tokens,
                    temperature=self.cfg.temperature,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=dict(self.cfg.extra_body) or None,
                )
                try:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = chunk.usage
                        for choice in chunk.choices:
                            text = choice.delta.content if choice.delta is not None else None
                            if not text:
                                continue
                            if ttft is None:
                                ttft = (time.perf_counter() - t0) * 1000
                            chunks += 1
                            parts.append(text)
                            if on_text is not None:
                                on_text(text)
                        if should_stop():
                            stopped = True
                            break
                finally:
                    await stream.close()
        except TimeoutError:
            raise RemoteError(
                UNAVAILABLE, f"no complete answer within {timeout:g}s (model.request_timeout_s)"
            ) from None
        except openai.APITimeoutError:
            raise RemoteError(UNAVAILABLE, f"the request timed out (model.request_timeout_s {timeout:g}s)") from None
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            msg = self._scrub(f"cannot reach the server: {type(cause).__name__}: {cause}")
            raise RemoteError(UNAVAILABLE, msg) from None
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APIError as e:  # a stream that broke off, an error event inside the stream, bad JSON
            raise RemoteError(UNAVAILABLE, self._scrub(f"the answer broke off: {e.message}")) from None
        return RemoteResult(
            text="".join(parts),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0) or chunks,
            ttft_ms=ttft if ttft is not None else (time.perf_counter() - t0) * 1000,
            stopped=stopped,
        )

    def _status_error(self, e: Any) -> RemoteError:
        status = int(e.status_code)
        detail = self._scrub(_error_message(e))
        if status == 429:
            retry = parse_retry_after(e.response.headers.get("retry-after"))
            return RemoteError(RATE_LIMITED, f"HTTP 429 rate limited: {detail}", retry_after=retry, status=status)
        if status >= 500:
            return RemoteError(UNAVAILABLE, f"HTTP {status} from the server: {detail}", status=status)
        hint = {
            401: " (check model.api_key)",
            403: " (check model.api_key)",
            404: " (check model.base_url and model.name)",
            422: " (a strict server: check model.extra_body)",
        }.get(status, "")
        return RemoteError(REJECTED, f"HTTP {status} the server refused the request{hint}: {detail}", status=status)

    async def probe(self) -> bool:
        """GET /models (a cheap request every OpenAI-compatible server answers): True when it answered."""
        api = self._api()
        try:
            async with asyncio.timeout(min(self.cfg.request_timeout_s, 5.0)):
                await api.models.list()
        except Exception as e:  # any failure means "still down"; counted as a probe, never raised
            self.outcomes["probe_failed"] += 1
            self._down_until = time.monotonic() + min(BACKOFF_MAX_S, BACKOFF_START_S * 2**self._streak)
            log.debug("probe of %s failed: %s", self.shown_url, type(e).__name__)
            return False
        self.outcomes["probe_ok"] += 1
        self._succeeded()
        return True

    # ---- health --------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The /healthz `model` part: degraded with the last error while requests fail; ok again by itself."""
        now = time.monotonic()
        rate_wait = max(0.0, self._rate_limited_until - now)
        state = "degraded" if self._streak or rate_wait else "ok"
        return {
            "state": state,
            "reason": self.last_error if state != "ok" else "",
            "server": self.shown_url,
            "server_model": self.name,
            "failures_in_a_row": self._streak,
            "retry_in_s": math.ceil(max(rate_wait, self._down_until - now, 0.0) * 100) / 100,  # 0: nothing waits
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_ok_at": self.last_ok_at,
            "in_flight": self.in_flight,
            "requests": dict(self.outcomes),
            "requests_by_kind": {k: self.by_kind.get(k, 0) for k in KINDS},
            "images_sent": self.images_sent,
            "image_bytes_sent": self.bytes_sent,
            "image_tokens_sent": self.image_tokens_sent,
            "new_image_tokens_sent": self.new_image_tokens_sent,
        }


def _error_message(e: Any) -> str:
    """The server's own error text ({"error": {"message": …}} or {"detail": …}), else the body's start."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            if msg:
                return str(msg)
        detail = body.get("detail")
        if detail:
            return str(detail)
    try:
        return e.response.text[:200]
    except Exception:
        return getattr(e, "message", "") or ""
