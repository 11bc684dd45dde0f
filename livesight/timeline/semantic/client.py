"""Embeddings from an OpenAI-compatible server's /v1/embeddings (llama.cpp, Ollama, vLLM), through the official
`openai` client (sync: the callers are the embedder thread and the store's search threads). Vectors come back
L2-normalised (cosine = dot product); a server that answers one vector per token (llama.cpp's with a model that has
no pooling) is mean-pooled here. The API key never leaves this module and is scrubbed from errors."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from livesight.redact import redact_url, scrub, url_secrets

if TYPE_CHECKING:
    from openai import OpenAI

MAX_BATCH = 32  # texts in one request
MAX_CHARS = 2000  # a text longer than this is cut (captions are a sentence or two)


class EmbeddingError(Exception):
    """The server did not give the embeddings (away, timed out, refused, or answered something unusable)."""


class EmbeddingClient:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url
        self.model = model
        self.shown_url = redact_url(base_url)
        self._key = api_key or ""
        self._secrets = (*url_secrets(base_url), self._key)
        self._timeout = timeout_s
        self._client: OpenAI | None = None
        self._lock = threading.Lock()

    def _api(self) -> OpenAI:
        with self._lock:
            if self._client is None:
                from openai import OpenAI, Timeout

                self._client = OpenAI(
                    base_url=self.base_url,
                    api_key=self._key or "none",  # local servers want none; the client insists on a value
                    max_retries=0,  # retries are the embedder's (backoff), a query's failure falls back to BM25
                    timeout=Timeout(self._timeout, connect=min(self._timeout, 5.0)),
                )
            return self._client

    def embed(self, texts: Sequence[str], *, timeout_s: float | None = None) -> list[list[float]]:
        """One request for up to MAX_BATCH texts → their unit vectors, in order. Raises EmbeddingError."""
        if not texts:
            return []
        if len(texts) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} texts per request")
        import openai

        api = self._api()
        if timeout_s is not None:
            api = api.with_options(timeout=timeout_s)
        try:
            res = api.embeddings.create(
                model=self.model, input=[t[:MAX_CHARS] or " " for t in texts], encoding_format="float"
            )
        except openai.OpenAIError as e:
            raise EmbeddingError(scrub(f"{type(e).__name__}: {e}", self._secrets)[:300]) from None
        data = sorted(res.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbeddingError(f"{len(data)} embeddings for {len(texts)} texts")
        out = []
        for d in data:
            v = _pooled(d.embedding)
            norm = math.sqrt(sum(x * x for x in v))
            if not math.isfinite(norm) or norm == 0.0:
                raise EmbeddingError("an embedding of length zero or not finite")
            out.append([x / norm for x in v])
        if len({len(v) for v in out}) != 1:
            raise EmbeddingError("embeddings of different lengths")
        return out

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _pooled(v: object) -> list[float]:
    """A text's vector: as given, or the mean of its tokens' vectors (llama.cpp's server without pooling answers one
    vector per token). Raises EmbeddingError for anything else."""
    if isinstance(v, list) and v and all(isinstance(x, list) for x in v):
        n = len(v[0])
        if not n or any(len(x) != n or not all(isinstance(y, int | float) for y in x) for x in v):
            raise EmbeddingError("token vectors of different lengths or not numbers")
        return [sum(col) / len(v) for col in zip(*v, strict=True)]
    if not isinstance(v, list) or not v or not all(isinstance(x, int | float) for x in v):
        raise EmbeddingError("an embedding that is not a list of numbers")
    return v
