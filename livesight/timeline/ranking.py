"""BM25 of the timeline's candidates, in Python, with the corpus statistics cached.

Why not SQLite's `bm25()`: it counts every query term's documents on each call (a walk of the term's whole doclist:
~20 ms for a word found in a sixth of a million rows, per term, per query). The statistics change slowly, so they are
cached here: document frequencies per term for DF_TTL_S (LRU, at most MAX_TERMS_CACHED), the row count and average
length for STATS_TTL_S. The score is FTS5's own formula (k1 = 1.2, b = 0.75, column weights as given, document length
over all columns); `score` is higher-is-better (FTS5's bm25() is its negative).

The tokenizer matches the index's (`unicode61 remove_diacritics 2`): lower case, diacritics folded, split on anything
that is not a letter or a digit.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

K1 = 1.2
B = 0.75
DF_TTL_S = 600.0
STATS_TTL_S = 300.0
MAX_TERMS_CACHED = 4096
SAMPLE_ROWS = 2000  # newest rows whose lengths estimate the average document length
SMALL_ROWS = 50_000  # below: counted on every search, no cached document frequencies

_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without diacritics (as unicode61 remove_diacritics folds them)."""
    text = text.lower()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tokens(text: str | None) -> list[str]:
    return _WORD.findall(fold(text)) if text else []


def prepare(conn: sqlite3.Connection) -> None:
    """The index's vocabulary as a table (document counts per term), on a reader's own connection (temp schema)."""
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.timeline_vocab USING fts5vocab(main, timeline_fts, row)")


class CorpusStats:
    """Cached N, average document length and document frequencies of one timeline (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._df: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._stats: tuple[float, int, float, int] | None = None  # (when, N, avgdl, N when avgdl was sampled)

    def corpus(self, conn: sqlite3.Connection) -> tuple[int, float]:
        """(N, average document length). A small timeline (under SMALL_ROWS) is counted on every call (cheap, and
        its counts change fast relative to its size); the average is sampled again when N doubled or went stale."""
        now = time.monotonic()
        with self._lock:
            st = self._stats
        if st is not None and now - st[0] <= STATS_TTL_S and st[1] >= SMALL_ROWS:
            return st[1], st[2]
        (n,) = conn.execute("SELECT count(*) FROM timeline").fetchone()
        n = int(n)
        if st is not None and now - st[0] <= STATS_TTL_S and n <= 2 * max(st[3], 1):
            avgdl, sampled_at = st[2], st[3]
        else:
            rows = conn.execute(
                "SELECT caption, answers, watches FROM timeline ORDER BY rowid DESC LIMIT ?", (SAMPLE_ROWS,)
            ).fetchall()
            total = sum(len(tokens(c)) + len(tokens(a)) + len(tokens(w)) for c, a, w in rows)
            avgdl, sampled_at = (max(1.0, total / len(rows)) if rows else 1.0), n
        with self._lock:
            self._stats = (
                now if st is None or n != st[1] or now - st[0] > STATS_TTL_S else st[0],
                n,
                avgdl,
                sampled_at,
            )
        return n, avgdl

    def df(self, conn: sqlite3.Connection, terms: Sequence[str], *, fresh: bool = False) -> dict[str, int]:
        """Documents holding each term; `fresh`: counted now (a small timeline), not from the cache."""
        now = time.monotonic()
        out: dict[str, int] = {}
        missing = []
        with self._lock:
            for t in terms:
                hit = None if fresh else self._df.get(t)
                if hit is not None and now - hit[0] <= DF_TTL_S:
                    out[t] = hit[1]
                    self._df.move_to_end(t)
                else:
                    missing.append(t)
        if missing:
            for t in missing:
                row = conn.execute("SELECT doc FROM temp.timeline_vocab WHERE term = ?", (t,)).fetchone()
                out[t] = int(row[0]) if row else 0
            with self._lock:
                for t in missing:
                    self._df[t] = (now, out[t])
                while len(self._df) > MAX_TERMS_CACHED:
                    self._df.popitem(last=False)
        return out


def score(
    terms: Sequence[str],
    columns: Sequence[str | None],
    weights: Sequence[float],
    df: dict[str, int],
    n: int,
    avgdl: float,
) -> float:
    """FTS5's BM25 of one row (its column texts), higher is better."""
    freqs = dict.fromkeys(terms, 0.0)
    dl = 0
    for w, text in zip(weights, columns, strict=True):
        if not text:
            continue
        toks = _WORD.findall(text.lower() if text.isascii() else fold(text))
        dl += len(toks)
        for term in terms:
            c = toks.count(term)
            if c:
                freqs[term] += w * c
    s = 0.0
    norm = K1 * (1.0 - B + B * dl / avgdl)
    for term, freq in freqs.items():
        if freq:
            d = df.get(term, 0)
            s += max(math.log((n - d + 0.5) / (d + 0.5)), 1e-6) * (freq * (K1 + 1.0)) / (freq + norm)
    return s
