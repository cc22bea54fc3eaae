"""The paper's metrics, computed from local model folders: subject-driven generation (DINO, CLIP-I, CLIP-T) and
audio editing (LSD, KL, FD).

>>> from codi2_sdk.metrics import SubjectMetrics
>>> metrics = SubjectMetrics.from_pretrained(dino="weights/dino-vits16", clip="weights/clip-vit-b-32")  # doctest: +SKIP
>>> metrics.score(generated, references, prompts)                                                      # doctest: +SKIP
{'dino': 0.61, 'clip_i': 0.79, 'clip_t': 0.30}

The same functions score codi2-mini on its world (``codi2 eval``) and a full-scale model on DreamBench
(:func:`load_dreambench`) or an AudioCaps-style edit set. Nothing is downloaded: every model comes from a
local folder (or is passed in built).
"""

from .audio import AudioEditMetrics, frechet_distance, log_spectral_distance, paired_kl
from .dreambench import DreamBenchSubject, load_dreambench
from .image import ClipScorer, ImageEmbedder, SubjectMetrics, subject_similarity

__all__ = [
    "AudioEditMetrics",
    "ClipScorer",
    "DreamBenchSubject",
    "ImageEmbedder",
    "SubjectMetrics",
    "frechet_distance",
    "load_dreambench",
    "log_spectral_distance",
    "paired_kl",
    "subject_similarity",
]
