"""Semantic search against the real llama.cpp server: the daemon (backend openai on the tests' llama.cpp server)
captions scenes; a llama.cpp instance that serves /v1/embeddings (the tests' own when it does, else a second one
started with `--embedding true`) embeds them into the sidecar; /api/scenes?q= returns BM25 fused with the vectors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from livesight.bench.remote.llama_server import LlamaServer, build_gguf
from livesight.timeline.ranking import tokens
from livesight.timeline.search import STOP_WORDS
from livesight.timeline.semantic.client import EmbeddingClient, EmbeddingError
from tests.helpers import http_get
from tests.remote.helpers import remote_config, running, until

pytestmark = pytest.mark.slow


def _serves_embeddings(base_url: str) -> bool:
    client = EmbeddingClient(base_url, "tiny-vl", timeout_s=60)
    try:
        return len(client.embed(["a car"])) == 1
    except EmbeddingError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="module")
def embeddings_url(llama_server: LlamaServer) -> Iterator[str]:
    if _serves_embeddings(llama_server.base_url):
        yield llama_server.base_url
        return
    model, mmproj = build_gguf()
    with LlamaServer(model, mmproj, n_ctx=2048, embedding=True) as srv:
        yield srv.base_url


async def test_the_daemon_embeds_captions_through_llama_cpp_and_searches_are_fused(
    llama_server: LlamaServer, embeddings_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "ev.sqlite"
    cfg = remote_config(
        llama_server.base_url,
        cameras=[{"id": "cam", "source": "builtin:demo", "sample_fps": 2}],
        model={"name": "tiny-vl", "max_new_tokens": 8, "images_per_request": 4, "request_timeout_s": 120},
        memory={"database": str(db), "timeline": {"embeddings": "tiny-vl", "embeddings_url": embeddings_url}},
    )
    async with running(cfg) as app:
        store = app.timeline
        assert store is not None and store.semantic is not None
        await until(lambda: store.counters()["embedded"] >= 2, 300, "two captions embedded")
        assert (tmp_path / "ev.vectors.sqlite").is_file()
        status, _, body = await http_get(app.port, "/api/scenes?limit=50")
        assert status == 200, body
        captioned = [s for s in json.loads(body)["scenes"] if s["caption"]]
        words = [w for s in captioned for w in tokens(s["caption"]) if w not in STOP_WORDS and len(w) > 1]
        q = words[0] if words else "automobile"  # the tiny random model's captions are noise: any word of theirs
        assert await asyncio.to_thread(store.semantic.sync, 120)  # the captions listed above are embedded now
        status, _, body = await http_get(app.port, f"/api/scenes?q={quote(q)}&limit=50")
        assert status == 200, body
        hits = json.loads(body)["scenes"]
        with_word = [s for s in hits if q in tokens(s["caption"])]
        without = [s for s in hits if q not in tokens(s["caption"])]
        assert without, hits  # vector neighbours BM25 alone would not return
        assert all(0 < s["rank"] <= 2 / 61 + 1e-6 for s in hits)  # reciprocal-rank scores (k=60), best first
        assert [s["rank"] for s in hits] == sorted((s["rank"] for s in hits), reverse=True)
        if words:
            assert any(s["rank"] > 1 / 61 for s in with_word)  # in both lists
        c = store.counters()
        assert c["semantic_searches_fused"] >= 1 and c["semantic_query_failures"] == 0 and c["embed_failures"] == 0
        _, _, body = await http_get(app.port, "/healthz")
        assert json.loads(body)["timeline_capture"]["semantic"]["embedded"] >= 2
        _, _, metrics = await http_get(app.port, "/metrics")
        assert b"livesight_timeline_semantic_embedded_total " in metrics
        assert b"# TYPE livesight_timeline_semantic_embed_pending gauge" in metrics
