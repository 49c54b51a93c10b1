"""``nlpkit serve`` routes of the word2vec task: OpenAI-shaped embeddings, neighbours, similarity, analogies.

* ``POST /v1/embeddings`` ``{"input": str | [str], "model": ..., "encoding_format": "float" | "base64"}`` ->
  ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model", "usage"}``:
  each text's vector is ``nlpkit.pipeline(run)(text, mode="text")`` (the mean of its known words' vectors; a text
  with no known word is refused, 422, naming it). The official ``openai`` client works against it (it asks
  for base64: little-endian float32, as OpenAI sends).
* ``POST /v1/neighbors`` ``{"inputs": word | [words], "topn": 10}`` -> ``{"neighbors": ...}`` (``mode="neighbors"``).
* ``POST /v1/similarity`` ``{"pairs": [["cat", "dog"], ...]}`` -> ``{"similarities": [...]}``.
* ``POST /v1/analogy`` ``{"queries": [["man", "king", "woman"], ...], "topn": 10}`` -> ``{"answers": [...]}``
  (a is to b as c is to ?).

A word the vectors do not know is a 422 whose message names it and the closest known spellings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from nlpkit.openai_embeddings import EmbeddingsRequest, EmbeddingsResponse, embeddings_body
from nlpkit.plugins.word2vec.text import tokenize

if TYPE_CHECKING:
    from nlpkit.serve.app import Server


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Neighbor(BaseModel):
    word: str
    score: float


class NeighborsRequest(_Strict):
    inputs: Union[str, list[str]] = Field(description="A word, or a list of words.")
    topn: int = Field(10, ge=1, le=1000, description="How many nearest words.")


class NeighborsResponse(BaseModel):
    model: str
    neighbors: Union[list[Neighbor], list[list[Neighbor]]] = Field(
        description="The nearest words by cosine similarity, nearest first (a list per word for a list).")


class SimilarityRequest(_Strict):
    pairs: list[tuple[str, str]] = Field(description="Word pairs: [[\"cat\", \"dog\"], ...].")


class SimilarityResponse(BaseModel):
    model: str
    similarities: list[float] = Field(description="The cosine similarity of each pair, in order.")


class AnalogyRequest(_Strict):
    queries: list[tuple[str, str, str]] = Field(description="[a, b, c] triples: a is to b as c is to ?")
    topn: int = Field(10, ge=1, le=1000, description="How many answers per query.")


class AnalogyResponse(BaseModel):
    model: str
    answers: list[list[Neighbor]] = Field(description="The words nearest to b - a + c, for each query.")


def routes(server: Server) -> APIRouter:
    """The four routes, each through the server's batcher (one model thread for every request)."""
    router = APIRouter(tags=["word2vec"])
    task = server.task
    # warm the nearest-neighbour path on a word the vectors surely have (the usage example may be missing)
    server.warmup = lambda: server.pipe(task.model.index_to_key[:1], mode="neighbors", topn=1)

    @router.post("/v1/embeddings", response_model=EmbeddingsResponse,
                 summary="Text vectors (mean of the known words' vectors), in OpenAI's embeddings shape.")
    async def embeddings(request: EmbeddingsRequest) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        vectors = await server.predict(texts, {"mode": "text"}, field="input")
        for i, vector in enumerate(vectors):
            if vector is None:
                raise server.error(422, f"input[{i}] ({texts[i][:60]!r}) has no word the vectors know, so it has "
                                        f"no vector.", f"input[{i}]")
        tokens = sum(len(tokenize(t, task.cfg.text)) for t in texts)
        return embeddings_body(vectors, request.encoding_format, server.model_name, tokens)

    @router.post("/v1/neighbors", response_model=NeighborsResponse, summary="A word's nearest words.")
    async def neighbors(request: NeighborsRequest) -> dict[str, Any]:
        single = isinstance(request.inputs, str)
        words = [request.inputs] if single else list(request.inputs)
        found = await server.predict(words, {"mode": "neighbors", "topn": request.topn})
        return {"model": server.model_name, "neighbors": found[0] if single else found}

    @router.post("/v1/similarity", response_model=SimilarityResponse, summary="Cosine similarity of word pairs.")
    async def similarity(request: SimilarityRequest) -> dict[str, Any]:
        pairs = [tuple(p) for p in request.pairs]
        found = await server.predict(pairs, {"mode": "similarity"}, field="pairs", texts=[" ".join(p) for p in pairs])
        return {"model": server.model_name, "similarities": found}

    @router.post("/v1/analogy", response_model=AnalogyResponse, summary="a is to b as c is to ?")
    async def analogy(request: AnalogyRequest) -> dict[str, Any]:
        queries = [tuple(q) for q in request.queries]
        found = await server.predict(queries, {"mode": "analogy", "topn": request.topn}, field="queries",
                                     texts=[" ".join(q) for q in queries])
        return {"model": server.model_name, "answers": found}

    return router
