"""The KV context: our prompt building equals the model's own standard processing; dropped tokens keep their
original M-RoPE ids; incremental prefill equals one-shot; a question leaves the cache unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesight.model.vision_input import patchify
from tests.model.conftest import square_frame

SYSTEM = "You are livesight, an assistant watching a live video stream. Answer briefly about what you see."
QUESTION = "What is happening?"


def frames_and_encodings(backend, n: int = 4):
    frames = [backend.prepare(square_frame(40 + 30 * i, 100 + 10 * i)) for i in range(n)]
    return frames, backend.encode(frames)


def reference_inputs(backend, frames: list[np.ndarray], dt: float):
    """The model's standard video path: <|video_pad|> tokens, pixel_values_videos, get_rope_index positions."""
    model, tok = backend.model, backend.tokenizer
    pixels, grid = patchify(frames)
    t = len(frames)
    video_grid = torch.tensor([[t, int(grid[0, 1]), int(grid[0, 2])]])
    n_vis = t * int(grid[0, 1]) * int(grid[0, 2]) // 4
    ids = (
        tok(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|>").input_ids
        + [model.config.video_token_id] * n_vis
        + tok(f"<|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n").input_ids
    )
    input_ids = torch.tensor([ids])
    mm = (input_ids == model.config.video_token_id).int() * 2  # 0 text, 1 image, 2 video
    return input_ids, mm, pixels, video_grid, torch.tensor([dt])


@torch.inference_mode()
def test_nothing_dropped_equals_standard_processing(backend) -> None:
    dt = 0.5
    frames, enc = frames_and_encodings(backend)
    input_ids, mm, pixels, video_grid, spg = reference_inputs(backend, frames, dt)
    ref = backend.model(
        input_ids=input_ids,
        pixel_values_videos=pixels,
        video_grid_thw=video_grid,
        second_per_grid_ts=spg,
        mm_token_type_ids=mm,
    ).logits[0, -1]

    ctx = backend.new_context()
    for i, e in enumerate(enc):
        ctx.append_frame(e.tokens, i * dt, e.grid_hw, np.ones(e.tokens.shape[0], bool))
    ctx.append_text(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    ours = ctx.last_logits()
    assert ctx.n_tokens == input_ids.shape[1]
    assert float((ours - ref).abs().max()) < 1e-4


@torch.inference_mode()
def test_dropped_tokens_keep_their_original_positions(backend) -> None:
    """Dropping = indexing the standard embeddings AND the standard position ids with the same mask."""
    dt = 0.5
    model = backend.model
    frames, enc = frames_and_encodings(backend)
    input_ids, mm, pixels, video_grid, spg = reference_inputs(backend, frames, dt)
    pos, _ = model.model.get_rope_index(input_ids, mm, video_grid_thw=video_grid, second_per_grid_ts=spg)
    embeds = model.model.get_input_embeddings()(input_ids)
    feats = torch.cat(model.model.get_video_features(pixels, video_grid).pooler_output)
    vis = (input_ids[0] == model.config.video_token_id).nonzero()[:, 0]
    embeds[0, vis] = feats

    rng = np.random.default_rng(0)
    keeps = [np.ones(enc[0].tokens.shape[0], bool)] + [rng.random(e.tokens.shape[0]) < 0.3 for e in enc[1:]]
    mask = torch.ones(input_ids.shape[1], dtype=torch.bool)
    mask[vis] = torch.from_numpy(np.concatenate(keeps))
    ref = model(inputs_embeds=embeds[:, mask], position_ids=pos[:, :, mask]).logits[0, -1]

    ctx = backend.new_context()
    for i, (e, k) in enumerate(zip(enc, keeps, strict=True)):
        assert ctx.append_frame(e.tokens, i * dt, e.grid_hw, k) == int(k.sum())
    ctx.append_text(f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert ctx.n_tokens == int(mask.sum())
    assert float((ctx.last_logits() - ref).abs().max()) < 1e-4


def test_incremental_equals_one_shot_and_questions_leave_no_trace(backend) -> None:
    _, enc = frames_and_encodings(backend, 6)
    keeps = [np.ones(256, bool)] + [np.arange(256) % (i + 2) == 0 for i in range(5)]
    inc = backend.new_context()
    answers = []
    for i, (e, k) in enumerate(zip(enc, keeps, strict=True)):
        inc.append_frame(e.tokens, i * 0.5, e.grid_hw, k)
        before = (inc.n_tokens, inc.max_position)
        answers.append(inc.generate(QUESTION, max_new_tokens=6))
        assert (inc.n_tokens, inc.max_position) == before
    # one shot: everything prefilled at once into a fresh context
    one = backend.new_context()
    toks = torch.cat([e.tokens[torch.from_numpy(np.flatnonzero(k))] for e, k in zip(enc, keeps, strict=True)])
    p0 = one.vision_positions(0.0, enc[0].grid_hw)  # opens the vision segment at s: ids (s + t, s + h, s + w)
    parts = []
    for i, k in enumerate(keeps):
        p = p0.clone()
        p[0] += i  # frames 0.5 s apart at 2 temporal ids per second
        parts.append(p[:, torch.from_numpy(np.flatnonzero(k))])
    pos = torch.cat(parts, dim=1)
    one.append_embeddings(toks, pos)
    assert one.n_tokens == inc.n_tokens
    assert float((one.last_logits() - inc.last_logits()).abs().max()) < 1e-4
    final = one.generate(QUESTION, max_new_tokens=6)
    assert final.text == answers[-1].text and final.completion_tokens == answers[-1].completion_tokens
    # the batched form the memory's rebuild uses: same tokens, positions and logits in one forward pass
    batched = backend.new_context()
    n = batched.append_frames(
        [(e.tokens, i * 0.5, e.grid_hw, k) for i, (e, k) in enumerate(zip(enc, keeps, strict=True))]
    )
    assert n == toks.shape[0] and batched.n_tokens == inc.n_tokens and batched.max_position == inc.max_position
    assert float((batched.last_logits() - inc.last_logits()).abs().max()) < 1e-4


def test_generate_streams_deltas_and_stops_when_asked(backend) -> None:
    _, enc = frames_and_encodings(backend, 2)
    ctx = backend.new_context()
    for i, e in enumerate(enc):
        ctx.append_frame(e.tokens, float(i), e.grid_hw, np.ones(256, bool))
    deltas: list[str] = []
    r = ctx.generate(QUESTION, max_new_tokens=10, on_text=deltas.append)
    assert "".join(deltas) == r.text and r.completion_tokens > 0 and r.ttft_ms > 0 and not r.stopped
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    r2 = ctx.generate(QUESTION, max_new_tokens=50, should_stop=stop_after_three)
    assert r2.stopped and r2.completion_tokens == 3


def test_generate_as_of_a_mark_answers_as_the_context_stood_then(backend) -> None:
    """A caption generated late: frames appended after the mark are masked out and the answer's positions continue
    from the mark's, so every step's logits are those of a context that never held the later frames."""
    _, enc = frames_and_encodings(backend, 5)
    keep = np.ones(256, bool)
    then, now = backend.new_context(), backend.new_context()
    for i, e in enumerate(enc[:3]):
        then.append_frame(e.tokens, i * 0.5, e.grid_hw, keep)
        now.append_frame(e.tokens, i * 0.5, e.grid_hw, keep)
    mark = now.mark()
    for i, e in enumerate(enc[3:], 3):
        now.append_frame(e.tokens, i * 0.5, e.grid_hw, keep)
    before = (now.n_tokens, now.max_position)

    def logits(ctx, **kw) -> tuple[str, torch.Tensor]:
        seen: list[torch.Tensor] = []
        hook = backend.model.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out[0].float().clone()))
        try:
            r = ctx.generate(QUESTION, max_new_tokens=6, **kw)
        finally:
            hook.remove()
        return r.text, torch.stack(seen)

    text_then, want = logits(then)
    text_as_of, got = logits(now, as_of=mark)
    _, unmasked = logits(now)
    assert text_as_of == text_then and float((got - want).abs().max()) < 1e-4
    assert float((unmasked[0] - want[0]).abs().max()) > 1e-3  # the later frames do change the answer
    assert (now.n_tokens, now.max_position) == before  # and the context is left as it was
    with pytest.raises(ValueError, match="another context"):
        then.generate(QUESTION, max_new_tokens=1, as_of=mark)
