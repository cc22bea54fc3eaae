"""Assembling the full-scale CoDi-2 from the public components' local folders.

The paper's system: ImageBind-H encoders (its image tower is OpenCLIP ViT-H, the same weights SD-2.1 unCLIP
ships as ``image_encoder/``: loaded once and shared; its audio tower from ``imagebind_huge.pth``), a
Llama-2-chat LLM with the media tags added (embeddings resized with mean resizing, their rows trained beside
a LoRA of rank 128 on q, k, v, o), and the unCLIP, AudioLDM2 and Zeroscope pipelines as decoders, each with
output projectors from the 1024-d feature. Nothing is downloaded: every part comes from a local path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file

from ...config import AudioConfig, GenerationConfig, ImageConfig, VideoConfig
from ...errors import ModelError
from .._libraries import local_path, quiet_loading
from ..architecture import CoDi2Config, DecoderSpec, EncoderSpec, LoraSpec
from ..imagebind.audio import load_imagebind_audio, read_checkpoint
from ..imagebind.image import ImageBindImageEncoder
from ..imagebind.video import has_vision_weights, load_imagebind_video, stem_matches_image_tower
from ..modeling import PROJECTORS_FILE, CoDi2Model
from ..parts import DiffusionDecoder, FrameVideoEncoder, MediaEncoder
from ..prompt import SPECIAL_TOKENS, add_special_tokens
from .audioldm2 import AudioLDM2Decoder
from .unclip import REFERENCE_NEGATIVE_PROMPT, REFERENCE_NOISE_LEVEL, UnCLIPImageDecoder, norm_pictures
from .zeroscope import ZeroscopeVideoDecoder

__all__ = [
    "FULL_SCALE_DEFAULTS",
    "FULL_SCALE_LORA",
    "PIPELINE_DEFAULTS",
    "assemble",
    "paper_lora",
    "special_token_rows",
]


log = logging.getLogger(__name__)


FULL_SCALE_LORA = LoraSpec(r=128, alpha=256)
"""The paper's adapter: rank 128 on q, k, v, o."""


FULL_SCALE_DEFAULTS = GenerationConfig(
    image=ImageConfig(steps=50, guidance_scale=7.5, noise_level=REFERENCE_NOISE_LEVEL),
    audio=AudioConfig(steps=200, guidance_scale=3.5),
    video=VideoConfig(steps=50, guidance_scale=9.0),
)
"""Generation settings of an assembled model: unCLIP as CoDi-2's released code runs it (``generate_image`` in
microsoft/i-Code's ``CoDi-2/core/models/mmllama/openllama.py``: 50 DDIM steps, guidance 7.5, the image embedding
noised to level 500, :data:`~codi2_sdk.model.fullscale.unclip.REFERENCE_NEGATIVE_PROMPT` on both sides of the guidance),
AudioLDM2's and Zeroscope's published pipeline defaults (200 steps at 3.5; 50 steps at 9.0, 576 x 320 frames; the
encoded empty prompt as the unconditional side)."""


PIPELINE_DEFAULTS = FULL_SCALE_DEFAULTS.model_copy(
    update={"image": FULL_SCALE_DEFAULTS.image.model_copy(update={"noise_level": 0})}
)
"""The same with unCLIP's own pipeline defaults (a clean image embedding; the empty prompt): ``assemble(...,
reference_decoding=False)``."""


def special_token_rows(tokenizer: Any) -> list[int]:
    """The embedding rows of CoDi-2's special tokens (media tags, slot, roles): trained beside the LoRA, as a
    pretrained LLM never saw them."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[token] for token in SPECIAL_TOKENS if token in vocab})


def paper_lora(tokenizer: Any) -> LoraSpec:
    """The paper's adapter (:data:`FULL_SCALE_LORA`) with the special tokens' rows trainable."""
    return FULL_SCALE_LORA.model_copy(update={"trainable_tokens": special_token_rows(tokenizer)})


def _need(path: str | Path | None, what: str) -> Path | None:
    return None if path is None else local_path(path, what)


def _llm(folder: str | Path, dtype: torch.dtype | None, chat_template: str | None) -> tuple[Any, Any, list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _need(folder, "LLM folder")
    assert path is not None

    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            llm = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, **({"dtype": dtype} if dtype else {})
            )
    except Exception as exc:
        raise ModelError(f"the LLM at {path} cannot be loaded: {exc}") from exc
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    before = len(tokenizer)
    if add_special_tokens(tokenizer):
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    new_rows = list(range(before, len(tokenizer)))
    return llm, tokenizer, new_rows


class _Progress:
    """:func:`assemble`'s steps on a progress bar (shown on a terminal only), each logged at INFO as it starts."""

    NAMES: ClassVar[dict[str, str]] = {"llm": "the LLM", "unclip": "unCLIP", "imagebind": "ImageBind"}
    NAMES |= {"audioldm2": "AudioLDM2", "zeroscope": "Zeroscope", "placing": "placing and measuring"}

    def __init__(self, steps: list[str], show: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(steps), desc="assemble", unit=" parts", disable=None if show else True)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("assemble: %s", self.NAMES[name])
        self.bar.set_postfix_str(self.NAMES[name])
        try:
            yield
        finally:
            self.bar.update()
            if self.bar.n >= self.bar.total:
                self.bar.close()


