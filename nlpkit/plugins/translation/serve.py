"""``nlpkit serve`` routes of the translation task: ``POST /v1/translate``.

``{"inputs": "a sentence" | [...], <decoding options>}`` -> ``{"model": ..., "translations": ...}``, exactly what
``nlpkit.pipeline(run)(inputs, **options)`` gives: a string per source (a list of ``num_return_sequences``
strings when more than one). The decoding options are the fields of the run's ``generate`` config (``num_beams``,
``max_new_tokens``, ``do_sample``, ...), read from it so the route always takes what the pipeline takes; an
option left out keeps the run's value. Concurrent requests with the same options share one batched call.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Optional, Union

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, create_model

if TYPE_CHECKING:
    from nlpkit.serve.app import Server

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def request_model(generate: Any) -> type[BaseModel]:
    """The request schema: ``inputs`` and one optional field per decoding option of ``generate`` (a
    :class:`~nlpkit.config.GenerateConfig`), described with its help and the run's value."""
    fields: dict[str, Any] = {
        "inputs": (Union[str, list[str]], Field(description="A source text, or a list (answered in order)."))}
    for f in dataclasses.fields(generate):
        kind = _TYPES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        if kind is None:
            continue
        help_ = f.metadata.get("help", "")
        fields[f.name] = (Optional[kind], Field(None, description=f"{help_} Default: {getattr(generate, f.name)!r} "
                                                                 f"(the run's)."))
    return create_model("TranslateRequest", __config__=ConfigDict(extra="forbid"), **fields)


class TranslateResponse(BaseModel):
    model: str
    translations: Union[str, list[str], list[list[str]]] = Field(
        description="What nlpkit.pipeline gives: a translation per source (a list of them with "
                    "num_return_sequences > 1).")


def routes(server: Server) -> APIRouter:
    """``POST /v1/translate`` through the server's batcher."""
    router = APIRouter(tags=["translation"])
    TranslateRequest = request_model(server.task.cfg.generate)  # noqa: N806 - a class

    async def translate(request: Any) -> dict[str, Any]:
        single = isinstance(request.inputs, str)
        texts = [request.inputs] if single else list(request.inputs)
        options = {k: v for k, v in request.model_dump(exclude={"inputs"}).items() if v is not None}
        translations = await server.predict(texts, options)
        return {"model": server.model_name, "translations": translations[0] if single else translations}

    translate.__annotations__["request"] = TranslateRequest  # a class made here, not a name FastAPI can look up
    router.add_api_route("/v1/translate", translate, methods=["POST"], response_model=TranslateResponse,
                         summary="Translate texts with the run's decoding or the options given.")
    return router
