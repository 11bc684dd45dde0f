"""`livesight bench recall`: needle in a stream (issue 31, DESIGN.md §12 "Measure retrieval without weights").

- stream.py     the world: three parked cameras, hours of synthetic frames, planted events with their exact truth
                (camera, start, end, what) and hard cases (first/last minute, two close together, alone in a long
                still stretch, out of a fade to black)
- palette.py    what can be planted (coloured shapes, text cards): drawn by the stream, read back by the oracle
- oracle.py     the oracle describer: captions an entry from its stored keyframes' pixels (never the truth table)
- feed.py       the stream through the real parts on its own clock: cut tap, sampler, DTD, the tiny model's vision
                encoder, the scene detector, timeline/keyframes.py, the TimelineStore (SQLite + JPEG files)
- questions.py  questions with known answers (half with a time expression) and how an answer is scored
- ttft.py       time to first token with 2 h of history against 1 min, side by side, recall included
- run.py        the benchmark: figures, goals, JSON, plot and docs/bench/recall.md
"""