@dataclass
class _Parts:
    """The encoders and decoders :func:`assemble` gathers from the folders it is given, with their specs."""

    encoders: dict[str, MediaEncoder] = field(default_factory=dict)
    decoders: dict[str, DiffusionDecoder] = field(default_factory=dict)
    encoder_specs: dict[str, EncoderSpec] = field(default_factory=dict)

    @classmethod
    def gather(
        cls,
        folders: dict[str, str | Path | None],
        feature_dim: int,
        audio_args: dict[str, Any],
        video_args: dict[str, Any],
        loading: dict[str, Any],
        steps: _Progress,
    ) -> _Parts:
        """The parts in the given folders (``unclip``, ``imagebind``, ``audioldm2``, ``zeroscope``; any may be
        ``None``), loaded with ``loading``'s variant, dtype and decoding choice."""
        parts, pipeline = cls(), {"variant": loading["variant"], "dtype": loading["dtype"]}
        if (path := _need(folders["unclip"], "unCLIP pipeline folder")) is not None:
            with steps.step("unclip"):
                parts.add_unclip(path, loading["reference_decoding"], pipeline)
        if (path := _need(folders["imagebind"], "ImageBind checkpoint")) is not None:
            with steps.step("imagebind"):
                parts.add_imagebind(path, audio_args, video_args)
        if (path := _need(folders["audioldm2"], "AudioLDM2 pipeline folder")) is not None:
            with steps.step("audioldm2"):
                parts.decoders["audio"] = AudioLDM2Decoder.from_pipeline(path, cond_dim=feature_dim, **pipeline)
        if (path := _need(folders["zeroscope"], "Zeroscope pipeline folder")) is not None:
            with steps.step("zeroscope"):
                parts.decoders["video"] = ZeroscopeVideoDecoder.from_pipeline(path, cond_dim=feature_dim, **pipeline)
        return parts

    def add_unclip(self, path: Path, reference_decoding: bool, loading: dict[str, Any]) -> None:
        """unCLIP's decoder, and its CLIP-H tower (loaded once, shared) reading pictures and 2-frame clips."""
        prompt = REFERENCE_NEGATIVE_PROMPT if reference_decoding else ""
        decoder = UnCLIPImageDecoder.from_pretrained(path, prompt=prompt, **loading)
        image = ImageBindImageEncoder(decoder.pipeline.image_encoder)
        self.decoders["image"] = decoder
        self.encoders |= {"image": image, "video": FrameVideoEncoder(image, frames=2)}  # as the paper reads video
        self.encoder_specs |= {
            "image": EncoderSpec(kind="imagebind_image"),
            "video": EncoderSpec(kind="frames_video", args={"frames": 2, "image_kind": "imagebind_image"}),
        }

    def add_imagebind(self, path: Path, audio_args: dict[str, Any], video_args: dict[str, Any]) -> None:
        """ImageBind's audio tower, and its video reading where the checkpoint holds the vision trunk."""
        state = read_checkpoint(path)  # read once: audio and video towers both come from it
        self.encoders["audio"] = load_imagebind_audio(state, **audio_args)
        self.encoder_specs["audio"] = EncoderSpec(kind="imagebind_audio", args=dict(audio_args))
        if not has_vision_weights(state):
            return
        video = load_imagebind_video(state, **video_args)  # 15 two-frame views through its 3-D stem
        self.encoders["video"] = video
        self.encoder_specs["video"] = EncoderSpec(kind="imagebind_video", args=dict(video_args))
        if isinstance(image := self.encoders.get("image"), ImageBindImageEncoder):
            log.info(
                "ImageBind's video stem summed over its two frames differs from unCLIP's CLIP-H patch kernel by "
                "%.3g of its largest weight (0: ImageBind reads a picture as CLIP-H does)",
                stem_matches_image_tower(video, image.model),
            )

    def model(self, name: str, llm: Any, tokenizer: Any, reference_decoding: bool) -> CoDi2Model:
        """The CoDi-2 model of these parts around ``llm``."""
        # Predicted features are unit-norm: restored to ImageBind's audio scale (L2 x 20) and to the scale of the
        # CLIP image embeddings unCLIP is conditioned on (its encoder reads at ImageBind's unit scale), measured once
        # by assemble with the pipeline's own image encoder and stored in the checkpoint's config.
        config = CoDi2Config(
            name=name,
            encoders=self.encoder_specs,
            decoders={m: DecoderSpec(kind=d.kind) for m, d in self.decoders.items()},
            feature_norms={"audio": 20.0} if "audio" in self.encoders else {},
            defaults=FULL_SCALE_DEFAULTS if reference_decoding else PIPELINE_DEFAULTS,
        )
        return CoDi2Model(config, llm, tokenizer, self.encoders, self.decoders)


