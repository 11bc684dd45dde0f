"""SemanticIndex: what the timeline store holds when semantic search is on.

    index = open_semantic(cfg, database)        # None when memory.timeline.embeddings is not set
    index.open()                                # the sidecar (raises RuntimeError naming the extra when missing)
    index.hint(entry_id)                        # a caption was set: embed it soon
    vec = index.query_vector("automobile")      # cached; None (counted) when the server does not answer in time
    index.nearest(vec, k, cameras=..., lo=..., hi=...)
    index.close()

A query's vector is asked for with a short timeout (QUERY_TIMEOUT_S); after a failure, queries do not ask again for
QUERY_RETRY_S (searches stay fast while the server is away: BM25 alone, counted).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livesight.config import Config
from livesight.timeline.semantic.client import EmbeddingClient, EmbeddingError
from livesight.timeline.semantic.embedder import Embedder
from livesight.timeline.semantic.vectors import VectorStore, vectors_path

QUERY_TIMEOUT_S = 2.0
QUERY_RETRY_S = 10.0
QUERY_CACHE = 256
NEIGHBOURS = 100  # vector neighbours fused with BM25's candidates
SCAN_ROWS = 50_000  # vectors compared per search at most: those of the newest entries (inside the query's window)


def open_semantic(cfg: Config, database: str | None) -> SemanticIndex | None:
    """The semantic index the config asks for (not opened yet); None when it asks for none or there is no file."""
    tl = cfg.memory.timeline
    path = vectors_path(database)
    if tl.embeddings is None or path is None:
        return None
    if tl.embeddings_url is not None:
        url, key = tl.embeddings_url, None
    else:
        assert cfg.model.base_url is not None  # the config's own check: backend openai has one
        url = cfg.model.base_url
        key = cfg.model.api_key.get_secret_value() if cfg.model.api_key is not None else None
    return SemanticIndex(path, str(database), EmbeddingClient(url, tl.embeddings, key))


class SemanticIndex:
    def __init__(
        self,
        path: Path,
        database: str,
        client: EmbeddingClient,
        *,
        poll_s: float = 2.0,
        query_retry_s: float = QUERY_RETRY_S,
    ) -> None:
        self.path = path
        self.query_retry_s = query_retry_s
        self.scan_rows = SCAN_ROWS
        self.client = client
        self.vectors = VectorStore(path)
        self.embedder = Embedder(database, self.vectors, client, poll_s=poll_s)
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self.queries = 0
        self.query_failures = 0  # searches that fell back to BM25 alone: the query's vector did not come
        self.fused = 0

    def open(self) -> None:
        self.vectors.open(self.client.model)
        self.embedder.start()

    def close(self) -> None:
        self.embedder.stop()
        self.vectors.close()
        self.client.close()

    def hint(self, entry_id: str) -> None:
        self.embedder.hint(entry_id)

    def sync(self, timeout: float = 30.0) -> bool:
        return self.embedder.sync(timeout)

    def query_vector(self, text: str) -> list[float] | None:
        """The text's vector (cached), or None — counted — when the server does not give it in time."""
        key = " ".join(text.lower().split())
        with self._lock:
            self.queries += 1
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            quiet = time.monotonic() < self._quiet_until
        if quiet:
            with self._lock:
                self.query_failures += 1
            return None
        try:
            (vec,) = self.client.embed([key], timeout_s=QUERY_TIMEOUT_S)
        except EmbeddingError:
            with self._lock:
                self.query_failures += 1
                self._quiet_until = time.monotonic() + self.query_retry_s
            return None
        with self._lock:
            self._cache[key] = vec
            while len(self._cache) > QUERY_CACHE:
                self._cache.popitem(last=False)
        return vec

    def nearest(
        self, vector: Sequence[float], *, cameras: Sequence[str] | None, lo: float | None, hi: float | None
    ) -> list[tuple[int, str]]:
        """The NEIGHBOURS nearest entries (rowid, entry id) of `cameras` starting within [lo, hi], nearest first."""
        with self._lock:
            self.fused += 1
        return self.vectors.nearest(vector, NEIGHBOURS, cameras=cameras, lo=lo, hi=hi)

    def counters(self) -> dict[str, Any]:
        return {
            **self.embedder.counters(),
            "semantic_queries": self.queries,
            "semantic_query_failures": self.query_failures,
            "semantic_searches_fused": self.fused,
        }
