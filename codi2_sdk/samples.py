"""Sample inputs for trying the SDK: codi2-mini's world rendered by description, no files needed.

>>> from codi2_sdk import samples
>>> picture = samples.picture("a small red circle on the left")
>>> clip = samples.sound("two sine beeps at mi")
>>> picture.to_pil().size, round(clip.duration, 1)
((64, 64), 1.0)

Pictures: a size (small, large), a colour (red, yellow, green, cyan, blue, magenta), a shape (circle, square,
triangle, diamond) and a position (left, center, right). Sounds: one to three beeps (``one beep``, ``two
beeps``), a timbre (sine, square, sawtooth) and a note after ``at`` (do re mi fa sol la si doh). Video clips
(8 frames at 4 fps): a picture's item ``moving to the right`` or ``moving to the left`` (with its size), or
``growing`` or ``shrinking`` (in the center, without a size). A picture can carry a subject's mark
(``mark="checker"``: ``hstripes``, ``vstripes``, ``dstripes``, ``checker``, ``spot``, ``ring``), which no word
names: the pictures for subject-driven generation ("draw this object large on the right.").
"""

from __future__ import annotations

from .content import Audio, Image, Video
from .errors import InvalidRequestError

__all__ = ["clip", "picture", "sound"]


def picture(description: str, *, mark: str = "", seed: int = 0) -> Image:
    """Render ``"a large blue square in the center"`` as a 64 x 64 PNG (``seed`` picks the small jitter;
    ``mark`` paints a subject's mark on it).

    Raises:
        InvalidRequestError: the description misses an attribute or uses words of no attribute, or the mark
            is not one of the world's.
    """
    import numpy as np

    from .mini.tasks import parse_picture
    from .mini.world import MARKS, PICTURE_ATTRIBUTES, render_picture

    item = parse_picture(description)
    if item is None:
        options = "; ".join(f"{name}: {', '.join(map(str, values))}" for name, values in PICTURE_ATTRIBUTES.items())
        raise InvalidRequestError(f"cannot draw {description!r}: name one of each ({options})")
    if mark and mark not in MARKS:
        raise InvalidRequestError(f"unknown mark {mark!r}: one of {', '.join(MARKS)}")
    return Image.from_pil(render_picture(item.with_("mark", mark), np.random.default_rng(seed)))


def sound(description: str, *, seed: int = 0) -> Audio:
    """Render ``"three square beeps at sol"`` as one second of 16 kHz WAV (``seed`` picks the small jitter).

    Raises:
        InvalidRequestError: the description misses the beep count, the timbre or the note.
    """
    import numpy as np

    from .mini.tasks import parse_sound
    from .mini.world import SAMPLE_RATE, SOUND_ATTRIBUTES, render_sound

    item = parse_sound(description)
    if item is None:
        options = "; ".join(f"{name}: {', '.join(map(str, values))}" for name, values in SOUND_ATTRIBUTES.items())
        raise InvalidRequestError(f"cannot play {description!r}: say '<count> <timbre> beeps at <note>' ({options})")
    return Audio.from_array(render_sound(item, np.random.default_rng(seed)), sample_rate=SAMPLE_RATE)


def clip(description: str, *, seed: int = 0) -> Video:
    """Render ``"a small red circle moving to the right"`` or ``"a blue square growing"`` as an MP4 clip
    (8 frames of 64 x 64 at 4 fps; ``seed`` picks the small jitter). Needs PyAV (the ``video`` extra).

    Raises:
        InvalidRequestError: the description misses the shape, the colour, or how the item moves.
    """
    import numpy as np

    from .mini.clips import CLIP_FPS, render_clip
    from .mini.tasks import parse_clip

    item = parse_clip(description)
    if item is None:
        raise InvalidRequestError(
            f"cannot show {description!r}: say 'a <size> <colour> <shape> moving to the <left|right>' or "
            "'a <colour> <shape> <growing|shrinking>'"
        )
    return Video.from_frames(render_clip(item, np.random.default_rng(seed)), fps=CLIP_FPS)
