"""``nlpkit serve`` routes of the ner task: ``POST /v1/entities``.

``{"inputs": "a text" | ["text", ...]}`` -> ``{"model": ..., "entities": ...}`` where ``entities`` is exactly what
``nlpkit.pipeline(run)(inputs)`` gives: for one text its list of spans, for a list of texts a list of such lists. A
span is ``{"type", "start", "end", "score", "text"}`` (character offsets into the text). FastAPI and pydantic are
imported by the server only (``nlpkit serve``), never by the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from nlpkit.serve.app import Server


class EntitiesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Union[str, list[str]] = Field(description="A text, or a list of texts (answered in the same order).")


class Span(BaseModel):
    type: str = Field(description="The entity type (the tag without its B-/I- prefix).")
    start: int = Field(description="Offset of the entity's first character in the text.")
    end: int = Field(description="Offset just past its last character (text[start:end] is the entity).")
    score: float = Field(description="Mean softmax score of the entity's sub-words.")
    text: str = Field(description="The entity as written in the text.")


class EntitiesResponse(BaseModel):
    model: str
    entities: Union[list[Span], list[list[Span]]] = Field(
        description="What nlpkit.pipeline gives for these inputs: the spans of the text, or a list of them per text.")


def routes(server: Server) -> APIRouter:
    """``POST /v1/entities`` through the server's batcher."""
    router = APIRouter(tags=["ner"])

    @router.post("/v1/entities", response_model=EntitiesResponse,
                 summary="Find the named entities of texts: spans with type, score and character offsets.")
    async def entities(request: EntitiesRequest) -> dict[str, Any]:
        single = isinstance(request.inputs, str)
        texts = [request.inputs] if single else list(request.inputs)
        found = await server.predict(texts, {})
        return {"model": server.model_name, "entities": found[0] if single else found}

    return router
