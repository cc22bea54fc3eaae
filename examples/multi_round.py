#!/usr/bin/env python
"""A multi-round conversation: three edits in a row, each on the model's previous answer (every round is
checked); then the result is described (streamed), turned into sound, and the conversation is saved and
reloaded.

    python examples/multi_round.py
    python examples/multi_round.py --seed 7 --out out/multi_round_seed7
"""

import argparse
import sys
from pathlib import Path

from codi2_sdk import Codi2Error, Conversation, LocalBackend, RemoteBackend, TextDelta, samples
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.tasks import parse_picture
from codi2_sdk.mini.world import Picture

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seed", type=int, default=1, help="every answer's seed (default 1)")
parser.add_argument(
    "--model", default="codi2-mini", help="checkpoint: shipped name, folder, or repo id in the HF cache"
)
parser.add_argument("--url", help="a codi2 server's address, instead of --model in this process")
parser.add_argument("--api-key", help="the server's key (with --url)")
parser.add_argument("--out", type=Path, default=Path("out/multi_round"), help="where the pictures go")


def main(args: argparse.Namespace) -> int:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = samples.picture("a small red circle on the left")
    start.save(out / "start.png")

    backend = RemoteBackend(args.url, api_key=args.api_key) if args.url else LocalBackend.from_pretrained(args.model)
    conv = Conversation(backend, config={"seed": args.seed})
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
        drawn = seen.describe() if seen else "nothing drawn"
        print(
            f"round {i}, {words!r}: {drawn} ({'right' if seen == expected else 'wrong'}; asked for {expected.describe()})"
        )
    final = probe_picture(answer.images[0].to_pil())

    # the model reads its own picture as it reads a render
    said = ""
    print("codi2 describes it: ", end="", flush=True)
    for event in Conversation(backend).stream(answer.images[0], "what is this?", config={"seed": args.seed}):
        if isinstance(event, TextDelta):
            said += event.text
            print(event.text, end="", flush=True)
    described = parse_picture(said)
    print(
        f" ({'right' if described == final else 'wrong'}; the probe reads {final.describe() if final else 'nothing'})"
    )
    right &= described == final
    sound = Conversation(backend).send(answer.images[0], "what does it sound like?", config={"seed": args.seed})
    sound.audios[0].save(out / "sound.wav")

    path = conv.save(out / "conversation.json")
    again = Conversation.load(path)
    assert again == conv and again.history[-1].images[0].data == conv.history[-1].images[0].data
    print(f"saved and reloaded {len(again.history)} messages from {path}; files in {out}/")
    return 0 if right else 1  # a wrong round or a wrong description fails the run


if __name__ == "__main__":
    try:
        sys.exit(main(parser.parse_args()))
    except Codi2Error as exc:  # a server that is down, a checkpoint that is not there: one line, not a traceback
        sys.exit(f"{parser.prog}: error: {exc}")
