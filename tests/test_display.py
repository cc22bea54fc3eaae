"""Notebook display: pictures, audio and video players, messages and conversations as HTML."""

from __future__ import annotations

import base64
import io

import numpy as np
import PIL.Image

from codi2_sdk import Conversation, Image, Video, assistant, user
from codi2_sdk.testing import ScriptedBackend, fake_audio, fake_image


def test_media_show_as_pictures_and_players() -> None:
    picture = fake_image()
    assert PIL.Image.open(io.BytesIO(picture._repr_png_())).size == picture.to_pil().size
    jpeg = Image.from_pil(picture.to_pil(), format="JPEG")
    assert jpeg._repr_png_().startswith(b"\x89PNG")  # converted for the notebook
    clip = fake_audio()
    player = clip._repr_html_()
    assert player.startswith("<audio controls") and base64.b64encode(clip.data).decode() in player
    video = Video.from_frames(np.zeros((2, 16, 16, 3), dtype=np.uint8), fps=2)
    assert video._repr_html_().startswith("<video controls")


def test_messages_and_conversations_render_every_part_with_text_escaped() -> None:
    message = user("<script>alert(1)</script> draw this", fake_image())
    shown = message._repr_html_()
    assert "&lt;script&gt;" in shown and "<script>" not in shown and '<img src="data:image/png;base64,' in shown
    conv = Conversation(backend=ScriptedBackend([assistant("a sound:", fake_audio())]))
    conv.add_example(inputs=fake_image(), outputs=fake_image())
    conv.send("play it")
    page = conv._repr_html_()
    assert page.count("<img") == 2 and "<audio controls" in page and "<b>user</b>" in page and "&rarr;" in page
