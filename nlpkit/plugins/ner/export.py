"""How a ner (token classification) model exports: an encoder graph with per-token logits, this task's check
texts, and span agreement as the comparison (:meth:`nlpkit.task.Task.export_spec`)."""

from __future__ import annotations

from typing import Any

from nlpkit.onnx_runtime import EncoderKind, ExportSpec

#: Nodes int8 export keeps in fp32 (a regular expression on ONNX node names, which follow the module paths): the
#: attention output and feed-forward output projections, whose inputs have the widest activation ranges. Measured on
#: the default ner run (MiniLM-L6, WNUT-16, 1,887 tweets): texts with the same spans as transformers.pipeline 87.9%
#: with every MatMul int8 (5.10x its speed, test entity F1 0.5468), 91.4% with these in fp32 (3.56x, F1 0.5522;
#: fp32 0.5545). ``nlpkit export --quantize int8 --keep-fp32 ""`` quantizes them too.
KEEP_FP32 = r"/output/dense/"
#: Any encoder whose output is one row of logits per token: (batch, sequence, labels).
TOKEN_CLASSIFIER = EncoderKind("token-classifier", {"logits": {0: "batch", 1: "sequence"}})
CHECK_TEXTS = [
    "Empire State Building = ESB . Pretty bad storm here last evening .",
    "Watching the Lakers game with Sarah Connor in Los Angeles tonight",
    "ok",
    "Just bought Dior mascara at Macy 's in New York , then lunch with @paulwalk at the Apple store on 5th Avenue",
]


def _spans(prediction: Any) -> list[tuple[Any, ...]]:
    return [(s["type"], s["start"], s["end"]) for s in prediction or []]


def span_agreement(reference: list[Any], exported: list[Any]) -> float:
    """The share of texts given exactly the same spans (type and character offsets) by both models."""
    if not reference:
        return 1.0
    return sum(_spans(a) == _spans(b) for a, b in zip(reference, exported)) / len(reference)


def export_spec() -> ExportSpec:
    """fp32 must match the PyTorch logits to 1e-3; int8 keeps :data:`KEEP_FP32` in fp32 and is written whatever
    its agreement on the four check texts (the figure goes into the descriptor; ``benchmarks/ner_infer.py``
    measures it on the run's own sentences)."""
    return ExportSpec(TOKEN_CLASSIFIER, check_inputs=list(CHECK_TEXTS), agreement=span_agreement,
                      agreement_name="span_agreement", keep_fp32=KEEP_FP32)
