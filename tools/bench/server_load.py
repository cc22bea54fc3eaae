#!/usr/bin/env python
"""N concurrent clients against one server for a bounded time: throughput, p50/p95 latency, errors.

    python tools/bench/server_load.py [--model codi2-mini] [--clients 4] [--seconds 30] [--compare]
    python tools/bench/server_load.py --ray-replicas 2     # the same load on Ray Serve, 1 thread per replica
    python tools/bench/server_load.py --clients 8 --compare --batch-sizes 1,8   # batching off, then on

``--compare`` runs one client first, then ``--clients``, and prints the throughput ratio of the two.
``--batch-sizes`` serves with each ``max_batch_size`` in turn (1: no batching) and prints every ratio against
the first size's one client.

Each client sends text-to-image turns in a loop with retries on (429 is expected when the clients
outnumber the queue; a retried request that then succeeds is not an error). Traffic goes to 127.0.0.1
only and stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from _serve import serve

from codi2_sdk import Codi2Error, GenerationRequest, RemoteBackend, user


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


def measure(url: str, clients: int, seconds: float) -> tuple[float, list[float], list[str]]:
    latencies, errors, elapsed = asyncio.run(run(url, clients, seconds))
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    throughput = len(latencies) / elapsed
    print(
        f"{clients} clients for {elapsed:.1f} s: ok {len(latencies)}, errors {len(errors)}, {throughput:.2f} req/s",
        end="",
    )
    if latencies:
        print(f", p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    for error in errors[:5]:
        print("  error:", error)
    return throughput, latencies, errors


@contextmanager
def ray_serve(model: str, replicas: int, max_queue: int, max_batch_size: int = 1) -> Iterator[str]:
    import socket

    import ray
    from ray import serve

    from codi2_sdk.server import ServerSettings
    from codi2_sdk.server.ray import serve_on_ray

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    ray.init(num_cpus=replicas, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        settings = ServerSettings(
            model=model, port=port, max_queue=max_queue, retry_after=0, max_batch_size=max_batch_size
        )
        yield serve_on_ray(settings, replicas=replicas, threads_per_replica=1, blocking=False)
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--compare", action="store_true", help="also run 1 client first and print the ratio")
    parser.add_argument("--ray-replicas", type=int, default=0, help="serve on Ray Serve with this many replicas")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated max_batch_size values to serve with")
    args = parser.parse_args()
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    if args.ray_replicas:
        runs = [
            (
                ray_serve(args.model, args.ray_replicas, args.max_queue, size),
                f"Ray Serve, {args.ray_replicas} replicas x 1 thread, max_batch_size {size}",
            )
            for size in sizes
        ]
    else:
        # loaded by the server's loader thread, as `codi2 serve` loads it: a thread that ran torch and lives on
        # (this one would) slows every other thread's torch work (docs/server.md, "Threads")
        runs = [
            (
                serve(model=args.model, max_queue=args.max_queue, max_batch_size=size, retry_after=0),
                f"one process, {torch.get_num_threads()} torch threads, max_batch_size {size}",
            )
            for size in sizes
        ]
    baseline = None
    for server, where in runs:
        with server as url:
            print(f"model {args.model}; {where}; queue {args.max_queue}")
            single = measure(url, 1, args.seconds)[0] if args.compare else None
            many = measure(url, args.clients, args.seconds)[0]
        if single:
            baseline = baseline or single
            print(f"  throughput ratio {args.clients} clients / 1 client: {many / single:.2f}", end="")
            print(f" (/ the first setting's 1 client: {many / baseline:.2f})" if len(runs) > 1 else "")


if __name__ == "__main__":
    main()
