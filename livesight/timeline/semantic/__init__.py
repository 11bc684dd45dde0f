"""Optional semantic search over the timeline (docs/timeline.md, "Semantic search"); off unless
`memory.timeline.embeddings` names a model.

- client.py    the server's /v1/embeddings through the official `openai` client: batches, a short timeout for queries
- vectors.py   the sidecar file `<db stem>.vectors.sqlite` (sqlite-vec, loaded through pysqlite3: the main database
               stays on the standard sqlite3 module and the event log stays its one writer)
- embedder.py  one thread embeds captioned entries (hints from the store, then polling newest first) into the sidecar
- index.py     SemanticIndex: the store's handle (open, hint, query vector cached, neighbours, counters, close)

Search fuses the vector neighbours with BM25's list by reciprocal rank (livesight/timeline/search.py `rrf`).
"""
