"""Tiny random twins of the full-scale components, built from the same classes, for tests on a CPU.

Each builder makes a random pipeline of the class the full-scale model loads (the shapes measured to work with
diffusers 0.42 and transformers 5.24), so the real code paths run in seconds: SD-2.1 unCLIP
(:func:`tiny_unclip_pipeline`), AudioLDM2 (:func:`tiny_audioldm2_pipeline`) and Zeroscope
(:func:`tiny_zeroscope_pipeline`); :func:`tiny_audioldm2_decoder` and :func:`tiny_zeroscope_decoder` wrap them
as the SDK's decoders. Nothing is downloaded.
"""

from __future__ import annotations

import string
from typing import Any

import torch

from ..model._libraries import quiet_loading
from ..model.fullscale.audioldm2 import AudioLDM2Decoder
from ..model.fullscale.zeroscope import ZeroscopeVideoDecoder
from ..model.modeling import CoDi2Model

__all__ = [
    "full_scale_twin",
    "tiny_audioldm2_decoder",
    "tiny_audioldm2_pipeline",
    "tiny_llama_tokenizer",
    "tiny_unclip_pipeline",
    "tiny_zeroscope_decoder",
    "tiny_zeroscope_pipeline",
]


_CHARS = list(string.ascii_lowercase + string.digits + string.punctuation)


def _tiny_clip_text(width: int, max_length: int) -> tuple[Any, Any]:
    """CLIP's text tokenizer (characters, no merges) and a tiny ``CLIPTextModel`` of ``width``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *_CHARS, *(c + "</w>" for c in _CHARS)])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return tokenizer, CLIPTextModel(config)


def _tiny_audioldm2_text(t5_dim: int, clap_dim: int) -> dict[str, Any]:
    """AudioLDM2's text side at tiny sizes: CLAP's text tower with RoBERTa's tokenizer, and T5 with its own."""
    from transformers import ClapConfig, ClapModel, RobertaTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    roberta = {
        t: i
        for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", "Ġ", *_CHARS, *("Ġ" + c for c in _CHARS)])
    }
    t5_vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0), *((c, -2.0) for c in _CHARS)]
    t5_vocab += [("▁" + c, -2.5) for c in _CHARS]
    clap = ClapModel(
        ClapConfig(
            text_config={
                "vocab_size": len(roberta),
                "hidden_size": clap_dim,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 2 * clap_dim,
                "max_position_embeddings": 40,
                "projection_dim": clap_dim,
            },
            audio_config={
                "depths": [1, 1],
                "num_attention_heads": [1, 1],
                "hidden_size": clap_dim,
                "patch_embeds_hidden_size": clap_dim,
                "window_size": 4,
                "spec_size": 16,
                "num_mel_bins": 16,
                "projection_dim": clap_dim,
                "enable_fusion": False,
            },
            projection_dim=clap_dim,
        )
    )
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_vocab), d_model=t5_dim, d_ff=37, d_kv=8, num_heads=2, num_layers=1))
    return {
        "text_encoder": clap,
        "tokenizer": RobertaTokenizer(vocab=roberta, merges=[], model_max_length=16),
        "text_encoder_2": t5,
        "tokenizer_2": T5Tokenizer(vocab=t5_vocab, extra_ids=0, model_max_length=16),
    }


@quiet_loading()
def tiny_unclip_pipeline(seed: int = 0) -> Any:
    """SD-2.1 unCLIP's pipeline class with tiny random parts (image embeddings of 32)."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    embed = 32
    vision = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=embed,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
        cross_attention_dim=24,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * embed,  # image embedding + noise-level embedding
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    tokenizer, text_encoder = _tiny_clip_text(width=24, max_length=16)  # as the published folder, with its text side
    pipeline = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        image_encoder=vision,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", prediction_type="v_prediction", timestep_spacing="trailing"
        ),
        vae=vae,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _tiny_vocoder() -> Any:
    """A SpeechT5 HiFi-GAN (AudioLDM2's vocoder class) from 8 mel bins to 16 kHz."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=8,
        sampling_rate=16000,
        upsample_initial_channel=16,
        upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3, 7],
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
        normalize_before=False,
    )
    return SpeechT5HifiGan(config)


@quiet_loading()
def tiny_audioldm2_pipeline(seed: int = 0) -> Any:
    """AudioLDM2's pipeline class with tiny random parts (T5 states of 32, GPT-2 states of 16, 16 kHz)."""
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 32], [None, 16, 32]),
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=1,
        out_channels=1,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
    )
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=100, n_positions=99))
    language_model.config.max_new_tokens = 8
    vocoder = _tiny_vocoder()
    pipeline = AudioLDM2Pipeline(
        vae=vae,
        **_tiny_audioldm2_text(t5_dim=32, clap_dim=16),
        projection_model=AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16),
        language_model=language_model,
        feature_extractor=None,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
        ),
        vocoder=vocoder,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@quiet_loading()
