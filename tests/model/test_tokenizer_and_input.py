"""The offline Qwen tokenizer and our vectorised vision input match the reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from livesight.model.tokenizer import qwen_tokenizer
from livesight.model.vision_input import patchify, prepare, target_size


def test_tokenizer_matches_qwen_ids() -> None:
    tok = qwen_tokenizer()
    assert tok("<|im_start|>user\n", add_special_tokens=False).input_ids == [151644, 872, 198]
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    }
    assert ids == {
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
    }
    text = "héllo 世界, 12 cats"
    assert tok.decode(tok(text).input_ids) == text


@pytest.mark.parametrize(("h", "w"), [(448, 448), (480, 640), (240, 320), (1080, 1920), (100, 30)])
def test_prepare_keeps_aspect_and_multiples_of_28(h: int, w: int) -> None:
    th, tw = target_size(h, w, 448)
    assert th % 28 == 0 and tw % 28 == 0
    assert abs(th * tw - 448 * 448) / (448 * 448) < 0.2 or min(th, tw) == 28
    assert abs(th / tw - h / w) / (h / w) < 0.25 or min(th, tw) == 28
    out = prepare(np.zeros((h, w, 3), np.uint8), 448)
    assert out.shape == (th, tw, 3) and out.flags.writeable


def test_prepare_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="uint8"):
        prepare(np.zeros((10, 10), np.uint8), 448)


def test_patchify_equals_the_pil_image_processor() -> None:
    rng = np.random.default_rng(0)
    frames = [prepare((rng.random(s) * 255).astype(np.uint8), 448) for s in [(480, 640, 3), (448, 448, 3)]]
    ref = Qwen2VLImageProcessorPil()(images=frames, return_tensors="pt")
    pixels, grid = patchify(frames)
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    assert pixels.shape == ref["pixel_values"].shape
    assert float((pixels - ref["pixel_values"]).abs().max()) < 1e-5


def test_encode_gives_one_token_per_28px(backend) -> None:
    frames = [backend.prepare(np.zeros((448, 448, 3), np.uint8)), backend.prepare(np.zeros((480, 640, 3), np.uint8))]
    enc = backend.encode(frames)
    assert enc[0].grid_hw == (16, 16) and enc[0].tokens.shape == (256, backend.info.hidden_size)
    gh, gw = enc[1].grid_hw
    assert enc[1].tokens.shape == (gh * gw, backend.info.hidden_size) and (gh, gw) == (14, 18)
    # batched encoding = one by one (the vision encoder attends within a frame only)
    alone = backend.encode(frames[1:])[0]
    assert float((alone.tokens - enc[1].tokens).abs().max()) < 1e-4


def test_still_patch_embedding_equals_the_models_conv3d(backend) -> None:
    """Frames are encoded once per patch (patchify_still) through StillPatchEmbed: the same embeddings as the model's
    own Conv3d on the processor's layout (the frame in both temporal slots), and the full layout still works."""
    from livesight.model.still_patches import StillPatchEmbed, patchify_still

    embed = backend.model.model.visual.patch_embed
    assert isinstance(embed, StillPatchEmbed)
    rng = np.random.default_rng(1)
    frames = [prepare((rng.random((360, 640, 3)) * 255).astype(np.uint8), 448)]
    full, grid = patchify(frames)
    still, grid_still = patchify_still(frames)
    assert grid.tolist() == grid_still.tolist() and still.shape[1] * 2 == full.shape[1]
    w = embed.proj.weight
    conv = torch.nn.functional.conv3d(full.view(-1, 3, 2, 14, 14), w, stride=w.shape[2:]).view(full.shape[0], -1)
    with torch.inference_mode():
        assert float((embed(full) - conv).abs().max()) < 1e-5
        assert float((embed(still) - conv).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="patches of 7 values"):
        embed(torch.zeros(2, 7))


def test_patchify_still_is_patchify_with_one_temporal_slot() -> None:
    from livesight.model.still_patches import patchify_still

    rng = np.random.default_rng(2)
    frames = [prepare((rng.random(s) * 255).astype(np.uint8), 448) for s in [(360, 640, 3), (448, 448, 3)]]
    ref, grid = patchify(frames, temporal_patch_size=1)
    got, grid2 = patchify_still(frames)
    assert grid.tolist() == grid2.tolist() and got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-5
