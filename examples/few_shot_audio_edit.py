#!/usr/bin/env python
"""Few-shot audio editing: show the model before/after pairs of clips, then give it a new clip.

The edit (by default "play it as sawtooth") is never said in words; the model infers it from the example
clips. Writes the clips to --out and says whether the answer is right: the change the pairs show, applied
to the query, read back with the mini world's sound probe. Exits 1 if it is wrong.

    python examples/few_shot_audio_edit.py
    python examples/few_shot_audio_edit.py --shots 1 --query "three square beeps at sol"
    python examples/few_shot_audio_edit.py --example "one sine beep at do" "one sine beep at la" \\
        --example "two square beeps at mi" "two square beeps at la"   # "play it at la"

Clips are named as the mini world's samples are: "<one|two|three> <sine|square|sawtooth> beep(s) at <note>".
"""

import argparse
import sys
from pathlib import Path

from codi2_sdk import Codi2Error, Conversation, InvalidRequestError, LocalBackend, RemoteBackend, samples
from codi2_sdk.mini.probes import probe_sound
from codi2_sdk.mini.tasks import edit_shown, parse_sound

PAIRS = [  # "play it as sawtooth", shown three times
    ("one sine beep at do", "one sawtooth beep at do"),
    ("three square beeps at la", "three sawtooth beeps at la"),
    ("two sine beeps at sol", "two sawtooth beeps at sol"),
]

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--example", nargs=2, action="append", metavar=("BEFORE", "AFTER"), help="a pair (repeat it)")
parser.add_argument("--shots", type=int, default=2, choices=(1, 2, 3), help="how many default pairs (default 2)")
parser.add_argument("--query", default="two sine beeps at mi", help="the clip to edit")
parser.add_argument("--seed", type=int, default=0, help="the answer's seed (default 0)")
parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default)")
parser.add_argument(
    "--model", default="codi2-mini", help="checkpoint: shipped name, folder, or repo id in the HF cache"
)
parser.add_argument("--url", help="a codi2 server's address, instead of --model in this process")
parser.add_argument("--api-key", help="the server's key (with --url)")
parser.add_argument("--out", type=Path, default=Path("out/few_shot_audio_edit"), help="where the clips go")


def main(args: argparse.Namespace) -> int:
    pairs = args.example or PAIRS[: args.shots]

    try:
        shown = [(samples.sound(before, seed=1), samples.sound(after, seed=2)) for before, after in pairs]
        query = samples.sound(args.query, seed=3)
    except InvalidRequestError as exc:
        parser.error(str(exc))  # a description the mini world cannot play

    backend = RemoteBackend(args.url, api_key=args.api_key) if args.url else LocalBackend.from_pretrained(args.model)
    conv = Conversation(backend)
    for before_clip, after_clip in shown:
        conv.add_example(inputs=before_clip, outputs=after_clip)
    config = {"seed": args.seed, "output_modality": "audio", "text": {"temperature": args.temperature}}
    answer = conv.send(query, config=config)

    args.out.mkdir(parents=True, exist_ok=True)
    for i, (before_clip, after_clip) in enumerate(shown, 1):
        before_clip.save(args.out / f"example{i}_before.wav")
        after_clip.save(args.out / f"example{i}_after.wav")
    query.save(args.out / "query.wav")
    edited = answer.audios[0]
    edited.save(args.out / "answer.wav")

    expected = edit_shown([(parse_sound(b), parse_sound(a)) for b, a in pairs], parse_sound(args.query))
    heard = probe_sound(edited.to_numpy())
    print(f"query: {args.query}")
    said = heard.describe() if heard else "no sound"
    if expected is None:
        print(f"answer: {said} (not checked: the pairs show no one edit)")
    else:
        print(f"answer: {said} ({'right' if heard == expected else 'wrong'}; expected {expected.describe()})")
    print(f"files in {args.out}/")
    return 0 if expected is None or heard == expected else 1  # a wrong answer fails the run (the tests run it)


if __name__ == "__main__":
    try:
        sys.exit(main(parser.parse_args()))
    except Codi2Error as exc:  # a server that is down, a checkpoint that is not there: one line, not a traceback
        sys.exit(f"{parser.prog}: error: {exc}")