def tiny_zeroscope_pipeline(seed: int = 0) -> Any:
    """Zeroscope's pipeline class (``TextToVideoSDPipeline``, ``UNet3DConditionModel``) with tiny random parts."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=24,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    tokenizer, text_encoder = _tiny_clip_text(width=24, max_length=16)
    pipeline = TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def tiny_audioldm2_decoder(cond_dim: int = 24, seed: int = 0) -> AudioLDM2Decoder:
    """An AudioLDM2 decoder over :func:`tiny_audioldm2_pipeline` (0.064 s clips)."""
    pipeline = tiny_audioldm2_pipeline(seed)
    return AudioLDM2Decoder(pipeline, cond_dim=cond_dim, prompt_tokens=5, audio_length_in_s=0.064, projector_width=32)


def tiny_zeroscope_decoder(cond_dim: int = 24, seed: int = 0) -> ZeroscopeVideoDecoder:
    """A Zeroscope decoder over :func:`tiny_zeroscope_pipeline` (4 frames of 24 x 16: not square, as Zeroscope's 576 x 320)."""
    pipeline = tiny_zeroscope_pipeline(seed)
    return ZeroscopeVideoDecoder(
        pipeline, cond_dim=cond_dim, prompt_tokens=6, num_frames=4, width=24, height=16, fps=4.0, projector_width=32
    )


def tiny_llama_tokenizer(words: list[str]) -> Any:
    """Llama's tokenizer class (byte-pair merges, ``▁`` for spaces) over a tiny vocabulary: printable ASCII
    characters plus a merge path to each of ``words``, with Llama-2-chat's chat template."""
    import string

    from transformers import LlamaTokenizer

    from ..model.prompt import LLAMA2_CHAT_TEMPLATE

    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", "▁"])}
    for char in string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(char, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        piece = "▁"
        for char in word:
            if piece + char not in vocab:
                merges.append((piece, char))
                vocab[piece + char] = len(vocab)
            piece += char
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges)
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return tokenizer


TWIN_WORDS = ["draw", "play", "show", "a", "red", "circle", "moving", "sound", "what", "is", "this", "?", "."]


_TWIN_LLM = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}
_TWIN_AUDIO_TOWER = {
    "embed_dim": 32,
    "num_blocks": 2,
    "num_heads": 4,
    "out_dim": 32,
    "num_mel_bins": 32,
    "target_length": 48,
}


def _twin_llm(tokenizer: Any, shape: dict[str, Any]) -> Any:
    """A random Llama with an untied head, as Llama-2-7b's is."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=0.2,  # logits wide enough for an adapter on a frozen head to fit in a few steps
        **shape,
    )
    return LlamaForCausalLM(config)


@quiet_loading()
def full_scale_twin(seed: int = 0) -> CoDi2Model:
    """A random CoDi-2 of the full-scale classes at tiny sizes: a Llama LLM with Llama-2-chat's template, CLIP-H-style image tower (the
    unCLIP pipeline's own image encoder, shared, as at full scale), ImageBind's audio tower, frame-wise video
    reading, and the unCLIP, AudioLDM2 and Zeroscope pipelines as decoders, all conditioned on 32-d features."""
    from ..config import AudioConfig, GenerationConfig, ImageConfig, VideoConfig
    from ..model.architecture import CoDi2Config, DecoderSpec, EncoderSpec
    from ..model.fullscale.unclip import REFERENCE_NOISE_LEVEL, UnCLIPImageDecoder, norm_pictures
    from ..model.imagebind.audio import ImageBindAudioEncoder
    from ..model.imagebind.image import ImageBindImageEncoder
    from ..model.parts import FrameVideoEncoder
    from ..model.prompt import add_special_tokens

    torch.manual_seed(seed)
    unclip = UnCLIPImageDecoder(tiny_unclip_pipeline(seed), prompt_embeds=torch.randn(1, 4, 24))
    image = ImageBindImageEncoder(unclip.pipeline.image_encoder)
    audio_args = dict(_TWIN_AUDIO_TOWER)
    torch.manual_seed(seed)
    encoders = {
        "image": image,
        "audio": ImageBindAudioEncoder(**audio_args),
        "video": FrameVideoEncoder(image, frames=2),
    }
    decoders: dict[str, Any] = {
        "image": unclip,
        "audio": tiny_audioldm2_decoder(cond_dim=32, seed=seed),
        "video": tiny_zeroscope_decoder(cond_dim=32, seed=seed),
    }
    steps = {"steps": 2, "guidance_scale": 2.0}
    config = CoDi2Config(
        name="codi2-full-scale-twin",
        llm=dict(_TWIN_LLM),
        encoders={
            "image": EncoderSpec(kind="imagebind_image"),
            "audio": EncoderSpec(kind="imagebind_audio", args=audio_args),
            "video": EncoderSpec(kind="frames_video", args={"frames": 2, "image_kind": "imagebind_image"}),
        },
        decoders={m: DecoderSpec(kind=d.kind) for m, d in decoders.items()},
        feature_norms={"image": unclip.measure_embedding_norm(norm_pictures()), "audio": 20.0},
        defaults=GenerationConfig(
            image=ImageConfig(**steps, noise_level=REFERENCE_NOISE_LEVEL),
            audio=AudioConfig(**steps),
            video=VideoConfig(**steps),
        ),
    )
    tokenizer = tiny_llama_tokenizer(TWIN_WORDS)
    add_special_tokens(tokenizer)
    torch.manual_seed(seed)
    return CoDi2Model(config, _twin_llm(tokenizer, config.llm), tokenizer, encoders, decoders).eval()
