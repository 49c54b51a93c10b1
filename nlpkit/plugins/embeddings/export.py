"""How an embeddings model goes to ONNX (``nlpkit export``): the transformer's token vectors as one graph; the
pooling and normalisation stay in :meth:`~nlpkit.plugins.embeddings.task.EmbeddingsTask.embed`, the same code for
the PyTorch model and the export (the pooling mode is the run's, recorded in its descriptor).

An int8 export keeps the fp32 graph too (the core's fallback, ``fallback.onnx``) and runs texts of at most
:data:`FP32_MAX_TOKENS` tokens on it: one dynamic int8 scale per batch loses most on the shortest texts, which are
also the cheapest to run in fp32. For this kind the descriptor's ``fallback.margin`` is that token count."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from nlpkit.onnx_runtime import EncoderKind, OnnxModel

__all__ = ["SENTENCE_ENCODER", "CHECK_TEXTS", "FP32_MAX_TOKENS", "KEEP_FP32", "TokenVectorsModel", "min_cosine"]

#: An int8 export runs the texts of at most this many tokens ([CLS] and [SEP] included) on its fp32 graph.
#: Measured on the default run (all-MiniLM-L6 fine-tuned on bible-bbe-web) over its 997 test texts, the export
#: check's texts and 77 short texts (1,074 texts), length-sorted and in random batches of 64: int8 vectors of texts
#: of 3-6 tokens fall to cosine 0.978-0.989 to PyTorch's, while every text of 7 tokens or more keeps 0.9935 or more
#: (docs/tasks/embeddings.md); 8 leaves one token of margin.
FP32_MAX_TOKENS = 8

#: Nodes int8 keeps fp32: each layer's feed-forward output projection, whose input (the GELU output) has the
#: widest activation range; one dynamic int8 scale per batch loses most there. Without them every text of 7
#: tokens or more keeps cosine 0.9935 on the default run, with them quantized too only 0.986.
KEEP_FP32 = r"layer\.\d+/output/dense/"


class _TokenVectors(torch.nn.Module):
    """The encoder with only its token vectors as output (no pooler head in the graph)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)


class TokenVectorsKind(EncoderKind):
    """An encoder exported as ``input_ids, attention_mask -> last_hidden_state`` (per token), opened as
    :class:`TokenVectorsModel`. int8 quantizes the weight MatMuls only: the fused Attention nodes (query/key/value
    projections) stay fp32, and so do the :data:`KEEP_FP32` projections (the task's spec keeps them with its
    fallback too). The fp32 graph is kept as the fallback for texts of at most :data:`FP32_MAX_TOKENS` tokens."""

    #: Measured on the default run, smallest cosine of 606 texts' int8 vectors to PyTorch's (length-sorted
    #: batches of 64): every quantizable op 0.980, MatMul only 0.978, MatMul only with :data:`KEEP_FP32` fp32 0.989
    #: (mean 0.9975); the worst texts are always the shortest ("ok"), hence the fp32 graph for them.
    quantize_ops = ["MatMul"]

    def module(self, model: Any) -> torch.nn.Module:
        return _TokenVectors(model)

    def open(self, folder: str | Path, *, threads: int | None = None, trust_remote_code: bool = False) -> Any:
        return TokenVectorsModel(folder, threads=threads, trust_remote_code=trust_remote_code)


class TokenVectorsModel(OnnxModel):
    """An exported sentence encoder (:class:`~nlpkit.onnx_runtime.OnnxModel`). In an int8 export with its fp32
    graph kept (the descriptor's ``fallback``: ``margin`` is :data:`FP32_MAX_TOKENS`), the rows of a batch with at
    most ``margin`` real tokens (``attention_mask`` sum) run the fp32 graph and the others the int8 one, each
    part trimmed to its own longest row; their token vectors come back in one tensor of the batch's shape
    (padding positions zero)."""

    def __init__(self, folder: str | Path, threads: int | None = None, fallback: dict[str, Any] | None = None,
                 trust_remote_code: bool = False) -> None:
        super().__init__(folder, threads=threads, fallback=fallback, trust_remote_code=trust_remote_code)
        #: Rows with at most this many real tokens run the fp32 graph (0: none; an fp32 export has only it).
        self.max_fp32_tokens = int(self.margin) if self.fallback is not None and self.margin else 0

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 fallback: bool = True, **inputs: torch.Tensor) -> SimpleNamespace:
        """Token vectors of a batch; short rows from the fp32 graph unless ``fallback=False`` (all int8)."""
        if not (fallback and self.max_fp32_tokens and attention_mask is not None):
            return super().__call__(input_ids, attention_mask, fallback=False, **inputs)
        feeds = self._feeds(input_ids, attention_mask, inputs)
        mask = attention_mask.cpu().numpy()
        short = mask.sum(-1) <= self.max_fp32_tokens
        if not short.any():
            return self._as_outputs(self.session.run(self.output_names, feeds))
        if short.all():
            return self._as_outputs(self.fallback.run(self.output_names, feeds))
        outputs: list[np.ndarray] = []
        for rows, session in ((np.flatnonzero(~short), self.session), (np.flatnonzero(short), self.fallback)):
            width = int(np.flatnonzero(mask[rows].any(0))[-1]) + 1  # past the rows' last real token
            got = session.run(self.output_names, {k: v[rows, :width] for k, v in feeds.items()})
            if not outputs:
                outputs = [np.zeros(mask.shape + o.shape[2:], dtype=o.dtype) for o in got]
            for whole, part in zip(outputs, got):
                whole[rows, :width] = part
        return self._as_outputs(outputs)


SENTENCE_ENCODER = TokenVectorsKind("sentence-encoder", {"last_hidden_state": {0: "batch", 1: "sequence"}},
                                    supports_fallback=True)

#: The export check's texts: short and long, questions and statements, a few domains.
CHECK_TEXTS = [
    "How do I reset my password?",
    "Click 'Forgot password' on the sign-in page and follow the link we email you.",
    "A man is playing a guitar on a stage.",
    "In the beginning God created the heavens and the earth.",
    "Refunds reach your card within five to ten working days, depending on your bank.",
    "What is the capital of France?",
    "The committee postponed its decision until the budget figures for the next quarter were available, "
    "citing uncertainty about energy prices and the exchange rate.",
    "ok",
]


def min_cosine(reference: list[Any], exported: list[Any]) -> float:
    """The smallest cosine between a text's vector from the PyTorch model and from the export (1.0: identical
    directions); the export's agreement."""
    if not reference:
        return 1.0
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(exported, dtype=np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)).clip(1e-12)
    return float(cos.min())
