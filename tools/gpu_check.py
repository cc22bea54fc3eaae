"""Speed and memory of the full-scale CoDi-2 architecture on one GPU, with random weights (nothing downloaded).

Builds each part at its published size in bf16 and prints, as JSON lines:

- the LLM (Llama-2-7b shape, 32 layers x 4096, the media tags added, the paper's rank-128 LoRA): prefill tokens/s
  on a prompt of ``--prefill-tokens`` (two pictures' 257 feature tokens in it), and decode ms/token at batch 1,
  with the adapter beside the weights (as trained) and merged into them (as served);
- the encoders: ImageBind-H's image tower (OpenCLIP ViT-H/14) and audio tower, ms per item;
- each decoder at the SDK's full-scale defaults (``FULL_SCALE_DEFAULTS``: unCLIP 50 DDIM steps at 768 px,
  AudioLDM2 200 steps for 10.24 s, Zeroscope 50 steps for 24 frames of 320 px), all with classifier-free
  guidance (the denoiser runs on a batch of 2): seconds per medium, through the VAE (and vocoder);
- peak GPU memory after each part.

The denoiser shapes follow the published configs of SD-2.1 unCLIP, AudioLDM2 and Zeroscope as far as they are
documented; AudioLDM2's UNet is built from its conversion settings (128 channels x (1, 2, 3, 5), T5 and GPT-2
cross-attention), so its figure is close to, not exactly, the published model's.

``--sdk`` times the SDK's own path instead of bare modules: it builds the five public components' folders at their
published sizes with random weights (or reads real ones with ``--folders DIR``), ``assemble``s them in bf16 on the
GPU, answers a ``Conversation`` turn for each medium (text ms/token; seconds per picture, clip and video at the
full-scale defaults, each beside the same diffusers pipeline call made directly: ``ratio``) and runs
``--train-steps`` steps of each alignment stage as docs/training.md's recipe does (its batch per GPU, gradient
checkpointing, bf16 throughout; seconds per step, peak memory, and each recipe stage's GPU-hours projected on 8
cards: ``recipe_gpu_hours``). ``--compile`` adds decoding
compiled over a static cache, against the bandwidth floor (the LLM's weights read once at the card's published
bandwidth); ``--memory low`` assembles in the low-memory mode (LLM in int8, decoders offloaded) and reports each
turn's peak memory; ``--compile-decoders`` / ``--channels-last`` answer the media turns again with the UNets
compiled / in channels-last layout and print each medium's fast / plain ratio. Each of these skips training.
``--all-modes`` builds the folders once and runs three passes (default with training; low memory; fast: every speed
switch), each line naming its mode: the one call to make when a GPU is lent for a few minutes. ``--deadline-s``
starts no part after that many seconds (a line names each part skipped), so a call under a time limit ends with
what it measured, the parts in the order of what matters most; ``--scratch DIR`` keeps the built folders in DIR
for a later call to reuse.

``--tiny`` runs the same code at tiny sizes (on CPU in the tests). Usage::

    python tools/gpu_check.py                 # on a GPU machine, about 3-6 minutes on one H100
    python tools/gpu_check.py --only llm,unclip
    python tools/gpu_check.py --sdk           # the SDK's own path (full sizes: not yet run on a GPU)
    python tools/gpu_check.py --sdk --compile # ... and decode compiled, against the card's bandwidth floor
    python tools/gpu_check.py --sdk --memory low  # ... assembled in the low-memory mode (peak memory per turn)
    python tools/gpu_check.py --sdk --compile-decoders --channels-last  # ... media again with faster UNets
    python tools/gpu_check.py --sdk --all-modes   # default, low-memory and fast passes over one folder build
    python tools/gpu_check.py --sdk --all-modes --media-steps 25 --deadline-s 420 --scratch /tmp/codi2-folders
    python tools/gpu_check.py --sdk --tiny --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

PARTS = ("llm", "encoders", "unclip", "audioldm2", "zeroscope")

FULL: dict[str, Any] = {
    "llm": {
        "vocab_size": 32000 + 11,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
    },
    "lora_r": 128,
    "clip": {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "projection_dim": 1024,
    },
    "imagebind_audio": {},
    "imagebind_video": {},
    "unclip_unet": {
        "sample_size": 96,
        "block_out_channels": (320, 640, 1280, 1280),
        "attention_head_dim": (5, 10, 20, 20),
        "cross_attention_dim": 1024,
        "projection_class_embeddings_input_dim": 2048,
        "layers_per_block": 2,
    },
    "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2},
    "image_px": 768,
    "audioldm2_unet": {
        "block_out_channels": (128, 256, 384, 640),
        "cross_attention_dim": ([None, 768, 1024],) * 4,
        "layers_per_block": 2,
        "attention_head_dim": 8,
        "in_channels": 8,
    },
    "audio_vae": {"block_out_channels": (128, 256, 512), "layers_per_block": 2},
    "mel": (1024, 64),
    "vocoder": {
        "model_in_dim": 64,
        "upsample_initial_channel": 1024,
        "upsample_rates": [5, 4, 2, 2, 2],
        "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    },
    "video_unet": {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024, "attention_head_dim": 64},
    "video": (24, 320),
    "steps": {"unclip": 50, "audioldm2": 200, "zeroscope": 50},
    "text_tokens": 77,
}

TINY: dict[str, Any] = {
    "llm": {
        "vocab_size": 120,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 1024,
    },
    "lora_r": 8,
    "clip": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
        "projection_dim": 32,
    },
    "imagebind_audio": {"embed_dim": 32, "num_blocks": 1, "num_heads": 4, "out_dim": 32},
    "imagebind_video": {
        "embed_dim": 32,
        "num_blocks": 1,
        "num_heads": 4,
        "out_dim": 32,
        "image_size": 32,
        "patch_size": 8,
    },
    "unclip_unet": {
        "sample_size": 8,
        "block_out_channels": (16, 32, 32, 32),
        "attention_head_dim": 4,
        "cross_attention_dim": 32,
        "projection_class_embeddings_input_dim": 64,
        "layers_per_block": 1,
        "norm_num_groups": 8,
    },
    "vae": {"block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
    "image_px": 64,
    "audioldm2_unet": {
        "block_out_channels": (16, 32),
        "cross_attention_dim": ([None, 16, 32],) * 2,
        "layers_per_block": 1,
        "attention_head_dim": 4,
        "in_channels": 8,
        "norm_num_groups": 8,
    },
    "audio_vae": {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4},
    "mel": (16, 16),
    "vocoder": {
        "model_in_dim": 16,
        "upsample_initial_channel": 16,
        "upsample_rates": [2, 2],
        "upsample_kernel_sizes": [4, 4],
    },
    "video_unet": {
        "block_out_channels": (8, 16),
        "cross_attention_dim": 32,
        "attention_head_dim": 4,
        "norm_num_groups": 4,
        "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"),
        "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
        "layers_per_block": 1,
    },
    "video": (4, 32),
    "steps": {"unclip": 2, "audioldm2": 2, "zeroscope": 2},
    "text_tokens": 8,
}


class Check:
    """Times parts on one device and prints each result as a JSON line."""

    def __init__(self, device: str, dtype: Any, sizes: dict[str, Any], deadline_s: float | None = None) -> None:
        import torch

        self.torch = torch
        self.began = time.perf_counter()
        self.deadline_s = deadline_s
        """No part starts after this many seconds from the start (``--deadline-s``); ``None``: no limit."""
        self.device = torch.device(device)
        self.dtype = dtype
        self.sizes = sizes
        self.mode: str | None = None
        """Named on every line while set (``--all-modes`` runs several)."""
        self.media_steps: int | None = None
        """Diffusion steps of every medium's turn (``--media-steps``); ``None``: the defaults."""

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def timed(self, run: Callable[[], Any], repeats: int = 1) -> float:
        """Seconds per call, after one warm-up call."""
        run()
        self.sync()
        began = time.perf_counter()
        for _ in range(repeats):
            run()
        self.sync()
        return (time.perf_counter() - began) / repeats

    def in_time(self, part: str) -> bool:
        """Whether ``part`` may start before the deadline; when not, a line says it was skipped."""
        if self.deadline_s is None or time.perf_counter() - self.began < self.deadline_s:
            return True
        self.report(part, skipped=f"past --deadline-s {self.deadline_s:g}")
        return False

    def report(self, part: str, **figures: Any) -> None:
        if self.device.type == "cuda":
            figures["peak_memory_gib"] = round(self.torch.cuda.max_memory_allocated() / 2**30, 2)
        mode = {"mode": self.mode} if self.mode else {}
        print(json.dumps({"part": part, **mode, **figures}), flush=True)

    def fresh_memory(self) -> None:
        """Let go of what the last part held and start counting the peak again."""
        import gc

        gc.collect()
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def randn(self, *shape: int) -> Any:
        return self.torch.randn(*shape, device=self.device, dtype=self.dtype)

    # -- parts -------------------------------------------------------------------------------------

    def llm(self, prefill_tokens: int, decode_tokens: int) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import LlamaConfig, LlamaForCausalLM

        torch = self.torch
        default = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)  # built in bf16 directly: 13 GB, not 27
        try:
            with torch.device(self.device):
                model = LlamaForCausalLM(LlamaConfig(**self.sizes["llm"]))
        finally:
            torch.set_default_dtype(default)
        r = self.sizes["lora_r"]
        lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        model = get_peft_model(model, lora).eval()
        hidden = self.sizes["llm"]["hidden_size"]
        prompt = self.randn(1, prefill_tokens, hidden)  # text embeddings and two pictures' 257 feature tokens

        def measure() -> tuple[float, float]:
            @torch.no_grad()
            def prefill() -> Any:
                return model(inputs_embeds=prompt, use_cache=True)

            @torch.no_grad()
            def decode() -> None:
                out = prefill()
                cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
                for _ in range(decode_tokens):
                    out = model(input_ids=token, past_key_values=cache, use_cache=True)
                    cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)

            seconds = self.timed(prefill, repeats=3)
            return seconds, (self.timed(decode) - seconds) / decode_tokens

        seconds, per_token = measure()
        params = sum(p.numel() for p in model.parameters()) / 1e9
        model = model.merge_and_unload()  # what a server would run: the adapter folded into the weights
        merged_seconds, merged_per_token = measure()
        self.report(
            "llm",
            params_billion=round(params, 2),
            prefill_tokens=prefill_tokens,
            prefill_tokens_per_s=round(prefill_tokens / seconds),
            decode_ms_per_token=round(per_token * 1000, 2),
            merged_prefill_tokens_per_s=round(prefill_tokens / merged_seconds),
            merged_decode_ms_per_token=round(merged_per_token * 1000, 2),
        )

    def encoders(self) -> None:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        from codi2_sdk.model.imagebind.audio import ImageBindAudioEncoder

        torch = self.torch
        clip = self.sizes["clip"]
        with torch.device(self.device):
            tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip)).to(self.dtype).eval()
            audio = ImageBindAudioEncoder(**self.sizes["imagebind_audio"]).to(self.dtype).eval()
        pixels = self.randn(8, 3, clip["image_size"], clip["image_size"])
        settings = audio.config
        mels = self.randn(8, settings["clips"], 1, settings["num_mel_bins"], settings["target_length"])  # filterbanks
        with torch.no_grad():
            image_s = self.timed(lambda: tower(pixel_values=pixels), repeats=3) / len(pixels)
            audio_s = self.timed(lambda: audio(mels), repeats=3) / len(mels)
        self.report("encoders", image_ms_per_item=round(image_s * 1000, 2), audio_ms_per_clip=round(audio_s * 1000, 2))

    def _denoise(self, unet: Any, latents: Any, steps: int, call: Callable[[Any, Any], Any]) -> Any:
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            noise = call(self.torch.cat([latents] * 2), t)  # classifier-free guidance: one batch of 2
            uncond, cond = noise.chunk(2)
            latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
        return latents

    def _vae(self, in_channels: int, latent: int, blocks: dict[str, Any]) -> Any:
        from diffusers import AutoencoderKL

        levels = len(blocks["block_out_channels"])
        with self.torch.device(self.device):
            return (
                AutoencoderKL(
                    in_channels=in_channels,
                    out_channels=in_channels,
                    down_block_types=["DownEncoderBlock2D"] * levels,
                    up_block_types=["UpDecoderBlock2D"] * levels,
                    latent_channels=latent,
                    **blocks,
                )
                .to(self.dtype)
                .eval()
            )

    def unclip(self) -> None:
        from diffusers import UNet2DConditionModel

        torch = self.torch
        args = self.sizes["unclip_unet"]
        with torch.device(self.device):
            unet = (
                UNet2DConditionModel(
                    in_channels=4,
                    out_channels=4,
                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                    use_linear_projection=True,
                    class_embed_type="projection",
                    **args,
                )
                .to(self.dtype)
                .eval()
            )
        vae = self._vae(3, 4, self.sizes["vae"])
        text = self.randn(2, self.sizes["text_tokens"], args["cross_attention_dim"])
        labels = self.randn(2, args["projection_class_embeddings_input_dim"])  # image embedding + noise level
        side = self.sizes["image_px"] // 8

        @torch.no_grad()
        def image() -> Any:
            latents = self.randn(1, 4, side, side)
            call = lambda x, t: unet(x, t, encoder_hidden_states=text, class_labels=labels).sample  # noqa: E731
            return vae.decode(self._denoise(unet, latents, self.sizes["steps"]["unclip"], call)).sample

        seconds = self.timed(image)
        self.report(
            "unclip", steps=self.sizes["steps"]["unclip"], px=self.sizes["image_px"], s_per_image=round(seconds, 2)
        )

    def audioldm2(self) -> None:
        from diffusers import AudioLDM2UNet2DConditionModel
        from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

        torch = self.torch
        args = dict(self.sizes["audioldm2_unet"])
        levels = len(args["block_out_channels"])
        latent = args["in_channels"]
        with torch.device(self.device):
            unet = (
                AudioLDM2UNet2DConditionModel(  # attention below the top level, as AudioLDM's resolutions (8, 4, 2)
                    out_channels=latent,
                    down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
                    up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
                    **args,
                )
                .to(self.dtype)
                .eval()
            )
            vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**self.sizes["vocoder"], sampling_rate=16000)).eval()
        vae = self._vae(1, latent, self.sizes["audio_vae"])
        dims = [d for d in args["cross_attention_dim"][0] if d is not None]
        generated = self.randn(2, 8, dims[0])  # GPT-2's 8 states
        t5 = self.randn(2, self.sizes["text_tokens"], dims[1])
        frames, bins = self.sizes["mel"]
        factor = 2 ** (len(self.sizes["audio_vae"]["block_out_channels"]) - 1)

        @torch.no_grad()
        def clip() -> Any:
            latents = self.randn(1, latent, frames // factor, bins // factor)

            def call(x: Any, t: Any) -> Any:
                return unet(x, t, encoder_hidden_states=generated, encoder_hidden_states_1=t5).sample

            mel = vae.decode(self._denoise(unet, latents, self.sizes["steps"]["audioldm2"], call)).sample
            return vocoder(mel[:, 0].float())

        seconds = self.timed(clip)
        self.report(
            "audioldm2", steps=self.sizes["steps"]["audioldm2"], mel_frames=frames, s_per_clip=round(seconds, 2)
        )

    def zeroscope(self) -> None:
        from diffusers import UNet3DConditionModel

        torch = self.torch
        args = self.sizes["video_unet"]
        with torch.device(self.device):
            unet = UNet3DConditionModel(in_channels=4, out_channels=4, **args).to(self.dtype).eval()
        vae = self._vae(3, 4, self.sizes["vae"])
        text = self.randn(2, self.sizes["text_tokens"], args["cross_attention_dim"])
        count, px = self.sizes["video"]

        @torch.no_grad()
        def video() -> Any:
            latents = self.randn(1, 4, count, px // 8, px // 8)
            call = lambda x, t: unet(x, t, encoder_hidden_states=text).sample  # noqa: E731
            latents = self._denoise(unet, latents, self.sizes["steps"]["zeroscope"], call)
            return torch.cat([vae.decode(latents[:, :, i]).sample for i in range(count)])

        seconds = self.timed(video)
        steps = self.sizes["steps"]["zeroscope"]
        self.report("zeroscope", steps=steps, frames=count, px=px, s_per_video=round(seconds, 2))


# -- the SDK's own path (--sdk) --------------------------------------------------------------------------------

FOLDER_NAMES = ("llm", "unclip", "audioldm2", "zeroscope", "imagebind_huge.pth")


def _char_vocab(extra: int = 0) -> list[str]:
    import string

    return list(string.ascii_lowercase + string.digits + string.punctuation) + [f"<x{i}>" for i in range(extra)]


def _full_clip_text(vocab_size: int = 49408) -> tuple[Any, Any]:
    """OpenCLIP ViT-H/14's text tower (SD-2.x, unCLIP and Zeroscope use it) with a character tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = _char_vocab()
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=23,
        num_attention_heads=16,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=512,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return tokenizer, CLIPTextModel(config)


def _full_vae(in_channels: int, latent: int, blocks: tuple[int, ...]) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=["DownEncoderBlock2D"] * len(blocks),
        up_block_types=["UpDecoderBlock2D"] * len(blocks),
        block_out_channels=blocks,
        layers_per_block=2,
        latent_channels=latent,
    )


def full_unclip_pipeline() -> Any:
    """SD-2.1 unCLIP-H's pipeline at its published sizes, random weights."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer, text_encoder = _full_clip_text()
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**FULL["clip"], hidden_act="gelu"))
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        use_linear_projection=True,
        class_embed_type="projection",
        **FULL["unclip_unet"],
    )
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        image_encoder=vision,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=1024),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        vae=_full_vae(3, 4, (128, 256, 512, 512)),
    )


