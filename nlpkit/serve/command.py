"""The ``nlpkit serve`` command: options -> :class:`~nlpkit.serve.settings.ServeSettings` -> uvicorn.

uvicorn owns the process: on SIGTERM or Ctrl+C it stops accepting connections, lets the requests in flight
finish (at most ``graceful_timeout`` seconds), then runs the app's shutdown, which answers whatever is still
queued before the model thread stops; the process then exits 0. One process runs
:class:`~nlpkit.serve.draining.DrainingServer`, which also answers requests delivered to idle connections just
before the signal. ``--workers N`` starts N processes through an app factory
(:func:`nlpkit.serve.app.create_app_from_env`), each loading the model once, under uvicorn's own server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from nlpkit.config import DTYPES
from nlpkit.errors import ConfigError
from nlpkit.report import DISTRIBUTION
from nlpkit.serve.ray_engine import add_ray_options, serve_on_ray
from nlpkit.serve.settings import API_KEY_ENV, ServeSettings

if TYPE_CHECKING:
    import argparse

__all__ = ["INSTALL_HINT", "add_serve_command", "configure_logging", "require_server", "serve"]

#: How to install the extra (by nlpkit's name on the package index, which is not its import name).
INSTALL_HINT = f'pip install "{DISTRIBUTION}[serve]"'

LOG_FORMAT = "%(asctime)s %(levelname)s nlpkit.serve [%(request_id)s] %(message)s"


def require_server() -> None:
    """Raise a :class:`ConfigError` saying how to install the extra when FastAPI, uvicorn or prometheus_client
    is missing."""
    missing = []
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"nlpkit serve needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed: {INSTALL_HINT}")


def configure_logging(level: str) -> None:
    """One line per request and per event on stderr, each with its request id."""
    from nlpkit.serve.limits import RequestIdFilter

    log = logging.getLogger("nlpkit.serve")
    if not any(getattr(h, "_nlpkit_serve", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestIdFilter())
        handler._nlpkit_serve = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.propagate = False
    log.setLevel("DEBUG" if level.lower() == "trace" else level.upper())


def quiet_exit_on_signals() -> None:
    """SIGTERM ends the process with status 0 and Ctrl+C with 130, without a traceback.

    uvicorn handles both while it serves (a graceful shutdown), then raises the signal again for the handler it
    found: this one, so a shutdown that answered every request is a success, not a death by signal. Before
    uvicorn starts (while the model loads) the same handler stops the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def leave(sig: int, frame: Any) -> None:
        raise SystemExit(0 if sig == signal.SIGTERM else 128 + sig)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


