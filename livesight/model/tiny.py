"""The `tiny-random` preset: a real Qwen2.5-VL architecture at toy size, with random weights from a fixed seed.

Same code path as real checkpoints (Qwen2_5_VLForConditionalGeneration), so cost, plumbing, M-RoPE positions,
DTD and the KV cache are exercised for real; only the answers are meaningless text.
"""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from livesight.model.tokenizer import FIRST_SPECIAL_ID, SPECIAL_TOKENS, VOCAB_SIZE

_ID = {t: FIRST_SPECIAL_ID + i for i, t in enumerate(SPECIAL_TOKENS)}


def tiny_config() -> Qwen2_5_VLConfig:
    # text: 2 layers, hidden 128, 4 heads (head_dim 32), 2 KV heads; mrope_section sums to head_dim / 2 = 16
    # vision: depth 2, hidden 64, 14-px patches, 2x2 merge → out_hidden_size = text hidden (128)
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            "tie_word_embeddings": False,
            "bos_token_id": _ID["<|endoftext|>"],
            "eos_token_id": _ID["<|im_end|>"],
            "pad_token_id": _ID["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 128,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        image_token_id=_ID["<|image_pad|>"],
        video_token_id=_ID["<|video_pad|>"],
        vision_start_token_id=_ID["<|vision_start|>"],
        vision_end_token_id=_ID["<|vision_end|>"],
    )


def build_tiny_model(seed: int = 0) -> Qwen2_5_VLForConditionalGeneration:
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Qwen2_5_VLForConditionalGeneration(tiny_config())
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()