def full_audioldm2_pipeline() -> Any:
    """AudioLDM2's pipeline at its published sizes (CLAP-HTSAT, Flan-T5-large, GPT-2), random weights."""
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, DDIMScheduler
    from transformers import (
        ClapConfig,
        ClapModel,
        GPT2Config,
        GPT2LMHeadModel,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
        T5Tokenizer,
    )

    chars = _char_vocab()
    roberta = {
        t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", "Ġ", *chars, *("Ġ" + c for c in chars)])
    }
    t5_vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0), *((c, -2.0) for c in chars)]
    clap = ClapModel(ClapConfig(text_config={"vocab_size": 50265, "max_position_embeddings": 514}, projection_dim=512))
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=1024,
            d_ff=2816,
            d_kv=64,
            num_heads=16,
            num_layers=24,
            feed_forward_proj="gated-gelu",
        )
    )
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12))  # the class diffusers 0.42 types
    language_model.config.max_new_tokens = 8
    args = dict(FULL["audioldm2_unet"])
    levels = len(args["block_out_channels"])
    unet = AudioLDM2UNet2DConditionModel(
        out_channels=args["in_channels"],
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        **args,
    )
    return AudioLDM2Pipeline(
        vae=_full_vae(1, 8, (128, 256, 512)),
        text_encoder=clap,
        text_encoder_2=t5,
        tokenizer=RobertaTokenizer(vocab=roberta, merges=[], model_max_length=512),
        tokenizer_2=T5Tokenizer(vocab=t5_vocab, extra_ids=0, model_max_length=512),
        projection_model=AudioLDM2ProjectionModel(
            text_encoder_dim=512, text_encoder_1_dim=1024, langauge_model_dim=768
        ),
        language_model=language_model,
        feature_extractor=None,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
        ),
        vocoder=SpeechT5HifiGan(SpeechT5HifiGanConfig(**FULL["vocoder"], sampling_rate=16000)),
    )


