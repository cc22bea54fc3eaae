#!/usr/bin/env python
"""N concurrent clients against one server for a bounded time: throughput, p50/p95 latency, errors.

    python tools/bench/server_load.py [--model codi2-mini] [--clients 4] [--seconds 30]

Each client sends text-to-image turns in a loop with retries on (429 is expected when the clients
outnumber the queue; a retried request that then succeeds is not an error). Traffic goes to 127.0.0.1
only and stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _serve import serve

from codi2_sdk import Codi2Error, GenerationRequest, RemoteBackend, user
from codi2_sdk.backends.local import LocalBackend


async def client(url: str, index: int, stop_at: float, latencies: list[float], errors: list[str]) -> None:
    async with RemoteBackend(url, max_retries=30, max_retry_wait=0.5) as backend:
        i = 0
        while time.monotonic() < stop_at:
            request = GenerationRequest(
                messages=[user("draw a large red circle on the left.")],
                config={"seed": index * 1000 + i, "output_modality": "image"},
            )
            began = time.perf_counter()
            try:
                await backend.agenerate(request)
                latencies.append(time.perf_counter() - began)
            except Codi2Error as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            i += 1


async def run(url: str, clients: int, seconds: float) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    began = time.monotonic()
    await asyncio.gather(*(client(url, i, began + seconds, latencies, errors) for i in range(clients)))
    return latencies, errors, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-queue", type=int, default=8)
    args = parser.parse_args()
    backend = LocalBackend.from_pretrained(args.model)
    with serve(backend, max_queue=args.max_queue, retry_after=0) as url:
        latencies, errors, elapsed = asyncio.run(run(url, args.clients, args.seconds))
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    print(f"model {args.model}; {args.clients} clients for {elapsed:.1f} s; queue {args.max_queue}")
    print(f"requests ok {len(latencies)}, errors {len(errors)}")
    print(f"throughput {len(latencies) / elapsed:.2f} req/s")
    if latencies:
        print(f"latency p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    for error in errors[:5]:
        print("  error:", error)


if __name__ == "__main__":
    main()
