"""Scale-out on Ray Serve: a local Ray instance started by the test, two replicas of one thread each behind
Ray's HTTP proxy, a mixed load through the real RemoteBackend with no errors, and the same bytes as local."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from codi2_sdk import AuthenticationError, GenerationRequest, Image, RemoteBackend, user
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.world import Picture, render_picture

ray = pytest.importorskip("ray")  # the "ray" extra; CI installs it (.[all])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def requests() -> list[GenerationRequest]:
    query = Image.from_pil(render_picture(Picture("square", "green", "large", "left"), np.random.default_rng(0)))
    turns = [
        ([query, "what is this?"], {"seed": 1}),
        (["draw a small red circle on the left."], {"seed": 2, "output_modality": "image"}),
        ([query, "what does it sound like?"], {"seed": 3, "output_modality": "audio"}),
    ]
    return [GenerationRequest(messages=[user(*parts)], config=config) for parts, config in turns] * 2


@pytest.fixture(scope="module")
def ray_url():
    from ray import serve

    from codi2_sdk.server import ServerSettings
    from codi2_sdk.server.ray import serve_on_ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        object_store_memory=100 * 1024 * 1024,
    )
    try:
        settings = ServerSettings(port=free_port(), api_key="sesame")
        url = serve_on_ray(settings, replicas=2, threads_per_replica=1, blocking=False)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_a_mixed_load_with_the_same_bytes_as_local(ray_url: str) -> None:
    from ray import serve

    status = serve.status().applications["codi2"]
    assert status.status == "RUNNING"
    assert status.deployments["codi2"].replica_states.get("RUNNING") == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each replica runs: thread counts change float rounding, and so the bytes
    try:
        wanted = [LocalBackend.from_pretrained("codi2-mini").generate(r) for r in requests()]
    finally:
        torch.set_num_threads(threads)
    with RemoteBackend(ray_url, api_key="sesame", max_retries=5, timeout=120) as remote, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(remote.generate, requests()))
    assert [a.model_dump() for a in answers] == [w.model_dump() for w in wanted]
    with pytest.raises(AuthenticationError), RemoteBackend(ray_url, api_key="wrong", max_retries=0) as remote:
        remote.generate(requests()[0])