def full_zeroscope_pipeline() -> Any:
    """Zeroscope v2 576w's pipeline at its published sizes, random weights."""
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    tokenizer, text_encoder = _full_clip_text()
    unet = UNet3DConditionModel(in_channels=4, out_channels=4, **FULL["video_unet"])
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    return TextToVideoSDPipeline(
        vae=_full_vae(3, 4, (128, 256, 512, 512)),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )


def build_llm_folder(root: Any, tiny: bool, device: str) -> Any:
    """``root/llm``: a Llama-2-7b-chat-shaped LLM with random weights (untied head, Llama's tokenizer class and chat
    template), saved as a published LLM folder is; ``tiny``: the tests' size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from codi2_sdk.testing import twins

    words = ["draw", "play", "show", "a", "red", "circle", "sound", "what", "is", "this"]
    tokenizer = twins.tiny_llama_tokenizer(words)
    sizes = dict(TINY["llm"] if tiny else FULL["llm"])
    if not tiny:  # Llama-2's 32,000 rows: the tags are added above them, as on the real tokenizer
        tokenizer.add_tokens([f"<unused{i}>" for i in range(32000 - len(tokenizer))])
    sizes["vocab_size"] = len(tokenizer)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if tiny else torch.bfloat16)
    try:
        with torch.device("cpu" if tiny else device):
            llm = LlamaForCausalLM(
                LlamaConfig(**sizes, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
            )
        llm.save_pretrained(str(root / "llm"))
        tokenizer.save_pretrained(str(root / "llm"))
    finally:
        torch.set_default_dtype(default)
    return root / "llm"


def build_media_folders(root: Any, tiny: bool) -> dict[str, int]:
    """``root/unclip``, ``root/audioldm2``, ``root/zeroscope`` (the three pipelines, as published) and
    ``root/imagebind_huge.pth`` (ImageBind's audio and video towers under the official key names), random weights
    (bf16 at full size; ``tiny``: the tests' twins of the same classes). Returns each one's parameter count."""
    import torch

    from codi2_sdk.model import ImageBindAudioEncoder, ImageBindVideoEncoder
    from codi2_sdk.model.imagebind.audio import official_key
    from codi2_sdk.model.imagebind.video import official_video_key
    from codi2_sdk.testing import twins

    pipelines = (
        (twins.tiny_unclip_pipeline, twins.tiny_audioldm2_pipeline, twins.tiny_zeroscope_pipeline)
        if tiny
        else (full_unclip_pipeline, full_audioldm2_pipeline, full_zeroscope_pipeline)
    )
    counts = {}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if tiny else torch.bfloat16)
    try:
        for name, build in zip(("unclip", "audioldm2", "zeroscope"), pipelines, strict=True):
            pipeline = build()
            modules = [c for c in pipeline.components.values() if isinstance(c, torch.nn.Module)]
            counts[name] = sum(p.numel() for module in modules for p in module.parameters())
            pipeline.save_pretrained(str(root / name))
        shapes = TINY if tiny else FULL
        audio = ImageBindAudioEncoder(**shapes["imagebind_audio"])
        video = ImageBindVideoEncoder(**shapes["imagebind_video"])
        state = {official_key(k): v for k, v in audio.state_dict().items()}
        state |= {official_video_key(k): v for k, v in video.state_dict().items()}
        torch.save(state, root / "imagebind_huge.pth")
        counts["imagebind"] = sum(v.numel() for v in state.values())
    finally:
        torch.set_default_dtype(default)
    return counts


def folder_paths(root: Any) -> dict[str, Any]:
    """``assemble``'s keywords for the five components' folders in ``root`` (as :data:`FOLDER_NAMES` names them)."""
    return {name.removesuffix("_huge.pth"): root / name for name in FOLDER_NAMES}


def build_folders(root: Any, tiny: bool, device: str) -> dict[str, Any]:
    """The five public components as their folders would be published, with random weights (see
    :func:`build_llm_folder` and :func:`build_media_folders`)."""
    build_llm_folder(root, tiny, device)
    build_media_folders(root, tiny)
    return folder_paths(root)


def kept_or_built_folders(root: Any, tiny: bool, device: str) -> tuple[dict[str, Any], bool]:
    """The folders :func:`build_folders` makes, in ``root``: those an earlier call built completely there (at the
    same size) where there are some, else built now; and whether they were built now."""
    marker = root / "gpu_check_folders.json"
    if marker.exists() and json.loads(marker.read_text()) == {"tiny": tiny}:
        return folder_paths(root), False
    marker.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    folders = build_folders(root, tiny, device)
    marker.write_text(json.dumps({"tiny": tiny}))
    return folders, True


RECIPE = {
    "1. decoders": ("decoders", 20_000, 32),
    "2. LLM alignment": ("llm", 30_000, 8),
    "3. instructions": ("llm", 10_000, 8),
}
"""docs/training.md's stages: the alignment stage each runs, its steps, and its batch per GPU."""
RECIPE_GPUS = 8
"""The recipe's cards: a stage's GPU-hours are its steps x seconds per step (at its batch per GPU) x these."""


BANDWIDTH_TB_S = {"H100": 3.35, "H200": 4.8, "A100": 2.0, "L40S": 0.864, "A10G": 0.6, "L4": 0.3}
"""Published memory bandwidth of the cards this is run on (SXM parts; TB/s), for the decode floor."""


def _bandwidth_floor_ms(check: Check, model: Any) -> float | None:
    """Milliseconds to read the LLM's weights once at the card's published bandwidth: no decode step is faster."""
    if check.device.type != "cuda":
        return None
    name = check.torch.cuda.get_device_name()
    rate = next((tb for card, tb in BANDWIDTH_TB_S.items() if card in name), None)
    if rate is None:
        return None
    weights = sum(p.numel() * p.element_size() for p in model.llm.parameters())
    return weights / (rate * 1e12) * 1000


def _decode_ms(check: Check, backend: Any, model: Any, decode_tokens: int) -> tuple[float, int]:
    from codi2_sdk import Conversation

    text = {"seed": 0, "output_modality": "text", "text": {"max_new_tokens": decode_tokens, "temperature": 0.0}}
    seconds = check.timed(lambda: Conversation(backend=backend).send("what is this", config=text))
    answer = Conversation(backend=backend).send("what is this", config=text)
    tokens = max(1, len(model.tokenizer(answer.text, add_special_tokens=False).input_ids))
    return seconds / tokens * 1000, tokens


def _sdk_and_bare(
    check: Check, backend: Any, model: Any, modality: str, steps: int, bare: bool = True
) -> tuple[float, float | None]:
    """Seconds of a turn that makes ``modality`` through ``Conversation``, and (with ``bare``) of the same diffusers
    pipeline call made directly (the keyword arguments the SDK passed, recorded, without its step callback)."""
    import torch

    from codi2_sdk import Conversation

    config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 2}, modality: {"steps": steps}}
    pipeline = model.decoders[modality].pipeline
    cls, recorded = type(pipeline), {}
    original = cls.__call__

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorded.update(kwargs)
        return original(self, *args, **kwargs)

    cls.__call__ = recording
    try:
        sdk = check.timed(lambda: Conversation(backend=backend).send("draw a red circle", config=config))
    finally:
        cls.__call__ = original
    bare_call = {k: v for k, v in recorded.items() if "callback" not in k}

    def direct() -> Any:
        bare_call["generator"] = torch.Generator(device="cpu").manual_seed(0)
        with torch.no_grad():
            return pipeline(**bare_call)

    return sdk, check.timed(direct) if bare else None


