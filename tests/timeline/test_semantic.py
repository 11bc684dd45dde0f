"""Optional semantic search: captions embedded through a real HTTP /v1/embeddings server (tests/timeline/
embed_server.py: synonyms are close) into the sidecar file, searches fused with BM25 by reciprocal rank; the server
away → BM25 alone, counted; nothing changes without `memory.timeline.embeddings`."""

from __future__ import annotations

import math
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from livesight.config import Config, TimelineConfig
from livesight.ids import new_id
from livesight.memory.event_log import EventLog
from livesight.timeline.search import rrf
from livesight.timeline.semantic.client import EmbeddingClient
from livesight.timeline.semantic.embedder import QUEUE_SIZE, Embedder
from livesight.timeline.semantic.index import SemanticIndex, open_semantic
from livesight.timeline.semantic.vectors import VectorStore, vectors_path
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.types import SceneChange, TimelineEntry, TimelineQuery
from tests.timeline.conftest import close_store, open_store
from tests.timeline.embed_server import EmbedServer, vector

T0 = 1_790_000_000.0
MODEL = "fake-embed"


def semantic_store(db: Path, url: str) -> TimelineStore:
    sem = SemanticIndex(vectors_path(str(db)), str(db), EmbeddingClient(url, MODEL), poll_s=0.1, query_retry_s=0.0)  # type: ignore[arg-type]
    cfg = TimelineConfig(embeddings=MODEL, embeddings_url=url)
    store = TimelineStore(EventLog(db), keyframe_dir(str(db)), cfg, semantic=sem)
    store.open()
    return store


def add(store: TimelineStore, camera: str, i: int, caption: str | None) -> TimelineEntry:
    e = TimelineEntry(
        id=new_id("tl_"), camera=camera, scene=i, chunk=0, pts=i * 100.0, wall_time=T0 + i * 100,
        end_pts=i * 100.0 + 60, end_wall_time=T0 + i * 100 + 60, caption=caption,
    )  # fmt: skip
    store.add_entry(e, [])
    return e


def ids(page: object) -> list[str]:
    return [h.entry.id for h in page.hits]  # type: ignore[attr-defined]


def synced(store: TimelineStore) -> None:
    store.flush()
    assert store.semantic is not None and store.semantic.sync(30.0)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture
def server() -> Iterator[EmbedServer]:
    with EmbedServer() as srv:
        yield srv


CAPTIONS = ("a red car parked by the door", "a woman walks her puppy", "an empty street in the dark", "a gate opens")


def test_a_synonym_finds_the_entry_through_the_vectors_and_bm25_alone_does_not(
    tmp_path: Path, server: EmbedServer
) -> None:
    db = tmp_path / "ev.sqlite"
    store = semantic_store(db, server.base_url)
    try:
        es = [add(store, "door", i, c) for i, c in enumerate(CAPTIONS)]
        synced(store)
        assert store.counters()["embedded"] == 4 and server.models == {MODEL}
        assert vectors_path(str(db)) == tmp_path / "ev.vectors.sqlite" and (tmp_path / "ev.vectors.sqlite").is_file()
        page = store.search(TimelineQuery(text="automobile"))
        assert ids(page)[0] == es[0].id
        assert page.hits[0].rank == pytest.approx(1 / 61, rel=1e-5)  # vector rank 1, not in BM25's list
        assert ids(store.search(TimelineQuery(text="a canine outside")))[0] == es[1].id
        assert ids(store.search(TimelineQuery(text="automobile", cameras=("yard",)))) == []  # the camera filter holds
        window = TimelineQuery(text="automobile", start=T0 + 150, end=T0 + 400)  # entries 1..3 overlap it
        in_window = ids(store.search(window))
        assert in_window and es[0].id not in in_window
        assert store.counters()["semantic_query_failures"] == 0
    finally:
        close_store(store)
    plain = open_store(db)  # the same database without embeddings: BM25 alone
    try:
        assert plain.semantic is None
        assert ids(plain.search(TimelineQuery(text="automobile"))) == []
        assert ids(plain.search(TimelineQuery(text="car"))) == [es[0].id]
    finally:
        close_store(plain)


