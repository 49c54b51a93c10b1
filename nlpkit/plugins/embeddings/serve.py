"""``nlpkit serve`` route of the embeddings task: OpenAI-shaped ``POST /v1/embeddings``.

``{"input": str | [str], "model": ..., "encoding_format": "float" | "base64", "dimensions": n}`` ->
``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model", "usage"}``. Each
text's vector is exactly ``nlpkit.pipeline(run)(text)`` (requests are merged into the pipeline's length-sorted
batches by the server); a blank text is a 422 naming it. ``encoding_format="base64"`` sends little-endian float32
bytes, as OpenAI does (the official ``openai`` client asks for it). ``usage`` counts the tokens the model read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter
from pydantic import Field

from nlpkit.openai_embeddings import EmbeddingsRequest as OpenAIEmbeddingsRequest
from nlpkit.openai_embeddings import EmbeddingsResponse, embeddings_body

if TYPE_CHECKING:
    from nlpkit.serve.app import Server


class EmbeddingsRequest(OpenAIEmbeddingsRequest):
    dimensions: Optional[int] = Field(None, ge=1, description="Accepted when it is the model's vector length; "
                                                              "any other value is refused (no truncation).")


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
        tokens = sum(len(ids) for ids in task.tokenizer(texts, truncation=True,
                                                        max_length=task.cfg.data.max_length)["input_ids"])
        return embeddings_body(vectors, request.encoding_format, server.model_name, tokens)

    return router
