"""The ``nlpkit serve`` app: the task's routes (:meth:`~nlpkit.task.Task.serve_routes`) behind the shared ones.

Every task gets ``GET /health`` (the process answers), ``GET /ready`` (the model is loaded and warmed: one
prediction ran at startup), ``GET /metrics`` (Prometheus), ``GET /v1/models``, ``GET /`` (what is served) and the
OpenAPI page (``/docs``); and every request goes through :class:`~nlpkit.serve.limits.Guard` (request id, API
key, in-flight cap, body size). A task's routes answer through a :class:`Server`: its :meth:`Server.predict`
checks the size limits, queues the inputs for the batcher (:mod:`nlpkit.serve.batching`) and waits at most
``--timeout``; :meth:`Server.batched` does the same for any call (generation's batched streams).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from nlpkit.errors import NlpkitError
from nlpkit.serve.batching import BatcherClosed, MicroBatcher
from nlpkit.serve.limits import Guard, ServeError, error_body, request_id
from nlpkit.serve.metrics import ServeMetrics
from nlpkit.serve.settings import ServeSettings

if TYPE_CHECKING:
    from nlpkit.pipeline import Pipeline

__all__ = ["Server", "build_app", "create_app_from_env", "load_pipeline", "served_name"]

logger = logging.getLogger("nlpkit.serve")

#: Environment variables through which ``nlpkit serve --workers N`` tells each worker what to load.
MODEL_ENV, SETTINGS_ENV = "NLPKIT_SERVE_MODEL", "NLPKIT_SERVE_SETTINGS"

class Server:
    """What a task's routes work with: the pipeline, the settings, the batched :meth:`predict` and
    :meth:`batched`, the size limits and the errors (:meth:`error`). One per app."""

    def __init__(self, pipe: Pipeline, settings: ServeSettings, metrics: ServeMetrics, model_name: str):
        self.pipe, self.task, self.settings, self.metrics = pipe, pipe.task, settings, metrics
        self.model_name = model_name
        threads = settings.threads

        def model_thread() -> None:
            import torch

            if threads:
                torch.set_num_threads(threads)

        self.batcher = MicroBatcher(max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms,
                                    metrics=metrics, initializer=model_thread)
        tokenizer = getattr(self.task, "tokenizer", None)
        # Copies for the event loop (a fast tokenizer that the model thread is using, and whose truncation settings
        # predict may change, must not be entered from a second thread): the tokenizer for routes that need one
        # (chat templates), and its Rust backend without padding or truncation for the token budget's counts,
        # which skips the Python objects of transformers' __call__ (53 vs 104-202 us per text, measured).
        self.tokenizer = copy.deepcopy(tokenizer) if callable(tokenizer) else None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.token_counter = copy.deepcopy(backend) if backend is not None else None
        if self.token_counter is not None:
            self.token_counter.no_padding()
            self.token_counter.no_truncation()
        self.ready = False
        self.not_ready_reason = "warming up"
        #: The warm-up prediction run at startup (a task's routes may replace it): the task's usage example.
        self.warmup: Callable[[], Any] = lambda: self.pipe(self.task.usage_example)
        self.created = int(time.time())

    # ------------------------------------------------------------------ limits and errors
    @staticmethod
    def request_id() -> str:
        """The id of the request being served (its ``X-Request-ID``, given or made)."""
        return request_id()

    @staticmethod
    def error(status: int, message: str, param: str | None = None) -> ServeError:
        """An error answer to raise from a route: ``status``, what is wrong (and the limit or the fix), the field."""
        return ServeError(status, message, param)

    def check_size(self, texts: Sequence[str], field: str = "inputs") -> None:
        """Refuse (413, naming ``field`` and the limit) a request with more than ``--max-inputs`` texts or more than
        ``--max-chars`` characters in all."""
        s = self.settings
        if len(texts) > s.max_inputs:
            raise ServeError(413, f"{field} has {len(texts):,} items; the limit is {s.max_inputs:,} per request "
                                  f"(--max-inputs). Send them in several requests.", field)
        chars = sum(len(t) for t in texts)
        if chars > s.max_chars:
            raise ServeError(413, f"{field} has {chars:,} characters; the limit is {s.max_chars:,} per request "
                                  f"(--max-chars). Send shorter or fewer texts per request.", field)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text by the task's fast tokenizer (special tokens included); characters / 4 without one."""
        if not texts:
            return []
        if self.token_counter is not None:
            try:
                return [len(e) for e in self.token_counter.encode_batch_fast(list(texts), add_special_tokens=True)]
            except Exception:  # noqa: BLE001 - an estimate only: fall back to the character count
                pass
        return [len(t) // 4 + 1 for t in texts]

    # ------------------------------------------------------------------ model calls
    async def predict(self, inputs: list[Any], options: dict[str, Any] | None = None, *, field: str = "inputs",
                      texts: Sequence[str] | None = None, batchable: bool = True) -> list[Any]:
        """``pipe(inputs, **options)``, merged with concurrent requests of the same options into one model
        call. ``texts``: what the size limits and the token budget count (default: ``inputs``, strings).
        ``batchable=False`` runs the request alone (a seeded sample must not depend on its batch mates).

        Raises :class:`ServeError`: 413 over the size limits, 422 for an option or input the task refuses (its
        message), 503 while shutting down, 504 after ``--timeout``.
        """
        options = dict(options or {})
        pipe = self.pipe

        def call(items: list[Any]) -> list[Any]:
            return pipe(items, **options)

        return await self.batched(call, inputs, key=("predict", json.dumps(options, sort_keys=True, default=str)),
                                  field=field, texts=texts, batchable=batchable)

    async def batched(self, call: Callable[[list[Any]], Sequence[Any]], items: list[Any], *, key: Hashable,
                      field: str = "inputs", texts: Sequence[str] | None = None, batchable: bool = True,
                      retry: bool = True) -> list[Any]:
        """``call(items)``'s results, the items merged with those of concurrent requests of the same ``key``
        into one call on the model thread (``key`` must name the computation: requests with one key share the
        ``call`` of the first of them). :meth:`predict` is this with the pipeline; generation's streams use it
        with a call that streams every row (``retry=False``: a stream that has sent pieces is not run again
        when its merged call fails). Limits, timeout and errors as in :meth:`predict`."""
        texts = list(texts) if texts is not None else [x if isinstance(x, str) else json.dumps(x) for x in items]
        self.check_size(texts, field)
        if not items:
            return []
        tokens = sum(self.count_tokens(texts))
        self.metrics.tokens.labels("input").inc(tokens)
        try:
            return await asyncio.wait_for(self.batcher.submit(call, items, tokens=tokens,
                                                              key=key if batchable else None,
                                                              request_id=request_id(), retry=retry),
                                          timeout=self.settings.timeout)
        except TimeoutError:
            raise ServeError(504, f"No answer within {self.settings.timeout:g} s (--timeout); the server is busy or "
                                  f"the request is large.") from None
        except BatcherClosed as err:
            raise ServeError(503, f"{err} Retry on another instance.") from None
        except NlpkitError as err:
            raise ServeError(422, str(err), field) from None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Start the batcher and, in the background, the warm-up (``/ready`` says when it is done)."""
        self.batcher.start()
        self._warming = asyncio.ensure_future(self._warm())

    async def _warm(self) -> None:
        try:
            await self.batcher.run(self.warmup)
        except NlpkitError as err:  # the example did not fit this model (an unknown word): the path still ran
            logger.warning("warm-up: %s", err)
        except Exception as err:  # noqa: BLE001 - reported by /ready, the server keeps answering /health
            logger.exception("warm-up failed")
            self.not_ready_reason = f"warm-up failed: {type(err).__name__}: {err}"
            return
        # The loaded model, its library and the warm-up leave ~400k long-lived Python objects; every full garbage
        # collection walked them all (about a second on 2 cores, holding the GIL, stalling the event loop and the
        # model thread alike). Measured under load, collections took 60% of the event loop's time. Freezing what
        # exists now moves it out of the collector's reach; objects made per request are still collected.
        gc.collect()
        gc.freeze()
        self.ready, self.not_ready_reason = True, ""
        logger.info("ready: %s (%s)", self.model_name, self.task.name)

    async def close(self) -> None:
        """Answer what is queued, then stop the batcher and the model thread (the last step of a shutdown)."""
        await self.batcher.close()


# --------------------------------------------------------------------------------------------- the app


def served_name(model: str | Path) -> str:
    """The model name the API reports for ``model``: a run folder's name (``RUN`` for ``RUN/model``), else the
    name as given (a hub id)."""
    path = Path(str(model)).expanduser()
    if path.exists():
        path = path.resolve()
        return path.parent.name if path.name == "model" else path.name
    return str(model)


def load_pipeline(model: str, settings: ServeSettings) -> Pipeline:
    """The pipeline ``nlpkit serve`` serves: a run, a model folder or an ``nlpkit export`` folder."""
    import torch

    from nlpkit.pipeline import pipeline

    if settings.threads:
        torch.set_num_threads(settings.threads)  # this thread's; the model thread sets its own (Server)
    if settings.task:
        return pipeline(settings.task, model=model, threads=settings.threads, dtype=settings.dtype)
    return pipeline(model, threads=settings.threads, dtype=settings.dtype)


def build_app(pipe: Pipeline, settings: ServeSettings | None = None, model_name: str | None = None) -> FastAPI:
    """The ASGI app serving ``pipe``: the task's routes, the shared ones, the limits (see the module docstring)."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    name = settings.model_name or model_name or "model"
    server = Server(pipe, settings, metrics, name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            # uvicorn runs this after the requests in flight are answered (SIGTERM): drain whatever is queued
            await server.close()

    app = FastAPI(title=f"nlpkit serve: {pipe.task.name} · {name}", lifespan=lifespan,
                  description=f"The {pipe.task.name} model `{name}` served by nlpkit. Every route but /health "
                              f"needs `Authorization: Bearer <key>` when the server has an API key.")
    app.state.server = server

    @app.exception_handler(ServeError)
    async def serve_error(request: Any, err: ServeError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.message, err.param), status_code=err.status,
                            headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, err: RequestValidationError) -> JSONResponse:
        status, message, param = validation_message(err.errors())
        return JSONResponse(error_body(status, message, param), status_code=status)

    @app.exception_handler(NlpkitError)
    async def user_error(request: Any, err: NlpkitError) -> JSONResponse:
        return JSONResponse(error_body(422, str(err)), status_code=422)

    @app.get("/health", tags=["service"], summary="The process is up (no API key needed).")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], summary="The model is loaded and warmed (503 until then).")
    async def ready() -> JSONResponse:
        body = {"ready": server.ready, "task": pipe.task.name, "model": name}
        if not server.ready:
            body["reason"] = server.not_ready_reason
        return JSONResponse(body, status_code=200 if server.ready else 503)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics.")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", tags=["service"], summary="The served model (OpenAI's shape).")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": server.created,
                                            "owned_by": "nlpkit", "task": pipe.task.name}]}

    app.include_router(pipe.task.serve_routes(server))

    @app.get("/", tags=["service"], summary="What this server serves.")
    async def index() -> dict[str, Any]:
        return {"task": pipe.task.name, "model": name, "docs": "/docs", "routes": sorted(paths())}

    known: set[str] = set()

    def paths() -> set[str]:
        if not known:  # the schema's paths: included routers are not listed in app.routes one by one
            known.update(app.openapi()["paths"])
            known.update(p for p in (getattr(r, "path", None) for r in app.routes) if p)
        return known

    # added innermost first: the Guard wraps CORS, so even a refused request carries its request id
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After"])
    app.add_middleware(Guard, settings=settings, metrics=metrics, routes=paths)
    return app


