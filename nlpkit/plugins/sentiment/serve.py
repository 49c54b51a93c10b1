"""``nlpkit serve`` routes of the sentiment task: ``POST /v1/classify``.

``{"inputs": "a text" | ["text", ...], "top_k": k}`` -> ``{"model": ..., "predictions": ...}`` where
``predictions`` is exactly what ``nlpkit.pipeline(run)(inputs, top_k=k)`` gives: for one text one prediction, for
a list a list. A prediction is ``{"label", "score"}`` (single-label, the best label) or a list of them, best
first (multi-label: the labels over their decision thresholds; with ``top_k``: the k best; ``top_k: null``:
every label). FastAPI and pydantic are imported by the server only (``nlpkit serve``), never by the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from nlpkit.serve.app import Server


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Union[str, list[str]] = Field(description="A text, or a list of texts (answered in the same order).")
    top_k: Optional[int] = Field(None, ge=0, description="The k best labels of each text with their scores, best "
                                 "first (0 or null: every label). Left out: the best label (single-label) or "
                                 "the labels over their thresholds (multi-label).")


class Prediction(BaseModel):
    label: Optional[str] = Field(description="The label (null for a blank text).")
    score: Optional[float] = Field(description="Its probability: softmax (single-label) or sigmoid (multi-label).")


class ClassifyResponse(BaseModel):
    model: str
    predictions: Union[Prediction, list[Prediction], list[list[Prediction]]] = Field(
        description="What nlpkit.pipeline gives for these inputs: one prediction (or list of them) per text.")


def routes(server: Server) -> APIRouter:
    """``POST /v1/classify`` through the server's batcher."""
    router = APIRouter(tags=["sentiment"])

    @router.post("/v1/classify", response_model=ClassifyResponse,
                 summary="Classify texts: labels and scores, as nlpkit.pipeline gives them.")
    async def classify(request: ClassifyRequest) -> dict[str, Any]:
        single = isinstance(request.inputs, str)
        texts = [request.inputs] if single else list(request.inputs)
        options = {"top_k": request.top_k} if "top_k" in request.model_fields_set else {}
        predictions = await server.predict(texts, options)
        return {"model": server.model_name, "predictions": predictions[0] if single else predictions}

    return router
