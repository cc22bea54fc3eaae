#!/usr/bin/env python
"""Subject-driven generation: show codi2-mini two pictures of an object it has never seen, then ask for
"this object" at a new size and place.

The object's look (a blue diamond with a checker painted on it) is named by no word and was held out of every
training stage; the model keeps it from the reference pictures alone, zero-shot, as CoDi-2 does on DreamBench.
Writes the pictures to
./out/subject_driven/ and says whether the answer is right: the asked size and place and the object's shape
and colour read back with the mini world's probe, and the subject kept (its DINO- and CLIP-I-style similarity
to the references at least 0.9 of what an exact render of the asked picture scores). Exits 1 if not.

    python examples/subject_driven.py
"""

import functools
import sys
from pathlib import Path

from codi2_sdk import Conversation, samples
from codi2_sdk.metrics import subject_similarity
from codi2_sdk.mini.evaluate import mini_image_features
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.world import Picture

out = Path("out/subject_driven")
out.mkdir(parents=True, exist_ok=True)

references = [
    samples.picture("a small blue diamond on the left", mark="checker", seed=1),
    samples.picture("a large blue diamond in the center", mark="checker", seed=2),
]
conv = Conversation()  # codi2-mini, in-process
answer = conv.send(*references, "draw this object large on the right.", config={"seed": 0})

for i, picture in enumerate(references, 1):
    picture.save(out / f"reference{i}.png")
drawn = answer.images[0]
drawn.save(out / "answer.png")

expected = Picture("diamond", "blue", "large", "right")
seen = probe_picture(drawn.to_pil())
exact = samples.picture("a large blue diamond on the right", mark="checker", seed=3)  # what a right answer is
kept = {}
for name, kind in (("DINO-style", "texture"), ("CLIP-I-style", "pooled")):
    embed = functools.partial(mini_image_features, kind=kind)
    score, floor = (subject_similarity(embed, [p], [references]) for p in (drawn, exact))
    kept[name] = score / floor
    print(f"{name} similarity to the references: {score:.3f} (an exact render: {floor:.3f}; ratio {score / floor:.2f})")
print(
    f"answer: {seen.describe() if seen else 'nothing drawn'} ({'right' if seen == expected else 'wrong'}; asked for "
    f"{expected.describe()}, with its checker)"
)
print(f"files in {out}/")
right = seen == expected and all(ratio >= 0.9 for ratio in kept.values())
sys.exit(0 if right else 1)  # a wrong answer fails the run (the tests run every example)
