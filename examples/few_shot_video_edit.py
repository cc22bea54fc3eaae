#!/usr/bin/env python
"""Few-shot video editing: show codi2-mini two before/after pairs of clips, then give it a new clip.

The edit (here: "make it green") is never said in words; the model infers it from the example clips, as
CoDi-2 infers an edit from example pairs. Writes the clips to ./out/few_shot_video_edit/ and says whether
the answer is right (read back with the mini world's clip probe); exits 1 if it is not.

    python examples/few_shot_video_edit.py
"""

import sys
from pathlib import Path

from codi2_sdk import Conversation, samples
from codi2_sdk.mini.clips import Clip, probe_clip

out = Path("out/few_shot_video_edit")
out.mkdir(parents=True, exist_ok=True)

conv = Conversation()  # codi2-mini, in-process
conv.add_example(
    inputs=samples.clip("a large red square moving to the right", seed=1),
    outputs=samples.clip("a large green square moving to the right", seed=2),
)
conv.add_example(
    inputs=samples.clip("a yellow circle growing", seed=3),
    outputs=samples.clip("a green circle growing", seed=4),
)

query = samples.clip("a small blue triangle moving to the left", seed=5)
answer = conv.send(query, config={"seed": 0, "output_modality": "video"})

for i, example in enumerate(conv.examples, 1):
    example.inputs[0].save(out / f"example{i}_before.mp4")  # type: ignore[union-attr]
    example.outputs[0].save(out / f"example{i}_after.mp4")  # type: ignore[union-attr]
query.save(out / "query.mp4")
edited = answer.videos[0]
edited.save(out / "answer.mp4")

expected = Clip("triangle", "green", "small", "leftward")
seen = probe_clip(edited.to_frames())
print(f"query: {probe_clip(query.to_frames())}")
print(f"answer: {seen} ({'right' if seen == expected else 'wrong'}; expected {expected})")
print(f"files in {out}/")
sys.exit(0 if seen == expected else 1)  # a wrong answer fails the run (the tests run every example)