def serve(model: str, settings: ServeSettings | None = None) -> None:
    """Serve ``model`` (a run, model folder or export) until SIGTERM/Ctrl+C (see the module docstring)."""
    require_server()
    import uvicorn

    from nlpkit.serve.app import MODEL_ENV, SETTINGS_ENV, build_app, load_pipeline, served_name
    from nlpkit.serve.draining import DrainingServer

    settings = settings or ServeSettings()
    configure_logging(settings.log_level)
    quiet_exit_on_signals()
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": settings.log_level.lower(),
                              "access_log": False,  # our own line per request carries its id
                              "timeout_graceful_shutdown": settings.graceful_timeout, "lifespan": "on"}
    if settings.workers > 1:
        os.environ[MODEL_ENV], os.environ[SETTINGS_ENV] = model, settings.to_json()
        if settings.api_key:
            os.environ[API_KEY_ENV] = settings.api_key  # inherited by the workers, never on a command line
        uvicorn.run("nlpkit.serve.app:create_app_from_env", factory=True, workers=settings.workers, **common)
        return
    app = build_app(load_pipeline(model, settings), settings, served_name(model))
    DrainingServer(uvicorn.Config(app, **common)).run()


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    """``nlpkit serve RUN_OR_EXPORT [options]`` (called by the CLI's parser)."""
    d = ServeSettings.__dataclass_fields__
    default = {name: f.default for name, f in d.items()}
    p = subparsers.add_parser(
        "serve", help=f"Serve a run or export over HTTP: batched, OpenAI-compatible routes, metrics ({INSTALL_HINT}).",
        description="Puts a run, a model folder or an `nlpkit export` folder behind an HTTP API: sentiment POST "
                    "/v1/classify; translation POST /v1/translate; word2vec POST /v1/embeddings (OpenAI's shape), "
                    "/v1/neighbors, /v1/similarity, /v1/analogy; generation OpenAI's POST /v1/completions and "
                    "/v1/chat/completions (stream: true as server-sent events) and GET /v1/models. Every task: "
                    "GET /health, /ready, /metrics (Prometheus), the OpenAPI page at /docs. Concurrent requests "
                    "are merged into batched model calls. SIGTERM or Ctrl+C finishes the requests in flight, "
                    f"then exits. Needs the serve extra: {INSTALL_HINT}.")
    p.add_argument("model", metavar="RUN_OR_EXPORT", help="Run folder, model folder, `nlpkit export` folder or "
                                                          "model id (with --task).")
    p.add_argument("--host", default=default["host"],
                   help="Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network, put "
                        "an API key on it).")
    p.add_argument("--port", type=int, default=default["port"], help="Port (default %(default)s; 0: any free one).")
    p.add_argument("--max-batch-tokens", type=int, default=default["max_batch_tokens"],
                   help="Most tokens (estimated with the model's tokenizer) that concurrent requests merged into one "
                        "model call may hold (default %(default)s). One larger request still runs, alone.")
    p.add_argument("--max-wait-ms", type=float, default=default["max_wait_ms"],
                   help="How long a request waits for others to join its batch when the model is idle (default "
                        "%(default)s ms; 0: never wait). Requests that arrive while the model is busy are merged "
                        "anyway.")
    p.add_argument("--max-concurrency", type=int, default=default["max_concurrency"],
                   help="Requests in flight at once, queued or running (default %(default)s); more are answered 429 "
                        "with Retry-After instead of queueing without bound.")
    p.add_argument("--max-inputs", type=int, default=default["max_inputs"],
                   help="Texts (prompts, messages, words) in one request (default %(default)s; more: 413).")
    p.add_argument("--max-chars", type=int, default=default["max_chars"],
                   help="Characters of all texts of one request together (default %(default)s; more: 413).")
    p.add_argument("--max-body-bytes", type=int, default=None,
                   help="Bytes of one request body (default: 4 x --max-chars + 64 KiB; more: 413).")
    p.add_argument("--timeout", type=float, default=default["timeout"],
                   help="Seconds a request may take, queueing included (default %(default)s; then 504).")
    p.add_argument("--api-key", default=None,
                   help=f"Require 'Authorization: Bearer KEY' on every route but /health (401 otherwise). Prefer the "
                        f"{API_KEY_ENV} environment variable: a command line is visible to other users.")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", dest="cors_origins",
                   help="Let web pages from ORIGIN (e.g. https://app.example.com; * for any) call the API from a "
                        "browser; repeat for several. Default: CORS off.")
    p.add_argument("--workers", type=int, default=default["workers"],
                   help="Server processes (default 1), each with its own copy of the model and its own batcher "
                        "and metrics; more help only with cores to spare.")
    p.add_argument("--threads", type=int, default=None,
                   help="Threads of the model, torch or ONNX Runtime (default: the physical cores, shared by the "
                        "workers).")
    p.add_argument("--dtype", default=None, choices=DTYPES,
                   help="Precision the weights are loaded in (default: the run's, float32 unless it was trained "
                        "otherwise). bfloat16 halves the memory and, on a GPU or a CPU with bf16 instructions "
                        "(AVX512-BF16, AMX), runs faster, with scores a little off the fp32 ones; elsewhere it is "
                        "slower. An export keeps the precision it was exported in.")
    p.add_argument("--task", default=None, help="Task name, when the model is not an nlpkit run or export.")
    p.add_argument("--model-name", default=None,
                   help="The model name the API reports (/v1/models; default: the run folder's name).")
    p.add_argument("--log-level", default=default["log_level"],
                   choices=("critical", "error", "warning", "info", "debug", "trace"),
                   help="Log detail (default %(default)s: a line per request with its id; debug: each model "
                        "call with its batch).")
    add_ray_options(p)  # --engine ray --replicas N (nlpkit.serve.ray_engine)

    def run(args: argparse.Namespace) -> None:
        options = {k: getattr(args, k) for k in ("host", "port", "max_batch_tokens", "max_wait_ms", "max_concurrency",
                                                 "max_inputs", "max_chars", "max_body_bytes", "timeout", "api_key",
                                                 "cors_origins", "workers", "threads", "dtype", "task", "model_name",
                                                 "log_level")}
        if args.engine == "ray":
            return serve_on_ray(args.model, ServeSettings(**options), args)
        serve(args.model, ServeSettings(**options))

    p.set_defaults(fn=run)
