"""The options of ``nlpkit serve``, as one dataclass (the command line fills it; tests build it directly)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from nlpkit.config import DTYPES
from nlpkit.errors import ConfigError

__all__ = ["API_KEY_ENV", "ServeSettings", "default_threads"]

#: The environment variable that gives the API key when ``--api-key`` is not used (keeps it out of ``ps``).
API_KEY_ENV = "NLPKIT_API_KEY"


def default_threads(workers: int = 1) -> int:
    """The model's threads in each of ``workers`` processes: the physical cores, shared between the workers.

    The HTTP side needs little: through the whole route (limits, batcher, model thread), blank inputs were answered
    at 2,260 requests/s on 2 cores. Measured with the load test (64 clients, the default sentiment run, 2-core
    CPU, one run): one model thread answered 63.5 requests/s, two 108 (its int8 export 146 and 168).
    """
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(workers, 1))


@dataclass
class ServeSettings:
    """How ``nlpkit serve`` listens, batches and limits. Every field is a command-line option of the same name."""

    #: Address to listen on: 127.0.0.1 (this machine only) unless a user asks for more.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Most tokens (estimated from the inputs) one model call holds when requests are merged.
    max_batch_tokens: int = 16384
    #: How long the first request of a batch waits for others to join it.
    max_wait_ms: float = 5.0
    #: Requests in flight at once (queued or running); more are refused with 429 and Retry-After.
    max_concurrency: int = 256
    #: Texts (or prompts, messages) in one request.
    max_inputs: int = 256
    #: Characters of all texts of one request together.
    max_chars: int = 100_000
    #: Bytes of one request body (default: room for max_chars characters of UTF-8 plus the JSON around them).
    max_body_bytes: int | None = None
    #: Seconds one request may take, queueing included, before it is answered 504.
    timeout: float = 60.0
    #: Bearer token every route but /health requires (None: no authentication).
    api_key: str | None = field(default=None, repr=False)
    #: Origins allowed to call the API from a browser (CORS); empty: CORS off.
    cors_origins: list[str] = field(default_factory=list)
    #: Server processes, each with its own copy of the model.
    workers: int = 1
    log_level: str = "info"
    #: The model name the API reports (/v1/models, "model" fields); default: the run folder's name.
    model_name: str | None = None
    #: The task, for a model folder that is not an nlpkit run or export.
    task: str | None = None
    #: Threads of the model (torch intra-op, and ONNX Runtime for an export); default: :func:`default_threads`.
    threads: int | None = None
    #: Precision the weights are loaded in (``bfloat16``, ``float16``, ``float32``, ``auto``); default: the run's.
    dtype: str | None = None
    #: Seconds uvicorn waits for requests in flight after SIGTERM before it closes them.
    graceful_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        if self.max_body_bytes is None:
            self.max_body_bytes = 4 * self.max_chars + 65536
        if self.graceful_timeout is None:
            self.graceful_timeout = self.timeout + 5.0
        if self.threads is None:
            self.threads = default_threads(self.workers)
        self.validate()

    def validate(self) -> None:
        """Raise a :class:`ConfigError` naming the option that is out of range."""
        def at_least(name: str, low: float) -> None:
            value = getattr(self, name)
            if value is None or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} {value!r}: must be at least {low}.")

        for name in ("max_batch_tokens", "max_concurrency", "max_inputs", "max_chars", "max_body_bytes",
                     "workers", "threads"):
            at_least(name, 1)
        at_least("max_wait_ms", 0)
        at_least("port", 0)
        if self.timeout <= 0:
            raise ConfigError(f"--timeout {self.timeout!r}: must be a positive number of seconds.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r}: choose {', '.join(DTYPES)} (or leave it out: the run's).")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError(f"--log-level {self.log_level!r}: choose critical, error, warning, info, debug "
                              f"or trace.")

    def to_json(self) -> str:
        """The settings as JSON (how ``--workers`` hands them to each worker process; the key stays out:
        it is passed in the environment)."""
        values = dataclasses.asdict(self)
        values.pop("api_key")
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str, **extra: Any) -> ServeSettings:
        return cls(**{**json.loads(text), **extra})