def _field(loc: Sequence[Any]) -> str | None:
    """``("body", "messages", 0, "content")`` -> ``messages[0].content``; the union member tags pydantic puts in
    a location (``str``, ``list[str]``) are left out."""
    parts = [x for x in list(loc)[1:] if isinstance(x, int) or not _UNION_TAG.fullmatch(str(x))]
    return "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in parts).lstrip(".") or None


_UNION_TAG = re.compile(r"str|int|float|bool|none|[\w-]+\[.*\]")


def validation_message(errors: Sequence[dict[str, Any]]) -> tuple[int, str, str | None]:
    """(status, one-line message, field) of FastAPI's validation errors: malformed JSON -> 400; an unknown field,
    a missing one or a wrong type -> 422 naming the field (``messages[0].content``) and what was expected."""
    if not errors:
        return 422, "Invalid request.", None
    first = errors[0]
    field = _field(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        where = (first.get("ctx") or {}).get("error", "")
        return 400, f"The request body is not valid JSON{f' ({where})' if where else ''}.", "body"
    if first.get("type") == "extra_forbidden":
        return 422, f"Unknown field {field!r}: this route does not take it (see /docs for its fields).", field
    if first.get("type") == "missing":
        return 422, f"Missing field {field!r}.", field
    same = [e for e in errors if _field(e.get("loc", ())) == field]  # one per member of a union type
    wants = list(dict.fromkeys(e.get("msg", "invalid value") for e in same))
    prefix = "Input should be "
    what = f"expected {' or '.join(w.removeprefix(prefix) for w in wants)}" if all(
        w.startswith(prefix) for w in wants) else "; ".join(wants)
    given = first.get("input")
    shown = json.dumps(given)[:80] if isinstance(given, (str, int, float, bool, type(None))) else type(given).__name__
    message = f"{field or 'body'}: {what} (got {shown})."
    more = len({_field(e.get("loc", ())) for e in errors}) - 1
    if more > 0:
        message += f" ({more} more field{'s' if more > 1 else ''} with problems.)"
    return 422, message, field


def create_app_from_env() -> FastAPI:
    """The app of one ``--workers`` process: the model and settings named in the environment, loaded here."""
    from nlpkit.serve.command import configure_logging

    settings = ServeSettings.from_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level)  # a new process: the parent's logging set-up is not inherited
    model = os.environ[MODEL_ENV]
    return build_app(load_pipeline(model, settings), settings, served_name(model))
