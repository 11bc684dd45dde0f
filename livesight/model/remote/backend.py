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

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from livesight.config import ModelConfig
from livesight.model.backend import EncodedFrame, GenerationResult, ModelInfo
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
        self.system_prompt = cfg.system_prompt

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.info.image_size, TOKEN_PX)

    def encode(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        raise RuntimeError("the openai backend runs no vision encoder here (DTD decides from pixels)")

    def new_context(self) -> None:
        raise RuntimeError("the openai backend keeps no local context (memory/remote_memory.py)")

    def describe(
        self, images: Sequence[np.ndarray], prompt: str, *, max_new_tokens: int, times: Sequence[float] | None = None
    ) -> GenerationResult:
        raise RuntimeError("the openai backend describes on the event loop: describe_jpegs()")

    async def describe_jpegs(
        self, jpegs: Sequence[bytes], labels: Sequence[str], prompt: str, *, intro: str, max_new_tokens: int
    ) -> GenerationResult:
        """`prompt` about a few stored JPEG stills (a past scene's keyframes), sent as images, each after its label
        (its time), as a background request of kind caption. Raises RemoteError."""
        r = await self.remote.generate(
            stills_messages(self.system_prompt, intro, jpegs, labels, prompt),
            kind="caption",
            max_tokens=max_new_tokens,
            images=len(jpegs),
            image_bytes=sum(len(j) for j in jpegs),
        )
        return GenerationResult(r.text, r.prompt_tokens, r.completion_tokens, r.ttft_ms, r.stopped)


def stills_messages(
    system_prompt: str, intro: str, jpegs: Sequence[bytes], labels: Sequence[str], prompt: str
) -> list[dict[str, Any]]:
    """Chat messages: the intro, each JPEG as an image after its label, then the prompt."""
    if len(labels) != len(jpegs):
        raise ValueError(f"{len(labels)} labels for {len(jpegs)} images")
    content: list[dict[str, Any]] = [{"type": "text", "text": intro}]
    for jpeg, label in zip(jpegs, labels, strict=True):
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        content.append({"type": "text", "text": label})
        content.append({"type": "image_url", "image_url": {"url": url}})
    content.append({"type": "text", "text": prompt})
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": content}]


def load_backend(cfg: ModelConfig) -> OpenAIBackend:
    return OpenAIBackend(cfg)
