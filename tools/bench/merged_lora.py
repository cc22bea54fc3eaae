#!/usr/bin/env python
"""Decoding with the LoRA merged into the LLM's weights against the adapter beside them, in tokens per second.

    python tools/bench/merged_lora.py [--tokens 64] [--repeats 5] [--threads 2]

Two LLMs, each decoded by transformers' ``generate`` (greedy, exactly ``--tokens`` new tokens after a 32-token
prompt): codi2-mini's (its shipped rank-8 LoRA, as ``LocalBackend(merge_lora=True)`` merges it), and a random
~100 M-parameter Llama (768 wide, 12 layers) with the paper's rank-128 LoRA on q, k, v and o. Each line prints
the two rates and merged / adapter. Interleaved, median of ``--repeats``. Run it alone
(two torch processes on two cores slow each other down).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from _compare import interleaved_medians
from _models import mid_llama

from codi2_sdk.model import CoDi2Model


def _mid_llama(rank: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """:func:`mid_llama` with a rank-``rank`` LoRA (its B matrices random, so merging changes the weights), and the
    same model merged."""
    import copy

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(
        mid_llama(), LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    )
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.01)
    merged = copy.deepcopy(lora).merge_and_unload()
    return lora.eval(), merged.eval()


def _generate_rate(llm: torch.nn.Module, tokens: int) -> float:
    vocab = int(llm.get_input_embeddings().weight.shape[0])
    ids = torch.randint(3, vocab, (1, 32), generator=torch.Generator().manual_seed(0))
    began = time.perf_counter()
    with torch.no_grad():
        llm.generate(input_ids=ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)
    return tokens / (time.perf_counter() - began)


def _compare(name: str, adapter: object, merged: object, tokens: int, repeats: int) -> None:
    rates = interleaved_medians(
        {"adapter": lambda: _generate_rate(adapter, tokens), "merged": lambda: _generate_rate(merged, tokens)}, repeats
    )
    a, m = rates["adapter"], rates["merged"]
    print(f"{name:34}: adapter {a:7.1f} tok/s, merged {m:7.1f} tok/s, merged / adapter {m / a:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), {args.tokens} tokens, median of {args.repeats}")
    adapter = CoDi2Model.from_pretrained("codi2-mini")
    merged = CoDi2Model.from_pretrained("codi2-mini")
    merged.merge_lora()
    _compare("codi2-mini's LLM (rank 8)", adapter.llm, merged.llm, args.tokens, args.repeats)
    lora, flat = _mid_llama(rank=128)
    _compare("Llama ~100M (rank 128)", lora, flat, args.tokens, args.repeats)


if __name__ == "__main__":
    main()
