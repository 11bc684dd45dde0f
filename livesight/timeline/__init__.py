"""The timeline: every scene (or chunk of a long still one) as a searchable entry that outlives the live window.

- store.py      TimelineStore: rows written through the event log's one writer thread, read on its own connection;
                keyframe JPEGs beside the database (`<db stem>.keyframes/`); schema migration of the event log
- search.py     full-text search (SQLite FTS5, BM25) with time and camera filters and cursors; optional semantic
                search (embeddings in sqlite-vec) fused by reciprocal rank
- retention.py  keyframes bounded by age and bytes, rows by count; deletions counted
- keyframes.py  per camera: picks an entry's keyframes (first frame with content, most kept DTD tokens, last) and
                closes entries at scene changes and every `chunk_s`
- backfill.py   entries without a caption are captioned later from their keyframes, newest first, when generation
                has spare share; the backlog survives restarts
- when.py       time expressions in questions ("this morning", "10 minutes ago") → time windows
- recall.py     a question → the past entries to recall into its answer (and their citations)
- summary.py    summaries of a period from the entries' captions (map-reduce past the budget), cached per hour

Value types (TimelineEntry, TimelineQuery, …) live in livesight/types.py: the faces use them without importing this
package. This package sits beside memory/ and below the daemon: it imports the ground floor, memory/ (the event log)
and the model contract (model/backend.py) only.
"""
