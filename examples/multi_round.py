#!/usr/bin/env python
"""A multi-round conversation: three edits in a row, each on the model's previous answer (every round is
checked); then the result is described (streamed), turned into sound, and the conversation is saved and
reloaded.

    python examples/multi_round.py
"""

import sys
from pathlib import Path

import numpy as np

from codi2_sdk import Conversation, Image, TextDelta
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.tasks import parse_picture
from codi2_sdk.mini.world import Picture, render_picture

out = Path("out/multi_round")
out.mkdir(parents=True, exist_ok=True)
start = Image.from_pil(render_picture(Picture("circle", "red", "small", "left"), np.random.default_rng(0)))
start.save(out / "start.png")

conv = Conversation(config={"seed": 1})
rounds = [
    ("make it blue.", Picture("circle", "blue", "small", "left")),
    ("move it to the right.", Picture("circle", "blue", "small", "right")),
    ("turn it into a square.", Picture("square", "blue", "small", "right")),
]
right = True
for i, (words, expected) in enumerate(rounds, 1):
    answer = conv.send(start, words) if i == 1 else conv.send(words)
    answer.images[0].save(out / f"round{i}.png")
    seen = probe_picture(answer.images[0].to_pil())
    right &= seen == expected
    print(f"round {i}, {words!r}: {seen} ({'right' if seen == expected else 'wrong'}; asked for {expected})")
final = probe_picture(answer.images[0].to_pil())

# the model reads its own picture as it reads a render
said = ""
print("codi2 describes it: ", end="", flush=True)
for event in Conversation().stream(answer.images[0], "what is this?", config={"seed": 1}):
    if isinstance(event, TextDelta):
        said += event.text
        print(event.text, end="", flush=True)
described = parse_picture(said)
print(f" ({'right' if described == final else 'wrong'}; the probe reads {final})")
right &= described == final
sound = Conversation().send(answer.images[0], "what does it sound like?", config={"seed": 1})
sound.audios[0].save(out / "sound.wav")

path = conv.save(out / "conversation.json")
again = Conversation.load(path)
assert again == conv and again.history[-1].images[0].data == conv.history[-1].images[0].data
print(f"saved and reloaded {len(again.history)} messages from {path}; files in {out}/")
sys.exit(0 if right else 1)  # a wrong round or a wrong description fails the run
