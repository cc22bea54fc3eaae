"""Subject-driven generation metrics (DreamBench's): DINO and CLIP-I subject fidelity, CLIP-T prompt fidelity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..content import Image
from ..model.media_io import center_crop_resize, rgb_picture

__all__ = ["ClipScorer", "ImageEmbedder", "SubjectMetrics", "subject_similarity"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

Picture = Image | PIL.Image.Image


def _pixels(images: Sequence[Picture], size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Shortest side to ``size``, centre crop, normalised: ``(batch, 3, size, size)``."""
    arrays = []
    for image in images:
        pil = rgb_picture(image)
        arrays.append(np.asarray(center_crop_resize(pil, size), dtype=np.float32) / 255.0)
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy()


def subject_similarity(
    embed: Callable[[Sequence[Picture]], np.ndarray],
    generated: Sequence[Picture],
    references: Sequence[Sequence[Picture]],
) -> float:
    """Mean cosine between each generated picture and every reference picture of its subject, under ``embed``
    (pictures to unit vectors): DreamBench's DINO and CLIP-I, whichever embedding is given."""
    scores = []
    for picture, refs in zip(generated, references, strict=True):
        scores.append(float((embed(list(refs)) @ embed([picture])[0]).mean()))
    return _cosine(np.mean(scores))


def _cosine(value: Any) -> float:
    """A mean of unit vectors' dot products, held in [-1, 1]: float32 rounding puts a vector's product with itself at
    1.0000001 on some CPUs."""
    return float(np.clip(value, -1.0, 1.0))


class ImageEmbedder:
    """Unit-norm image embeddings from a vision transformer: a DINO ViT (``ViTModel``/``Dinov2Model``: the CLS
    state) or a CLIP vision tower (``CLIPVisionModelWithProjection``: the projected embedding)."""

    def __init__(self, model: Any, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.model = model.eval()
        self.mean, self.std = mean, std

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ImageEmbedder:
        """A DINO (ImageNet normalisation) or CLIP vision folder (CLIP's), read locally only."""
        from transformers import AutoConfig, AutoModel, CLIPVisionModelWithProjection

        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if config.model_type in ("clip", "clip_vision_model"):
            model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True)
            return cls(model, CLIP_MEAN, CLIP_STD)
        return cls(AutoModel.from_pretrained(str(path), local_files_only=True))

    @property
    def size(self) -> int:
        config = self.model.config
        return int(getattr(config, "image_size", None) or config.vision_config.image_size)

    @torch.no_grad()
    def embed(self, images: Sequence[Picture]) -> np.ndarray:
        """``(len(images), dim)`` unit vectors."""
        pixels = _pixels(images, self.size, self.mean, self.std).to(self.model.device, self.model.dtype)
        out = self.model(pixel_values=pixels)
        if hasattr(out, "image_embeds"):
            return _unit(out.image_embeds)
        return _unit(out.last_hidden_state[:, 0])  # DINO's CLS token

    def similarity(self, generated: Sequence[Picture], references: Sequence[Sequence[Picture]]) -> float:
        """Mean cosine between each generated picture and every reference picture of its subject."""
        return subject_similarity(self.embed, generated, references)


class ClipScorer:
    """CLIP's image and text embeddings (``CLIPModel``): CLIP-I (picture to picture) and CLIP-T (picture to
    prompt) cosines."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.images = ImageEmbedder(_VisionView(model), CLIP_MEAN, CLIP_STD)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ClipScorer:
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
        return cls(model, AutoTokenizer.from_pretrained(str(path), local_files_only=True))

    @torch.no_grad()
    def embed_text(self, prompts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        features = self.model.get_text_features(**tokens.to(self.model.device))
        return _unit(getattr(features, "pooler_output", features))

    def image_similarity(self, generated: Sequence[Picture], references: Sequence[Sequence[Picture]]) -> float:
        return self.images.similarity(generated, references)

    def text_similarity(self, generated: Sequence[Picture], prompts: Sequence[str]) -> float:
        """Mean cosine between each picture and its prompt."""
        pictures, texts = self.images.embed(generated), self.embed_text(prompts)
        return _cosine(np.mean(np.sum(pictures * texts, axis=1)))


class _VisionView:
    """A ``CLIPModel`` seen as a vision model whose output has ``image_embeds`` (for :class:`ImageEmbedder`)."""

    def __init__(self, model: Any) -> None:
        self.clip = model
        self.config = model.config
        self.device, self.dtype = model.device, model.dtype

    def eval(self) -> _VisionView:
        return self

    def __call__(self, pixel_values: torch.Tensor) -> Any:
        from types import SimpleNamespace

        features = self.clip.get_image_features(pixel_values=pixel_values)
        return SimpleNamespace(image_embeds=getattr(features, "pooler_output", features))


class SubjectMetrics:
    """DreamBench's three scores for subject-driven generation: DINO and CLIP-I (generated vs the subject's
    reference pictures) and CLIP-T (generated vs its prompt)."""

    def __init__(self, dino: ImageEmbedder, clip: ClipScorer) -> None:
        self.dino, self.clip = dino, clip

    @classmethod
    def from_pretrained(cls, *, dino: str | Path, clip: str | Path) -> SubjectMetrics:
        """From local folders: a DINO ViT (DreamBench uses ViT-S/16) and a CLIP model (ViT-B/32)."""
        return cls(ImageEmbedder.from_pretrained(dino), ClipScorer.from_pretrained(clip))

    def score(
        self, generated: Sequence[Picture], references: Sequence[Sequence[Picture]], prompts: Sequence[str]
    ) -> dict[str, float]:
        """``{"dino", "clip_i", "clip_t"}`` averaged over the generated pictures (one per prompt)."""
        return {
            "dino": self.dino.similarity(generated, references),
            "clip_i": self.clip.image_similarity(generated, references),
            "clip_t": self.clip.text_similarity(generated, prompts),
        }
