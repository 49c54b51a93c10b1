"""OpenAI's embeddings shape, shared by the tasks that serve ``POST /v1/embeddings`` (word2vec, embeddings).

The request and response schemas and :func:`embeddings_body`, which builds the answer from the vectors:
``encoding_format="base64"`` sends little-endian float32 bytes, as OpenAI does (the official ``openai`` client
asks for it). Imported only by the tasks' ``serve`` modules, so pydantic is loaded by the server alone.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Embedding", "EmbeddingsRequest", "EmbeddingsResponse", "Usage", "embeddings_body"]


class EmbeddingsRequest(BaseModel):
    """The fields every embeddings route takes (a task may add its own, e.g. ``dimensions``)."""

    model_config = ConfigDict(extra="forbid")

    input: Union[str, list[str]] = Field(description="A text, or a list of texts (answered in order).")
    model: Optional[str] = Field(None, description="Accepted for OpenAI clients; the server has one model.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes (OpenAI's client asks "
                             "for it).")
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


def embeddings_body(vectors: Sequence[Any], encoding_format: str, model: str, tokens: int) -> dict[str, Any]:
    """The response to an embeddings request: one entry per vector, in order, as floats or base64 float32."""
    data = []
    for i, vector in enumerate(vectors):
        value: Any = vector
        if encoding_format == "base64":
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
