#!/usr/bin/env python
"""Few-shot audio editing: two before/after clips show "play it as sawtooth"; a new clip follows.

python examples/few_shot_audio_edit.py
"""

import sys
from pathlib import Path

import numpy as np

from codi2_sdk import Audio, Conversation
from codi2_sdk.mini.probes import probe_sound
from codi2_sdk.mini.world import SAMPLE_RATE, Sound, render_sound

out = Path("out/few_shot_audio_edit")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def clip(note: str, timbre: str, beeps: int) -> Audio:
    return Audio.from_array(render_sound(Sound(note, timbre, beeps), rng), sample_rate=SAMPLE_RATE)


conv = Conversation()
conv.add_example(inputs=clip("do", "sine", 1), outputs=clip("do", "sawtooth", 1))
conv.add_example(inputs=clip("la", "square", 3), outputs=clip("la", "sawtooth", 3))
query = clip("mi", "sine", 2)
answer = conv.send(query, config={"seed": 0, "output_modality": "audio"})

query.save(out / "query.wav")
answer.audios[0].save(out / "answer.wav")
expected = Sound("mi", "sawtooth", 2)
heard = probe_sound(answer.audios[0].to_numpy())
print(f"answer: {heard} ({'right' if heard == expected else 'wrong'}; expected {expected})")
print(f"files in {out}/")
sys.exit(0 if heard == expected else 1)  # a wrong answer fails the run
