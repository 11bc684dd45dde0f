"""Recalled moments in a question (QwenContext.generate(recalled=…)): prefilled after the cached live window and
before the question, at the positions the model's own processing gives an image after a video, and rolled back with
the question — the live window is reused, never prefilled again."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from livesight.model.backend import Recalled, RecalledImage
from tests.model.conftest import square_frame
from tests.model.test_context import QUESTION, frames_and_encodings, reference_inputs

LINES = "Recalled from this camera's timeline:\n[14:03:10–14:05:02] a red van stops at the gate"


def jpeg_of(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return out.getvalue()


def recalled(n_images: int = 2) -> Recalled:
    images = tuple(
        RecalledImage(f"Keyframe at 14:0{3 + i}:40:", jpeg_of(square_frame(60 + 80 * i, 200, hw=(360, 640))))
        for i in range(n_images)
    )
    return Recalled(LINES, images)


@torch.inference_mode()
def test_recalled_images_get_the_models_own_image_positions(backend) -> None:
    """Live video (2 frames) then the recalled lines and one keyframe, then the question: the same last logits as
    the model's standard processing of that sequence (<|video_pad|> and <|image_pad|> slots, get_rope_index)."""
    model, tok = backend.model, backend.tokenizer
    dt = 0.5
    frames, enc = frames_and_encodings(backend, 2)
    rec = recalled(1)
    img_tokens, (gh, gw) = backend.encode_jpeg(rec.images[0].jpeg)

    ctx = backend.new_context()
    for i, e in enumerate(enc):
        ctx.append_frame(e.tokens, i * dt, e.grid_hw, np.ones(e.tokens.shape[0], bool))
    ctx._append_recalled("<|vision_end|>", rec)  # what generate(recalled=…) prefills before the question
    ctx._append_ids(ctx._ids(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n"))
    ours = ctx.last_logits()

    video_ids, _, _pixels, video_grid, spg = reference_inputs(backend, frames, dt)
    head = video_ids[0].tolist()[: -len(tok(f"<|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n").input_ids)]
    ids = (
        head
        + tok(f"<|vision_end|>\n{rec.text}\n").input_ids
        + tok(f"{rec.images[0].label}<|vision_start|>").input_ids
        + [model.config.image_token_id] * (gh * gw)
        + tok("<|vision_end|>\n").input_ids
        + tok(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n").input_ids
    )
    input_ids = torch.tensor([ids])
    mm = (input_ids == model.config.video_token_id).int() * 2 + (input_ids == model.config.image_token_id).int()
    image_grid = torch.tensor([[1, gh * 2, gw * 2]])
    pos, _ = model.model.get_rope_index(
        input_ids, mm, image_grid_thw=image_grid, video_grid_thw=video_grid, second_per_grid_ts=spg
    )
    embeds = model.model.get_input_embeddings()(input_ids)
    vis = (input_ids[0] == model.config.video_token_id).nonzero()[:, 0]
    embeds[0, vis] = torch.cat([e.tokens for e in enc])
    img = (input_ids[0] == model.config.image_token_id).nonzero()[:, 0]
    embeds[0, img] = img_tokens
    ref = model(inputs_embeds=embeds, position_ids=pos).logits[0, -1]
    assert ctx.n_tokens == input_ids.shape[1]
    assert float((ours - ref).abs().max()) < 1e-4


def test_a_recalled_question_reuses_the_live_cache_and_rolls_back(backend) -> None:
    _, enc = frames_and_encodings(backend, 4)
    ctx = backend.new_context()
    for i, e in enumerate(enc):
        ctx.append_frame(e.tokens, i * 0.5, e.grid_hw, np.ones(e.tokens.shape[0], bool))
    live = ctx.n_tokens
    before = (ctx.n_tokens, ctx.max_position, ctx.kv_bytes)
    plain = ctx.generate(QUESTION, max_new_tokens=4)
    prefilled = ctx.prefilled_tokens
    rec = recalled(2)
    out = ctx.generate(QUESTION, max_new_tokens=4, recalled=rec)
    spent = ctx.prefilled_tokens - prefilled
    assert (ctx.n_tokens, ctx.max_position, ctx.kv_bytes) == before  # rolled back with the question
    # only the recalled segment, the question and the answer's tokens were prefilled: never the live window again
    assert spent - out.prompt_tokens in (out.completion_tokens - 1, out.completion_tokens)  # (+ the answer's tokens)
    assert spent < live
    assert out.prompt_tokens > plain.prompt_tokens + 2 * 100  # two keyframes' image tokens and the lines count
    again = ctx.generate(QUESTION, max_new_tokens=4)
    assert again.text == plain.text  # nothing of the recalled segment is left behind
