"""The `openai` backend: an OpenAI-compatible vision server answers (Ollama, vLLM, llama.cpp, LM Studio, a cloud API).

No model runs in this process and nothing here imports torch or transformers: frames are prepared (resized to about
model.image_size² on the 28-px grid) for pixel-mode DTD, which decides which frames carry news; the camera's
memory (memory/remote_memory.py) turns those into images; the remote responder
(daemon/generation/remote_responder.py) sends requests through `RemoteModel` (client.py).

    model:
      backend: openai
      base_url: http://127.0.0.1:11434/v1     # Ollama
      name: qwen2.5vl:7b
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from livesight.config import ModelConfig
from livesight.model.backend import EncodedFrame, ModelInfo
from livesight.model.remote.client import RemoteModel
from livesight.model.vision_input import prepare
from livesight.redact import redact_url

TOKEN_PX = 28  # Qwen2.5-VL-style servers: 14-px patches, 2x2 merge (the image cost estimate assumes it)


class OpenAIBackend:
    def __init__(self, cfg: ModelConfig) -> None:
        assert cfg.name is not None and cfg.base_url is not None
        self.info = ModelInfo(
            name=f"{cfg.name} @ {redact_url(cfg.base_url)}",
            random_weights=False,  # unknown: whatever the server runs
            hidden_size=0,
            image_size=cfg.image_size,
            token_px=TOKEN_PX,
            tokens_per_second=2.0,
            device="remote",
            dtype="n/a",
            vision_encoder=False,
        )
        self.remote = RemoteModel(cfg)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.info.image_size, TOKEN_PX)

    def encode(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        raise RuntimeError("the openai backend runs no vision encoder here (DTD decides from pixels)")

    def new_context(self) -> None:
        raise RuntimeError("the openai backend keeps no local context (memory/remote_memory.py)")


def load_backend(cfg: ModelConfig) -> OpenAIBackend:
    return OpenAIBackend(cfg)
