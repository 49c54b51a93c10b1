"""``nlpkit serve RUN --engine ray --replicas N``: the same app on Ray Serve, replicas spread over a cluster.

Each replica is a Ray Serve deployment replica that opens the model once and serves the very app ``nlpkit
serve`` serves (:func:`nlpkit.serve.app.build_app`: the task's routes, ``/health``, ``/ready``, ``/metrics``,
the limits and the batching queue), handed to Ray Serve as its ingress (``serve.ingress``, the app built on the
replica after the model is loaded). Ray Serve's HTTP proxy listens on ``--host``/``--port`` (default
127.0.0.1:8000) on the head node and routes each request to a replica; replicas are placed with Ray Serve's
default spreading over the cluster's nodes (``--replicas-per-node`` caps them per node). The Serve controller
health-checks every replica and starts a new one in place of one that died, while the others keep answering.

``--ray-config`` prints the same deployment as a Ray Serve config file (``serve run CONFIG``, ``serve deploy
CONFIG``): its ``import_path`` is :func:`build` and its ``args`` are the model, the replicas and the settings.

Ray is imported only when this engine runs (``pip install "nlpkit-hf[ray]"``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from nlpkit.errors import ConfigError, NlpkitError, UsageError
from nlpkit.report import DISTRIBUTION
from nlpkit.serve.settings import ServeSettings

__all__ = ["APP_NAME", "add_ray_options", "build", "config", "serve_on_ray"]

logger = logging.getLogger("nlpkit.serve")

#: The Ray Serve application (and deployment) name.
APP_NAME = "nlpkit"
INSTALL_HINT = f'pip install "{DISTRIBUTION}[serve,ray]"'


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """The options of ``nlpkit serve`` for the Ray engine."""
    p.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn",
                   help="uvicorn (default): this machine, --workers processes. ray: Ray Serve on a Ray cluster, "
                        f"--replicas copies spread over its nodes ({INSTALL_HINT}).")
    p.add_argument("--replicas", type=int, default=1, help="--engine ray: model replicas (default 1).")
    p.add_argument("--replicas-per-node", type=int, default=None,
                   help="--engine ray: at most this many replicas on one node (default: no cap; Ray Serve spreads "
                        "them anyway).")
    p.add_argument("--address", default=None,
                   help="--engine ray: the cluster's head (HOST:PORT; default: RAY_ADDRESS, else a Ray instance "
                        "started on this machine).")
    p.add_argument("--start-timeout", type=float, default=600.0,
                   help="--engine ray: seconds to wait for Ray Serve's HTTP proxy to serve (default %(default)s; "
                        "Ray itself gives up after a fixed 60 s, too short on a busy cluster).")
    p.add_argument("--ray-config", action="store_true",
                   help="--engine ray: print the deployment as a Ray Serve config file (for `serve run` / "
                        "`serve deploy`) and exit.")


def _deployment_options(settings: ServeSettings, replicas: int, per_node: int | None) -> dict[str, Any]:
    if replicas < 1:
        raise UsageError(f"--replicas {replicas}: must be at least 1.")
    if per_node is not None and per_node < 1:
        raise UsageError(f"--replicas-per-node {per_node}: must be at least 1.")
    if settings.workers != 1:
        raise UsageError("--workers is for --engine uvicorn; with --engine ray use --replicas.")
    options: dict[str, Any] = {
        "name": APP_NAME, "num_replicas": replicas,
        "ray_actor_options": {"num_cpus": settings.threads},
        # the app's own in-flight cap answers 429 beyond max_concurrency; Ray Serve must not queue below it
        "max_ongoing_requests": settings.max_concurrency,
        "health_check_period_s": 2.0, "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": settings.graceful_timeout,
    }
    if per_node is not None:
        options["max_replicas_per_node"] = per_node
    return options


def build(args: dict[str, Any]) -> Any:
    """The Ray Serve application for ``args`` = ``{"model", "replicas", "replicas_per_node", "settings"}`` (the
    ``args`` of a config printed by ``--ray-config``; ``settings`` are :class:`ServeSettings` fields)."""
    from ray import serve

    unknown = set(args) - {"model", "replicas", "replicas_per_node", "settings"}
    if unknown or "model" not in args:
        raise ConfigError(f"Ray Serve config args: expected model, replicas, replicas_per_node and settings; got "
                          f"{sorted(args)}.")
    settings = ServeSettings(**(args.get("settings") or {}))
    options = _deployment_options(settings, int(args.get("replicas", 1)), args.get("replicas_per_node"))
    values = settings.__dict__.copy()  # the API key travels with the replica's arguments, not in an environment

    @serve.ingress()
    class NlpkitServe:
        """One replica: loads the model once; its app is ``nlpkit serve``'s."""

        def __init__(self, model: str, values: dict[str, Any]):
            from nlpkit.serve.app import build_app, load_pipeline, served_name
            from nlpkit.serve.command import configure_logging

            settings = ServeSettings(**values)
            configure_logging(settings.log_level)
            self._app = build_app(load_pipeline(model, settings), settings, served_name(model))

        def __serve_build_asgi_app__(self) -> Any:
            return self._app

    return serve.deployment(NlpkitServe, **options).bind(str(args["model"]), values)


