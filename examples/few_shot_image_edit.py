#!/usr/bin/env python
"""Few-shot image editing: show codi2-mini two before/after pairs, then give it a new picture.

The edit (here: "make it blue") is never said in words; the model infers it from the examples, as
CoDi-2 does. Writes the inputs and the answer to ./out/few_shot_image_edit/ and says whether the
answer is right (read back with the mini world's probe); exits 1 if it is not.

    python examples/few_shot_image_edit.py
"""

import sys
from pathlib import Path

import numpy as np

from codi2_sdk import Conversation, Image
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.world import Picture, render_picture

out = Path("out/few_shot_image_edit")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def picture(shape: str, colour: str, size: str, position: str) -> Image:
    return Image.from_pil(render_picture(Picture(shape, colour, size, position), rng))


conv = Conversation()  # codi2-mini, in-process
conv.add_example(inputs=picture("square", "red", "large", "left"), outputs=picture("square", "blue", "large", "left"))
conv.add_example(
    inputs=picture("circle", "yellow", "small", "right"), outputs=picture("circle", "blue", "small", "right")
)

query = picture("triangle", "green", "large", "center")
answer = conv.send(query, config={"seed": 0, "output_modality": "image"})

for i, example in enumerate(conv.examples, 1):
    example.inputs[0].save(out / f"example{i}_before.png")  # type: ignore[union-attr]
    example.outputs[0].save(out / f"example{i}_after.png")  # type: ignore[union-attr]
query.save(out / "query.png")
edited = answer.images[0]
edited.save(out / "answer.png")

expected = Picture("triangle", "blue", "large", "center")
seen = probe_picture(edited.to_pil())
print(f"query: {probe_picture(query.to_pil())}")
print(f"answer: {seen} ({'right' if seen == expected else 'wrong'}; expected {expected})")
print(f"files in {out}/")
sys.exit(0 if seen == expected else 1)  # a wrong answer fails the run (the tests run every example)
