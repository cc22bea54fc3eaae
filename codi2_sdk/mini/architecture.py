"""The shape of codi2-mini: a CoDi2Config at small scale, the same architecture as the full model."""

from __future__ import annotations

from typing import Any

from ..config import AudioConfig, GenerationConfig, ImageConfig, TextConfig, VideoConfig
from ..model.architecture import CoDi2Config, DecoderSpec, EncoderSpec, LoraSpec, latent_decoder_args
from .clips import CLIP_FPS, CLIP_FRAMES
from .world import IMAGE_SIZE, SAMPLE_RATE

__all__ = ["FIRST_IMAGE_DECODER", "MEL", "mini_config"]

WIDTH = 128
"""Width of the aligned feature space (encoders' output, decoders' conditioning)."""

MEL: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": 1024,
    "hop_length": 256,
    "n_mels": 64,
    "frames": 64,
    "f_max": 4000.0,
}
"""The log-mel front-end shared by the audio encoder and decoder: 64 x 64 for about one second."""


def _latent_decoder(in_channels: int, extra: dict[str, Any], *, downsampling: int = 8) -> dict[str, Any]:
    fine = downsampling == 4
    args = latent_decoder_args(
        cond_dim=WIDTH,
        in_channels=in_channels,
        sample_size=IMAGE_SIZE,
        vae_channels=[16, 32, 64] if fine else [16, 32, 64, 64],
        # 8x8x16: a 16-channel latent keeps small shapes that a 4-channel one blurs; 16x16x8 keeps small marks
        latent_channels=8 if fine else 16,
        vae_groups=8,
        unet_channels=[32, 64, 128] if fine else [64, 128],
        unet_groups=16,
        head_dim=32,
        mid_attention=False,
    )
    return {**args, **extra}


FIRST_IMAGE_DECODER: dict[str, Any] = _latent_decoder(3, {})
"""The image decoder codi2-mini was first trained with (8x8x16 latents). The video decoder works over its
autoencoder's per-frame latents; the image decoder now has 16x16x8 latents (``vae-fine``, ``unet-fine``)."""


IMAGE_ENCODER: dict[str, Any] = {"image_size": IMAGE_SIZE, "width": WIDTH, "channels": [32, 64, 128], "grid": 2}


def _video_decoder() -> dict[str, Any]:
    """Zeroscope's design at small scale: a UNet3D over the image decoder's per-frame latents, conditioned on
    the clip's start and end features (two cross-attention tokens)."""
    image = FIRST_IMAGE_DECODER
    return {
        "cond_dim": 2 * WIDTH,
        "vae": image["vae"],
        "unet": {
            "sample_size": image["unet"]["sample_size"],
            # the latent's channels, then each frame's conditioning vector laid out as 8 x 8 maps
            "in_channels": image["unet"]["in_channels"] + WIDTH // image["unet"]["sample_size"] ** 2,
            "out_channels": image["unet"]["out_channels"],
            "down_block_types": ["DownBlock3D", "CrossAttnDownBlock3D"],
            "up_block_types": ["CrossAttnUpBlock3D", "UpBlock3D"],
            "block_out_channels": [32, 64],
            "layers_per_block": 1,
            "norm_num_groups": 16,
            "attention_head_dim": 16,
            "cross_attention_dim": WIDTH,
        },
        "scheduler": image["scheduler"],
        "frames": CLIP_FRAMES,
        "fps": CLIP_FPS,
    }


PROMPT_EXAMPLES = [
    "draw a small red circle on the left.",
    "play two sine beeps at mi.",
    "what is this?",
    "what do you hear?",
    "what does it sound like?",
    "what does it look like?",
    "make it blue.",
    "turn it into a square.",
    "move it to the right.",
    "make it three beeps.",
    "change the note to sol.",
    "draw a large green triangle in the center and play its sound.",
    "show a small red circle moving to the right.",
    "show a blue square growing.",
    "what happens?",
    "make it move to the left.",
    "make it grow.",
    "draw this object large on the right.",
]
"""Prompts of each kind codi2-mini was trained on (its grammar, by example)."""


def mini_config() -> CoDi2Config:
    """codi2-mini's configuration (before training fills in the feature norms)."""
    return CoDi2Config(
        name="codi2-mini",
        llm={
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 512,
        },
        encoders={
            # with a texture branch: the marks of subjects (see CNNImageEncoder)
            "image": EncoderSpec(kind="cnn_image", args={**IMAGE_ENCODER, "detail_channels": 32}),
            "audio": EncoderSpec(kind="cnn_audio", args={**MEL, "width": WIDTH, "channels": [32, 64, 128], "grid": 2}),
            # the image encoder on the clip's first and last frames, side by side: where it starts and ends
            "video": EncoderSpec(
                kind="frames_video", args={"image_kind": "cnn_image", "frames": 2, "segments": 2, **IMAGE_ENCODER}
            ),
        },
        decoders={
            "image": DecoderSpec(kind="latent_image", args=_latent_decoder(3, {}, downsampling=4)),
            "audio": DecoderSpec(kind="latent_audio", args=_latent_decoder(1, {**MEL, "griffin_lim_iters": 32})),
            "video": DecoderSpec(kind="latent_video", args=_video_decoder()),
        },
        lora=None,
        closed_vocabulary=True,
        prefill_block=16,  # prompts of 20 to 250 tokens: examples and earlier turns reused in blocks of 16
        prompt_examples=PROMPT_EXAMPLES,
        defaults=GenerationConfig(
            text=TextConfig(max_new_tokens=64),
            # best of 4 clips by the model's own encoder: held-out text_to_video 0.86 -> 0.92 at 50 cases. Pictures:
            # best of 4 raised subject similarity but lost asked attributes (subjects 0.98 / 0.94 -> 0.94 / 0.92,
            # instructed image edits 1.00 -> 0.96; docs/mini.md), and sounds were right already: one draw each
            image=ImageConfig(steps=25, guidance_scale=3.0, candidates=1),
            audio=AudioConfig(steps=25, guidance_scale=3.0, candidates=1),
            video=VideoConfig(steps=25, guidance_scale=3.0, candidates=4),
        ),
    )


LORA = LoraSpec(r=8, alpha=16, dropout=0.0)
"""The adapter the LoRA stage trains."""
