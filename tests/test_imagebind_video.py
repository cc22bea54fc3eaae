"""ImageBind's video reading at tiny sizes: clips and crops as the official transform takes them, the official key
names, the stem's agreement with the CLIP tower on a repeated frame, and an assembled model that reads video with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codi2_sdk import Conversation, ModelError, Video
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import ImageBindAudioEncoder, ImageBindVideoEncoder, assemble, load_imagebind_video
from codi2_sdk.model.imagebind.audio import official_key
from codi2_sdk.model.imagebind.video import official_video_key, stem_matches_image_tower

VIDEO = {"embed_dim": 32, "num_blocks": 1, "num_heads": 4, "out_dim": 32, "image_size": 32, "patch_size": 8}
AUDIO = {"embed_dim": 32, "num_blocks": 1, "num_heads": 4, "out_dim": 32, "num_mel_bins": 32, "target_length": 48}


def halves(count: int = 40, fps: float = 4.0) -> Video:
    """``count`` landscape frames (64 x 32): the left half red, the right half blue, the frame index in green."""
    frames = np.zeros((count, 32, 64, 3), np.uint8)
    frames[:, :, :32, 0] = 255
    frames[:, :, 32:, 2] = 255
    frames[:, :, :, 1] = np.arange(count, dtype=np.uint8)[:, None, None] * 5
    return Video.from_frames(frames, fps=fps)


def test_fifteen_views_of_two_frames_as_the_official_transform_takes_them() -> None:
    tower = ImageBindVideoEncoder(**VIDEO)
    assert tower.clip_frames(40, 4.0) == [[0, 7], [8, 15], [16, 23], [24, 31], [32, 39]]  # 10 s: five 2 s clips
    assert tower.clip_frames(4, 4.0) == [[0, 3]] * 5  # shorter than a clip: the whole video, each time
    views = tower.preprocess([halves()])
    assert views.shape == (1, 15, 3, 2, 32, 32)
    red = (1.0 - 0.48145466) / 0.26862954  # full red, normalised
    left, centre, right = views[0, 0, 0], views[0, 1, 0], views[0, 2, 0]  # the first clip's crops, red channel
    assert left.min() > 0.95 * red  # the left crop is all red (H.264 keeps it within a few levels)
    assert right.max() < 0  # the right crop all blue
    assert centre[..., :8].mean() > 0 > centre[..., -8:].mean()
    green = views[0, ::3, 1, :, 0, 0]  # each clip's two frames, their index in green
    assert (green[:, 1] > green[:, 0]).all() and (green[1:, 0] > green[:-1, 0]).all()


def test_official_keys_load_and_say_what_is_missing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tower = ImageBindVideoEncoder(**VIDEO).eval()
    state = {official_video_key(k): v for k, v in tower.state_dict().items()}
    assert "modality_preprocessors.vision.rgbt_stem.proj.1.weight" in state
    assert "modality_trunks.vision.blocks.0.attn.in_proj_weight" in state and "modality_heads.vision.2.weight" in state
    torch.save(state, tmp_path / "imagebind_huge.pth")
    loaded = load_imagebind_video(tmp_path / "imagebind_huge.pth", **VIDEO)
    views = tower.preprocess([halves(12)])
    with torch.no_grad():
        assert torch.equal(loaded(views), tower(views))
        each = tower.embed_views(views[0])  # every view unit-norm, the video's feature their mean (as ImageBind's)
        assert torch.allclose(each.norm(dim=-1), torch.ones(15), atol=1e-5)
        assert torch.allclose(tower(views)[0, 0], each.mean(dim=0), atol=1e-6)
    torch.save({k: v for k, v in state.items() if "blocks" not in k}, tmp_path / "cut.pth")
    with pytest.raises(ModelError, match=r"lacks ImageBind vision weights: modality_trunks\.vision\.blocks\.0"):
        load_imagebind_video(tmp_path / "cut.pth", **VIDEO)


def test_the_stem_on_a_repeated_frame_is_the_image_towers_kernel_where_its_slices_sum_to_it() -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    clip = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    tower = ImageBindVideoEncoder(**VIDEO)
    assert stem_matches_image_tower(tower, clip) > 0.1  # random: they disagree
    kernel = clip.vision_model.embeddings.patch_embedding.weight.detach()
    with torch.no_grad():
        tower.stem.weight.copy_(torch.stack([0.25 * kernel, 0.75 * kernel], dim=2))  # slices summing to the 2-D kernel
        assert stem_matches_image_tower(tower, clip) < 1e-6
        frame = torch.randn(1, 3, 32, 32)
        repeated = tower.stem(torch.stack([frame, frame], dim=2))[:, :, 0]
        assert torch.allclose(repeated, torch.nn.functional.conv2d(frame, kernel, stride=8), atol=1e-5)


def test_an_assembled_model_reads_video_with_imagebinds_tower_when_the_checkpoint_has_it(tmp_path: Path) -> None:
    from test_assembly import llama_folder

    from codi2_sdk.model import UnCLIPImageDecoder
    from codi2_sdk.testing.twins import tiny_unclip_pipeline

    torch.manual_seed(0)
    state = {official_key(k): v for k, v in ImageBindAudioEncoder(**AUDIO).state_dict().items()}
    state |= {official_video_key(k): v for k, v in ImageBindVideoEncoder(**VIDEO).state_dict().items()}
    torch.save(state, tmp_path / "imagebind_huge.pth")
    UnCLIPImageDecoder(tiny_unclip_pipeline(), prompt_embeds=torch.randn(1, 4, 24)).save_pretrained(tmp_path / "unclip")
    model = assemble(
        llm=llama_folder(tmp_path / "llama"),
        imagebind=tmp_path / "imagebind_huge.pth",
        unclip=tmp_path / "unclip",
        imagebind_args=AUDIO,
        imagebind_video_args=VIDEO,
        feature_dim=32,
    )
    assert isinstance(model.encoders["video"], ImageBindVideoEncoder) and model.config.encoders["video"].kind == (
        "imagebind_video"
    )
    config = {"seed": 0, "text": {"max_new_tokens": 2}}
    first = Conversation(backend=LocalBackend(model)).send(halves(12), "what is this ?", config=config)
    again = LocalBackend.from_pretrained(model.save_pretrained(tmp_path / "codi2"))
    assert isinstance(again.model.encoders["video"], ImageBindVideoEncoder)
    assert Conversation(backend=again).send(halves(12), "what is this ?", config=config) == first
