"""``nlpkit serve RUN_OR_EXPORT``: a run, a model folder or an ``nlpkit export`` behind one HTTP service.

FastAPI on uvicorn, an optional extra (``pip install "nlpkit-hf[serve]"``). Each task declares its routes
(:meth:`nlpkit.task.Task.serve_routes`: sentiment ``/v1/classify``, translation ``/v1/translate``, word2vec
``/v1/embeddings`` and friends, generation OpenAI's ``/v1/completions`` and ``/v1/chat/completions``); the server
adds ``/health``, ``/ready``, ``/metrics``, ``/v1/models``, dynamic batching across requests
(:mod:`~nlpkit.serve.batching`), limits and request ids (:mod:`~nlpkit.serve.limits`). The modules that need
FastAPI are imported only when a server is built, so ``nlpkit`` runs without the extra.
"""

from __future__ import annotations

from nlpkit.serve.command import INSTALL_HINT, add_serve_command, serve
from nlpkit.serve.settings import API_KEY_ENV, ServeSettings

__all__ = ["API_KEY_ENV", "INSTALL_HINT", "ServeSettings", "add_serve_command", "serve"]
