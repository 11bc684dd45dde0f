"""A small real OpenAI-compatible embeddings server for tests: POST /v1/embeddings on a loopback port (0: a free
one), answering deterministic vectors in which synonyms are close ("automobile" is "car", "puppy" is "dog"): each
word adds 1 to its concept's dimension, or to a dimension chosen by its hash; function words add nothing."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIM = 48
CONCEPTS = {
    **dict.fromkeys(("car", "cars", "automobile", "automobiles", "vehicle", "sedan"), 0),
    **dict.fromkeys(("person", "man", "woman", "pedestrian", "people"), 1),
    **dict.fromkeys(("dog", "dogs", "puppy", "canine"), 2),
    **dict.fromkeys(("door", "doors", "entrance", "gate"), 3),
    **dict.fromkeys(("night", "dark", "darkness"), 4),
}
FUNCTION_WORDS = frozenset(
    ("a", "an", "the", "of", "at", "by", "on", "in", "is", "was", "to", "and", "with", "when", "did", "any", "there")
)


def vector(text: str) -> list[float]:
    v = [0.0] * DIM
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in FUNCTION_WORDS:
            continue
        dim = CONCEPTS.get(w)
        if dim is None:
            dim = 8 + int(hashlib.sha256(w.encode()).hexdigest(), 16) % (DIM - 8)
        v[dim] += 1.0
    if not any(v):
        v[DIM - 1] = 1.0
    return v


class EmbedServer:
    """`with EmbedServer() as srv:` srv.base_url (…/v1); srv.requests, srv.texts (what was asked)."""

    def __init__(self, port: int = 0) -> None:
        self.requests = 0
        self.texts: list[str] = []
        self.models: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/embeddings" or "input" not in body:
                    self._send(404, {"error": {"message": "not found"}})
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                outer.requests += 1
                outer.texts += texts
                outer.models.add(str(body.get("model")))
                data = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(texts)]
                usage = {"prompt_tokens": 0, "total_tokens": 0}
                self._send(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})

            def _send(self, status: int, obj: Any) -> None:
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="embed-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> EmbedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)