def config(model: str, settings: ServeSettings, replicas: int, per_node: int | None = None) -> str:
    """The Ray Serve config file (YAML) of ``nlpkit serve MODEL --engine ray``: ``serve run`` / ``serve deploy``
    it. The API key is left out (give it as NLPKIT_API_KEY in the replicas' environment)."""
    import yaml

    _deployment_options(settings, replicas, per_node)  # the same checks as the command
    values = {k: v for k, v in settings.__dict__.items() if k != "api_key"}
    path = Path(model).expanduser()
    doc = {"proxy_location": "HeadOnly", "http_options": {"host": settings.host, "port": settings.port},
           "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": "nlpkit.serve.ray_engine:build",
                             "args": {"model": str(path.resolve()) if path.exists() else model, "replicas": replicas,
                                      "replicas_per_node": per_node, "settings": values}}]}
    head = (f"# nlpkit serve {model} --engine ray --replicas {replicas}, as a Ray Serve config.\n"
            f"# On a running cluster: serve deploy THIS.yaml (or `serve run THIS.yaml` in the foreground).\n"
            f"# Every node needs nlpkit installed and the model at the same path (or a shared folder).\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def _last_line(err: BaseException) -> str:
    """The last non-empty line of an error's message (Ray puts the replica's traceback before the error)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _stop_serve_if_idle() -> None:
    """Shut Ray Serve down (its controller and HTTP proxy) when it serves no application: a later start then
    begins afresh, with its own ``--host``/``--port`` (a running Serve keeps the options it was started with)."""
    from ray import serve

    try:
        if not serve.status().applications:
            serve.shutdown()
    except Exception:  # noqa: BLE001 - best effort on the way out of a failed start; the error is reported
        logger.debug("Ray Serve could not be shut down after a failed start", exc_info=True)


def _proxy_failed(settings: ServeSettings, why: str) -> NlpkitError:
    _stop_serve_if_idle()
    return NlpkitError(f"Ray Serve's HTTP proxy for http://{settings.host}:{settings.port}/ did not start ({why}): "
                       f"check that nothing else listens on port {settings.port} (or give another --port) and that "
                       f"the head node has a free CPU (`ray status`), then start again; on a busy cluster with a "
                       f"larger --start-timeout.")


def _start_serve(settings: ServeSettings, deadline: float, limit: float) -> None:
    """``serve.start`` with its HTTP proxy on ``settings.host:port``, waiting up to ``deadline`` for the proxy
    (Ray's own wait is a fixed 60 s, ``HTTP_PROXY_TIMEOUT``, too short for a starved head node); a proxy that
    fails or does not come up in time is one line (:class:`NlpkitError`), with Serve shut down again."""
    from ray import serve
    from ray.exceptions import RayError

    try:
        serve.start(proxy_location="HeadOnly", http_options={"host": settings.host, "port": settings.port})
        return
    except TimeoutError:  # Ray gave up waiting; the proxy may still come up
        pass
    except RayError as err:  # the proxy actor failed, e.g. "Failed to bind to address '127.0.0.1:8000'"
        raise _proxy_failed(settings, _last_line(err)) from None
    logger.warning("Ray Serve's HTTP proxy is not up after Ray's fixed 60 s wait; waiting up to --start-timeout "
                   "%g s in all", limit)
    _wait_for_proxy(settings, deadline, limit)


def _wait_for_proxy(settings: ServeSettings, deadline: float, limit: float) -> None:
    """Wait until every Ray Serve HTTP proxy is HEALTHY, or stop with one line when ``deadline`` passes first."""
    from ray import serve

    proxies: dict[str, str] = {}
    while time.monotonic() < deadline:
        proxies = {node: str(getattr(state, "value", state)) for node, state in serve.status().proxies.items()}
        if proxies and all(state == "HEALTHY" for state in proxies.values()):
            return
        time.sleep(1.0)
    states = ", ".join(sorted(set(proxies.values()))) or "none running"
    raise _proxy_failed(settings, f"not serving after --start-timeout {limit:g} s; proxy {states}")


def serve_on_ray(model: str, settings: ServeSettings, args: argparse.Namespace) -> None:
    """Deploy ``model`` on the Ray cluster, serve until SIGTERM / Ctrl+C, then take the application down."""
    if args.ray_config:
        print(config(model, settings, args.replicas, args.replicas_per_node), end="")
        return
    if args.start_timeout <= 0:
        raise UsageError(f"--start-timeout {args.start_timeout:g}: must be more than 0 seconds.")
    try:
        from ray import serve
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray Serve, which is not installed: {INSTALL_HINT}") from None
    from nlpkit.ray_predict import connect

    app = build({"model": model, "replicas": args.replicas, "replicas_per_node": args.replicas_per_node,
                 "settings": dict(settings.__dict__)})
    connect(args.address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    deadline = time.monotonic() + args.start_timeout
    _start_serve(settings, deadline, args.start_timeout)
    try:
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except TimeoutError:  # the replicas are up; Ray waited its fixed 60 s for the proxy to serve them
            _wait_for_proxy(settings, deadline, args.start_timeout)
        except RuntimeError as err:  # the application's status went DEPLOY_FAILED (a replica could not start)
            if "failed" not in str(err):
                raise
            raise NlpkitError(f"Ray Serve could not start the replicas of {model}: {_last_line(err)} (the replicas' "
                              f"logs are in the Ray session's logs/serve folder).") from None
        logger.info("Serving %s on Ray Serve: %d replica(s), http://%s:%d/", model, args.replicas, settings.host,
                    settings.port)
        print(f"Serving {model} on Ray Serve with {args.replicas} replica(s) at http://{settings.host}:"
              f"{settings.port}/ (Ctrl+C to stop)", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        serve.delete(APP_NAME)
        if not serve.status().applications:
            serve.shutdown()  # the HTTP proxy too: nothing else is served