def test_fused_order_is_reciprocal_rank_of_bm25_and_vector_ranks(tmp_path: Path, server: EmbedServer) -> None:
    captions = [
        "a car at the door",  # both words: first in both lists
        "an automobile",  # vectors only (a synonym)
        "the door of the shed",  # both lists, lower
        "a man with a car and a bicycle and a ladder",  # both lists, lower
        "trees in the wind",  # vectors only, far
    ]
    db = tmp_path / "ev.sqlite"
    store = semantic_store(db, server.base_url)
    try:
        es = [add(store, "door", i, c) for i, c in enumerate(captions)]
        synced(store)
        fused = store.search(TimelineQuery(text="car door", limit=10))
    finally:
        close_store(store)
    plain = open_store(db)
    try:
        bm25 = ids(plain.search(TimelineQuery(text="car door", limit=10)))
    finally:
        close_store(plain)
    q = vector("car door")
    by_vector = sorted(es, key=lambda e: -cosine(q, vector(e.caption or "")))
    assert len({round(cosine(q, vector(e.caption or "")), 6) for e in es}) == len(es)  # no ties: one order
    rowid = {e.id: i + 1 for i, e in enumerate(es)}  # rows in the order written
    back = {v: k for k, v in rowid.items()}
    expected = rrf([[rowid[i] for i in bm25], [rowid[e.id] for e in by_vector]])
    assert ids(fused) == [back[r] for r, _ in expected]
    assert [h.rank for h in fused.hits] == [float(f"{s:.6g}") for _, s in expected]
    assert ids(fused)[0] == es[0].id and fused.hits[0].rank == pytest.approx(2 / 61, rel=1e-5)
    assert set(bm25) < set(ids(fused))  # fusion adds the synonym, loses nothing BM25 found


