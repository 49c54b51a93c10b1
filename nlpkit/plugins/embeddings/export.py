"""How an embeddings model goes to ONNX (``nlpkit export``): the transformer's token vectors as one graph; the
pooling and normalisation stay in :meth:`~nlpkit.plugins.embeddings.task.EmbeddingsTask.embed`, the same code for
the PyTorch model and the export (the pooling mode is the run's, recorded in its descriptor)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nlpkit.onnx_runtime import EncoderKind

__all__ = ["SENTENCE_ENCODER", "CHECK_TEXTS", "KEEP_FP32", "min_cosine"]


class _TokenVectors(torch.nn.Module):
    """The encoder with only its token vectors as output (no pooler head in the graph)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,)


class TokenVectorsKind(EncoderKind):
    """An encoder exported as ``input_ids, attention_mask -> last_hidden_state`` (per token). int8 quantizes the
    weight MatMuls only: the fused Attention nodes (query/key/value projections) stay fp32, as does
    :data:`KEEP_FP32`."""

    #: Measured on the default run (all-MiniLM-L6 fine-tuned on bible-bbe-web), smallest cosine of 606 texts'
    #: int8 vectors to PyTorch's (length-sorted batches of 64): every quantizable op 0.980, MatMul only 0.978,
    #: MatMul only with :data:`KEEP_FP32` fp32 0.989 (mean 0.9975); the worst text is always the shortest ("ok").
    #: The export check, whose 8 texts share one padded batch, gives 0.981 with these settings: still refused.
    quantize_ops = ["MatMul"]

    def module(self, model: Any) -> torch.nn.Module:
        return _TokenVectors(model)


#: Nodes int8 keeps fp32: each layer's feed-forward output projection, whose input (the GELU output) has the
#: widest activation range; one dynamic int8 scale per batch loses most there.
KEEP_FP32 = r"layer\.\d+/output/dense/"

SENTENCE_ENCODER = TokenVectorsKind("sentence-encoder", {"last_hidden_state": {0: "batch", 1: "sequence"}})

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