@quiet_loading()
def assemble(
    *,
    llm: str | Path,
    imagebind: str | Path | None = None,
    unclip: str | Path | None = None,
    audioldm2: str | Path | None = None,
    zeroscope: str | Path | None = None,
    projectors: str | Path | None = None,
    lora: LoraSpec | None = FULL_SCALE_LORA,
    chat_template: str | None = None,
    name: str = "codi2",
    feature_dim: int = 1024,
    imagebind_args: dict[str, Any] | None = None,
    imagebind_video_args: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    variant: str | None = None,
    reference_decoding: bool = True,
    memory: Literal["default", "low"] = "default",
    progress: bool = True,
) -> CoDi2Model:
    """Build CoDi-2 from local folders: any subset of the media (an image tower needs ``unclip``, which also
    gives the image decoder and video reading; audio reading needs ``imagebind``).

    Args:
        llm: a transformers causal LM folder with its tokenizer (Llama-2-7b-chat in the paper). Each part is a path
            or a repo id already in the local Hugging Face cache (``"meta-llama/Llama-2-7b-chat-hf"``).
        imagebind: the official ``imagebind_huge.pth`` (or a state dict with its key names).
        unclip, audioldm2, zeroscope: SD-2.1 unCLIP's, AudioLDM2's and Zeroscope's pipeline folders (diffusers').
        projectors: a folder of trained CoDi-2 weights (``projectors.safetensors``); ``None``: random, to align.
        lora: the adapter to add (rank 128 by default; the new media-tag rows train with it); ``None`` for none.
        chat_template: a Jinja chat template for an LLM folder whose tokenizer has none (Llama-2-chat's:
            :data:`~codi2_sdk.model.prompt.LLAMA2_CHAT_TEMPLATE`); else the SDK's own role tokens are used.
        feature_dim: width of the features the decoders are conditioned on (ImageBind's 1024).
        imagebind_args: overrides of the audio tower's shape; imagebind_video_args: the video tower's (tests).
        device, dtype: where every part (the pipelines' text encoders too) runs, in what (bf16 on a GPU, usually).
        variant: the pipeline folders' weight variant to read (``"fp16"`` for ``*.fp16.safetensors``).
        reference_decoding: unCLIP as CoDi-2's code runs it (noise level 500, its negative prompt); ``False``: diffusers'.
        memory: ``"low"`` for inference in less memory (:meth:`CoDi2Model.reduce_memory`): the LLM in int8
            (torchao), the decoders on the CPU but while one runs, their autoencoders in slices and tiles.
        progress: a bar of the parts as they load, on a terminal (loading Llama-2-7b alone takes a minute or more).

    Raises:
        ModelNotFoundError: a part neither at its path nor in the local Hugging Face cache (the message names it).
        ModelError: a part that cannot be loaded or does not fit.
    """
    folders = {"unclip": unclip, "imagebind": imagebind, "audioldm2": audioldm2, "zeroscope": zeroscope}
    steps = _Progress(["llm", *(n for n, f in folders.items() if f is not None), "placing"], progress)
    with steps.step("llm"):
        model_llm, tokenizer, new_rows = _llm(llm, dtype, chat_template)
    loading: dict[str, Any] = {"variant": variant, "dtype": dtype, "reference_decoding": reference_decoding}
    parts = _Parts.gather(folders, feature_dim, imagebind_args or {}, imagebind_video_args or {}, loading, steps)
    model = parts.model(name, model_llm, tokenizer, reference_decoding)
    if (path := _need(projectors, "projectors folder")) is not None:
        model._load_projectors(load_file(str(path / PROJECTORS_FILE)), path)
    if lora is not None:
        rows = sorted(set(new_rows) | set(special_token_rows(tokenizer)))
        model.add_lora(lora.model_copy(update={"trainable_tokens": rows}))
    with steps.step("placing"):
        return _placed(model, device, dtype, memory)


def _placed(model: CoDi2Model, device: str | torch.device, dtype: torch.dtype | None, memory: str) -> CoDi2Model:
    """The assembled model on ``device`` in ``dtype``, its CLIP-H scale measured there, in ``memory``'s mode."""
    model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
    if isinstance(image := dict(model.decoders.items()).get("image"), UnCLIPImageDecoder):
        norms = {**model.config.feature_norms, "image": image.measure_embedding_norm(norm_pictures())}
        model.config = model.config.model_copy(update={"feature_norms": norms})
    if memory == "low":
        model.reduce_memory()
    return model.eval()
