"""Scale-out on Ray Serve: the same server app as a Ray Serve deployment with N replicas behind Ray's HTTP proxy.

Each replica is a process that loads the model once and serves the app of :func:`~codi2_sdk.server.create_app`
(same routes, auth, limits and errors); Ray's proxy spreads requests over the replicas. Each replica reserves
``threads_per_replica`` CPUs from Ray and runs torch with that many threads, so replicas on one machine do not
starve each other. On a Ray cluster, start Ray on every machine (``ray start --head`` / ``ray start
--address=...``), then run ``codi2 serve --replicas N`` (or :func:`serve_on_ray`) on the head: Ray places the
replicas where CPUs (or GPUs, ``gpus_per_replica``) are free.

Needs the ``ray`` extra (``pip install "codi2-sdk[ray]"``).
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError
from .settings import ServerSettings

__all__ = ["build_deployment", "serve_on_ray"]


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise MissingDependencyError('Ray Serve is not installed: pip install "codi2-sdk[ray]"') from None
    return serve


class CoDi2Replica:
    """One replica: loads the model with its share of threads, then serves the app."""

    def __init__(self, settings: dict[str, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.settings = ServerSettings(**settings)
        self.backend = self.settings.load_backend()

    def __serve_build_asgi_app__(self) -> Any:
        from .app import create_app

        return create_app(self.backend, self.settings)


def build_deployment(
    settings: ServerSettings | None = None,
    *,
    replicas: int = 2,
    threads_per_replica: int = 1,
    gpus_per_replica: float = 0,
) -> Any:
    """The Ray Serve application (bound deployment) serving ``settings.model`` on ``replicas`` replicas."""
    serve = _serve()
    settings = settings or ServerSettings()
    data = settings.model_dump(exclude={"host", "port", "api_key"})
    if settings.api_key is not None:
        data["api_key"] = settings.api_key.get_secret_value()
    ingress = serve.ingress()(CoDi2Replica)
    deployment = serve.deployment(
        ingress,
        name="codi2",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads_per_replica, "num_gpus": gpus_per_replica},
        max_ongoing_requests=settings.max_queue,
    )
    return deployment.bind(data, threads_per_replica)


def serve_on_ray(
    settings: ServerSettings | None = None,
    *,
    replicas: int = 2,
    threads_per_replica: int = 1,
    gpus_per_replica: float = 0,
    blocking: bool = True,
) -> str:
    """Deploy on the Ray instance this process is connected to (a local one is started if none), with Ray's
    HTTP proxy on ``settings.host:settings.port``; returns the base URL. ``blocking`` serves until stopped."""
    import ray

    serve = _serve()
    settings = settings or ServerSettings()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = build_deployment(
        settings, replicas=replicas, threads_per_replica=threads_per_replica, gpus_per_replica=gpus_per_replica
    )
    serve.run(app, name="codi2", route_prefix="/", blocking=blocking)
    return f"http://{settings.host}:{settings.port}"