def test_rrf_sums_reciprocal_ranks_with_k_60() -> None:
    fused = rrf([[1, 2, 3], [3, 4]])
    assert [r for r, _ in fused] == [3, 1, 4, 2]  # 3: 1/63 + 1/61; 1: 1/61; 4: 1/62 (ties: newest first)
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61) and fused[1][1] == pytest.approx(1 / 61)
    assert rrf([[5], [7]]) == [(7, 1 / 61), (5, 1 / 61)]
    assert rrf([]) == []


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_away_gives_bm25_counted_and_entries_are_embedded_when_it_is_back(tmp_path: Path) -> None:
    port = _dead_port()
    store = semantic_store(tmp_path / "ev.sqlite", f"http://127.0.0.1:{port}/v1")
    try:
        car = add(store, "door", 1, "a red car parked by the door")
        add(store, "door", 2, "a gate opens")
        store.flush()
        page = store.search(TimelineQuery(text="red car"))
        assert ids(page) == [car.id]  # BM25 alone
        c = store.counters()
        assert c["semantic_query_failures"] == 1 and c["semantic_searches_fused"] == 0
        deadline = time.monotonic() + 20
        while store.counters()["embed_failures"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.counters()["embed_failures"] >= 1 and store.counters()["embedded"] == 0
        assert ids(store.search(TimelineQuery(text="automobile"))) == []
        with EmbedServer(port) as srv:  # back: the kept rows are embedded after the backoff
            assert store.semantic is not None and store.semantic.sync(40.0)
            assert store.counters()["embedded"] == 2 and srv.requests >= 1
            assert ids(store.search(TimelineQuery(text="automobile")))[0] == car.id
    finally:
        close_store(store)


def test_captions_set_later_and_by_the_live_memory_are_embedded(tmp_path: Path, server: EmbedServer) -> None:
    store = semantic_store(tmp_path / "ev.sqlite", server.base_url)
    try:
        later = add(store, "door", 1, None)
        add(store, "door", 2, "a gate opens")
        synced(store)
        assert store.counters()["embedded"] == 1
        store.set_caption(later.id, "a sedan waits")  # backfill's path: a hint
        # the live memory's path: EventLog.caption, no hint
        store.log.scene(SceneChange("yard", 7, 0.0, T0 + 5000, 1.0))
        store.log.caption("yard", 7, "a pedestrian crosses")
        synced(store)
        assert store.counters()["embedded"] == 3
        assert ids(store.search(TimelineQuery(text="automobile")))[0] == later.id
        hit = store.search(TimelineQuery(text="person"))
        assert hit.hits[0].entry.camera == "yard"
        store.set_caption(later.id, "a puppy waits")  # a changed caption is embedded again
        synced(store)
        assert ids(store.search(TimelineQuery(text="dog")))[0] == later.id
    finally:
        close_store(store)


def test_a_history_captioned_before_embeddings_is_embedded_and_another_model_starts_over(
    tmp_path: Path, server: EmbedServer
) -> None:
    db = tmp_path / "ev.sqlite"
    plain = open_store(db)
    es = [add(plain, "door", i, f"scene {i}: a car") for i in range(300)]  # more than a catch-up page
    plain.flush()
    close_store(plain)
    store = semantic_store(db, server.base_url)
    try:
        synced(store)
        assert store.counters()["embedded"] == 300
    finally:
        close_store(store)
    store = semantic_store(db, server.base_url)  # same model: nothing to do
    try:
        synced(store)
        assert store.counters()["embedded"] == 0
        store.log.write("DELETE FROM timeline WHERE id = ?", (es[0].id,))  # retention's kind of deletion
        store.flush()
        assert store.semantic is not None
        store.semantic.embedder._prune_at = 0.0
        synced(store)
        assert store.counters()["vectors_deleted"] == 1
    finally:
        close_store(store)
    sem = SemanticIndex(vectors_path(str(db)), str(db), EmbeddingClient(server.base_url, "other-model"), poll_s=0.1)
    store = TimelineStore(EventLog(db), keyframe_dir(str(db)), TimelineConfig(), semantic=sem)
    store.open()
    try:
        assert sem.vectors.reset
        synced(store)
        assert store.counters()["embedded"] == 299
    finally:
        close_store(store)


def test_off_by_default_and_the_config_names_the_server(tmp_path: Path) -> None:
    db = str(tmp_path / "ev.sqlite")
    base = {"cameras": [{"id": "door", "source": "builtin:demo"}], "model": {"preset": "tiny-random"}}
    assert open_semantic(Config.model_validate(base), db) is None
    with pytest.raises(ValueError, match=r"memory\.timeline\.embeddings_url nor model\.base_url"):
        Config.model_validate({**base, "memory": {"timeline": {"embeddings": "nomic-embed-text"}}})
    cfg = Config.model_validate(
        {
            **base,
            "memory": {"timeline": {"embeddings": "nomic-embed-text", "embeddings_url": "http://127.0.0.1:1/v1"}},
        }
    )
    sem = open_semantic(cfg, db)
    assert sem is not None and sem.client.base_url == "http://127.0.0.1:1/v1" and sem.client.model == "nomic-embed-text"
    assert open_semantic(cfg, None) is None
    remote = Config.model_validate(
        {
            "cameras": base["cameras"],
            "model": {"backend": "openai", "base_url": "http://127.0.0.1:2/v1", "name": "qwen"},
            "memory": {"timeline": {"embeddings": "nomic-embed-text"}},
        }
    )
    sem = open_semantic(remote, db)
    assert sem is not None and sem.client.base_url == "http://127.0.0.1:2/v1"


def test_vectors_are_compared_for_the_newest_entries_only_unless_a_window_names_older_ones(
    tmp_path: Path, server: EmbedServer
) -> None:
    store = semantic_store(tmp_path / "ev.sqlite", server.base_url)
    try:
        es = [add(store, "door", i, c) for i, c in enumerate(CAPTIONS)]  # the car is the oldest
        synced(store)
        assert store.semantic is not None
        store.semantic.scan_rows = 2  # the bound on the work (50,000 by default)
        assert es[0].id not in ids(store.search(TimelineQuery(text="automobile")))
        assert ids(store.search(TimelineQuery(text="automobile", start=T0, end=T0 + 30)))[0] == es[0].id
        assert es[0].id in ids(store.search(TimelineQuery(text="car")))  # BM25 still finds it
    finally:
        close_store(store)


def test_hints_past_the_bounded_queue_are_dropped_and_counted(tmp_path: Path) -> None:
    db = tmp_path / "ev.sqlite"
    vs = VectorStore(tmp_path / "ev.vectors.sqlite")
    emb = Embedder(str(db), vs, EmbeddingClient("http://127.0.0.1:1/v1", MODEL))  # not started: nothing drains it
    for i in range(QUEUE_SIZE + 5):
        emb.hint(f"tl_{i}")
    assert emb.hints_dropped == 5 and emb.pending == QUEUE_SIZE


def test_without_sqlite_vec_the_store_refuses_to_open_and_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sqlite_vec", None)  # import sqlite_vec → ImportError
    db = tmp_path / "ev.sqlite"
    sem = SemanticIndex(vectors_path(str(db)), str(db), EmbeddingClient("http://127.0.0.1:1/v1", MODEL))
    log = EventLog(db)
    store = TimelineStore(log, keyframe_dir(str(db)), TimelineConfig(), semantic=sem)
    try:
        with pytest.raises(RuntimeError, match=r"pip install 'livesight\[semantic\]'"):
            store.open()
        assert store.retention is None and store._read is None  # nothing left running
    finally:
        log.close()
