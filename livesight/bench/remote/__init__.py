"""`livesight bench remote` (feed.py) and the servers it and the tests run: llama.cpp's real OpenAI-compatible server
(llama_server.py) and a small stub that fails on purpose (model_stub.py)."""

from livesight.bench.remote.feed import run

__all__ = ["run"]
