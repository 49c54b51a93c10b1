"""``nlpkit serve`` route of the embeddings task: OpenAI-shaped ``POST /v1/embeddings``.

``{"input": str | [str], "model": ..., "encoding_format": "float" | "base64", "dimensions": n}`` ->
``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model", "usage"}``. Each
text's vector is exactly ``nlpkit.pipeline(run)(text)`` (requests are merged into the pipeline's length-sorted
batches by the server); a blank text is a 422 naming it. ``encoding_format="base64"`` sends little-endian float32
bytes, as OpenAI does (the official ``openai`` client asks for it). ``usage`` counts the tokens the model read.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from nlpkit.serve.app import Server


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Union[str, list[str]] = Field(description="A text, or a list of texts (answered in order).")
    model: Optional[str] = Field(None, description="Accepted for OpenAI clients; the server has one model.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes (OpenAI's client asks "
                             "for it).")
    dimensions: Optional[int] = Field(None, ge=1, description="Accepted when it is the model's vector length; "
                                                              "any other value is refused (no truncation).")
    user: Optional[str] = Field(None, description="Accepted for OpenAI clients; not used.")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


def routes(server: Server) -> APIRouter:
    """``POST /v1/embeddings`` through the server's batcher (one model thread for every request)."""
    router = APIRouter(tags=["embeddings"])
    task: Any = server.task

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse,
                 summary="Sentence vectors of the texts, in OpenAI's embeddings shape.")
    async def embeddings(request: EmbeddingsRequest) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        if request.dimensions is not None and request.dimensions != task.dimension:
            raise server.error(422, f"dimensions={request.dimensions}: this model's vectors have {task.dimension} "
                                    f"numbers, and nlpkit does not truncate them.", "dimensions")
        for i, text in enumerate(texts):
            if not text.strip():
                raise server.error(422, f"input[{i}] is blank: there is nothing to embed.", f"input[{i}]")
        vectors = await server.predict(texts, {}, field="input")
        data = []
        for i, vector in enumerate(vectors):
            value: Any = vector
            if request.encoding_format == "base64":
                value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(ids) for ids in task.tokenizer(texts, truncation=True,
                                                        max_length=task.cfg.data.max_length)["input_ids"])
        return {"object": "list", "data": data, "model": server.model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return router