def _media_turns(
    check: Check, backend: Any, model: Any, label: str, bare: bool = True, **noted: Any
) -> dict[str, float]:
    """Each medium's turn timed (beside its bare pipeline, with ``bare``; a JSON line each); seconds per turn by
    modality. The steps are ``check.media_steps``, else the full-scale defaults', or 10 at tiny sizes."""
    seconds = {}
    for modality in ("image", "audio", "video"):
        if not check.in_time(f"{label}_{modality}"):
            continue
        steps = check.media_steps or (
            10 if check.sizes is TINY else int(getattr(model.config.defaults, modality).steps)
        )
        sdk, direct = _sdk_and_bare(check, backend, model, modality, steps, bare)
        versus = {"bare_pipeline_s": round(direct, 2), "ratio": round(sdk / direct, 3)} if direct else {}
        check.report(f"{label}_{modality}", s_per_turn=round(sdk, 2), **versus, steps=steps, **noted)
        seconds[modality] = sdk
    return seconds


def sdk_check(
    check: Check,
    folders: dict[str, Any],
    tiny: bool,
    decode_tokens: int,
    train_steps: int,
    memory: str = "default",
    compile_decode: bool = False,
    decoder_speed_ups: dict[str, bool] | None = None,
    plain: dict[str, float] | None = None,
    train_batch: int | None = None,
) -> dict[str, float]:
    """The SDK's own path: ``assemble`` the folders on the device (in ``memory``'s mode), answer a ``Conversation``
    turn for each medium beside its bare pipeline, decode eager (and compiled), the media again with
    ``decoder_speed_ups`` (``CoDi2Model.speed_up_decoders``' keywords), run both alignment stages (in the default
    mode); a JSON line for each. ``plain``: the media turns' seconds of an earlier default pass, not timed again
    (nor beside the bare pipelines) when given. The stages train as docs/training.md's recipe does (gradient
    checkpointing, its batch per GPU unless ``train_batch``; 2 at tiny sizes), and at the recipe's batch the line
    projects each of its stages' GPU-hours on :data:`RECIPE_GPUS` cards. Returns the plain media turns' seconds."""
    import numpy as np
    import PIL.Image
    import torch

    from codi2_sdk import Audio, Image, Video, assistant, user
    from codi2_sdk.backends.local import LocalBackend
    from codi2_sdk.model import TrainingExample, assemble
    from codi2_sdk.train.align import CaptionedMedium, align_decoders, align_llm

    if not check.in_time("sdk_assemble"):
        return plain or {}
    began = time.perf_counter()
    sizes = TINY if tiny else FULL
    model = assemble(
        **folders,
        feature_dim=32 if tiny else 1024,
        imagebind_args=sizes["imagebind_audio"],
        imagebind_video_args=sizes["imagebind_video"],
        device=check.device,
        dtype=check.dtype,
        memory=memory,
    )
    check.sync()
    check.report("sdk_assemble", seconds=round(time.perf_counter() - began, 2), dtype=str(check.dtype), memory=memory)
    if tiny:  # the published lengths (10.24 s of audio, 24 frames of 576 x 320) are long for a CPU smoke run
        model.decoders["audio"].meta["audio_length_in_s"] = 0.064
        model.decoders["video"].meta.update(num_frames=2, width=32, height=16)
    backend = LocalBackend(model)
    floor = _bandwidth_floor_ms(check, model)
    ms, tokens = _decode_ms(check, backend, model, decode_tokens)
    check.report("sdk_text", tokens=tokens, ms_per_token=round(ms, 2), bandwidth_floor_ms=floor and round(floor, 2))
    if compile_decode and check.in_time("sdk_text_compiled"):  # the LoRA merged, one-token steps compiled
        began = time.perf_counter()
        fast = LocalBackend(model, compile=True)
        ms, tokens = _decode_ms(check, fast, model, decode_tokens)  # its warm-up call compiles
        check.report(
            "sdk_text_compiled",
            tokens=tokens,
            ms_per_token=round(ms, 2),
            bandwidth_floor_ms=floor and round(floor, 2),
            over_floor=floor and round(ms / floor, 2),
            setup_and_compile_s=round(time.perf_counter() - began, 1),
        )
    earlier = plain
    plain = earlier or _media_turns(check, backend, model, "sdk", bare=memory == "default")
    if decoder_speed_ups and check.in_time("sdk_fast"):  # the denoisers compiled / channels-last; warm-up compiles
        model.speed_up_decoders(**decoder_speed_ups)
        noted = {k: v for k, v in decoder_speed_ups.items() if v}
        fast = _media_turns(check, backend, model, "sdk_fast", bare=earlier is None, **noted)
        for modality, seconds in fast.items():
            if modality in plain:
                check.report(f"sdk_{modality}_fast_over_plain", ratio=round(seconds / plain[modality], 3))
    if memory != "default" or compile_decode or decoder_speed_ups:
        return plain  # a low-memory model is for inference; a merged one has no adapter left to train

    rng = np.random.default_rng(0)
    side = 32 if tiny else 224
    pictures = [
        Image.from_pil(PIL.Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))) for _ in range(4)
    ]
    clips = [Audio.from_array(0.3 * np.sin(np.arange(16000) / (3 + i)), sample_rate=16000) for i in range(4)]
    frames = [Video.from_frames(rng.integers(0, 255, (4, side, side, 3), dtype=np.uint8), fps=4) for _ in range(2)]
    captions = [CaptionedMedium(p, f"a sound {i}") for i, p in enumerate(clips)]
    captions += [CaptionedMedium(v, f"a clip {i}") for i, v in enumerate(frames)]
    talks = [TrainingExample(messages=[user("draw a red circle")], answer=assistant(p)) for p in pictures]
    talks += [TrainingExample(messages=[user(p, "what is this")], answer=assistant("a red circle")) for p in pictures]
    model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # as the recipe
    for stage, run, data in (("decoders", align_decoders, captions), ("llm", align_llm, talks)):
        if not check.in_time(f"sdk_align_{stage}"):
            continue
        if check.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        recipe = {name: (steps, batch) for name, (of, steps, batch) in RECIPE.items() if of == stage}
        recipe_batch = next(iter(recipe.values()))[1]
        batch = train_batch or (2 if tiny else recipe_batch)
        logs = run(model, data, steps=train_steps, batch_size=batch, progress=False, log_every=1)  # type: ignore[operator]
        per_step = (logs[-1].seconds - logs[0].seconds) / max(1, len(logs) - 1)
        projected = {}
        if batch == recipe_batch:
            projected["recipe_gpu_hours"] = {
                name: round(steps * per_step * RECIPE_GPUS / 3600, 1) for name, (steps, _) in recipe.items()
            }
        check.report(
            f"sdk_align_{stage}",
            steps=train_steps,
            batch_size=batch,
            s_per_step=round(per_step, 3),
            loss=round(logs[-1].loss, 4),
            **projected,
        )
    return plain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Parts: " + ", ".join(PARTS))
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run (default: all)")
    parser.add_argument("--prefill-tokens", type=int, default=1024)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run of the same code, e.g. on CPU)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument(
        "--sdk",
        action="store_true",
        help="time the SDK's own path instead: assemble the five components' folders, a Conversation turn per medium, "
        "both alignment stages",
    )
    parser.add_argument(
        "--folders",
        default=None,
        help="with --sdk: a folder holding llm/, unclip/, audioldm2/, zeroscope/ and imagebind_huge.pth (real weights); "
        "default: random ones built at the published sizes in a temporary folder",
    )
    parser.add_argument("--train-steps", type=int, default=10, help="with --sdk: steps of each alignment stage")
    parser.add_argument(
        "--train-batch",
        type=int,
        default=None,
        help="with --sdk: batch of each alignment stage (default: the recipe's per GPU, 32 and 8; 2 with --tiny)",
    )
    parser.add_argument(
        "--memory", choices=["default", "low"], default="default", help="with --sdk: assemble(memory=...) (no training)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="with --sdk: also decode compiled over a static cache (no training)"
    )
    parser.add_argument(
        "--compile-decoders", action="store_true", help="with --sdk: the media again with the UNets compiled"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="with --sdk: the media again with channels-last decoders"
    )
    parser.add_argument(
        "--media-steps",
        type=int,
        default=None,
        help="with --sdk: diffusion steps of every media turn (default: each "
        "decoder's full-scale default; ratios are per turn at these steps)",
    )
    parser.add_argument(
        "--all-modes",
        action="store_true",
        help="with --sdk: three passes over one set of folders: default (with training), low (--memory low), fast "
        "(--compile --compile-decoders --channels-last); each line names its mode",
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="start no part after this many seconds (a line says what was skipped), so a call under a time limit "
        "ends with what it measured; parts run in the order of what matters most (default: no deadline)",
    )
    parser.add_argument(
        "--scratch",
        default=None,
        help="with --sdk: build the random folders in this folder and keep them; a later call given the same folder "
        "reuses them (default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (use --tiny --device cpu for a smoke run)", file=sys.stderr)
        return 2
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    check = Check(device, dtype, TINY if args.tiny else FULL, deadline_s=args.deadline_s)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(json.dumps({"device": name, "dtype": str(dtype), "torch": torch.__version__, "tiny": args.tiny}), flush=True)
    began = time.perf_counter()
    if args.sdk:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as scratch:
            if args.folders:
                folders = folder_paths(Path(args.folders))
            else:
                folders, built = kept_or_built_folders(Path(args.scratch or scratch), args.tiny, device)
                kept = {"built_folders_s": round(time.perf_counter() - began, 1)} if built else {"kept_folders": True}
                print(json.dumps({**kept, "scratch": str(args.scratch or scratch)}), flush=True)
            speed_ups = {"compile": args.compile_decoders, "channels_last": args.channels_last}
            passes: dict[str | None, dict[str, Any]] = {
                None: {"memory": args.memory, "compile_decode": args.compile,
                       "decoder_speed_ups": speed_ups if any(speed_ups.values()) else None},
            }  # fmt: skip
            if args.all_modes:  # in the order of what matters most, should the deadline come
                passes = {
                    "default": {},
                    "low": {"memory": "low"},
                    "fast": {"compile_decode": True, "decoder_speed_ups": {"compile": True, "channels_last": True}},
                }
            check.media_steps = args.media_steps
            plain = None  # the default pass's media turns, which the fast pass's are compared with
            for mode, options in passes.items():
                check.mode = mode
                check.fresh_memory()
                options = {**options, "plain": plain} if mode == "fast" else options
                turns = sdk_check(
                    check,
                    folders,
                    args.tiny,
                    args.decode_tokens,
                    args.train_steps,
                    train_batch=args.train_batch,
                    **options,
                )
                plain = turns if mode == "default" else plain
            check.mode = None
        print(json.dumps({"total_s": round(time.perf_counter() - began, 1)}), flush=True)
        return 0
    for part in parts:
        if not check.in_time(part):
            continue
        if part == "llm":
            prefill = min(args.prefill_tokens, check.sizes["llm"]["max_position_embeddings"] - args.decode_tokens - 1)
            check.llm(prefill, args.decode_tokens)
        else:
            getattr(check, part)()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(json.dumps({"total_s": round(time.perf_counter() - began, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
