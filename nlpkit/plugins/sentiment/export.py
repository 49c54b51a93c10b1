"""How a sentiment (text classification) model exports: the core's classifier kind, this task's check texts, and
label agreement as the comparison (:meth:`nlpkit.task.Task.export_spec`)."""

from __future__ import annotations

from typing import Any

from nlpkit.onnx_runtime import CLASSIFIER, ExportSpec

#: Nodes int8 export keeps in fp32 without a fallback (a regular expression on ONNX node names, which follow the
#: module paths): the attention output and feed-forward output projections. Their inputs (the attention context
#: and the GELU output) have the widest activation ranges, so one dynamic int8 scale per batch loses most there;
#: measured on the default sentiment model, keeping them in fp32 raises label agreement with PyTorch from 98.9%
#: to 99.5% (docs/inference.md).
KEEP_FP32 = r"/output/dense/|/out_lin/|/ffn/lin2/"
#: The fallback gap of a single-label classifier's int8 export unless one is given: measured on the default
#: sentiment model (every MatMul int8, close calls in fp32), 3.38x transformers.pipeline at 99.80% label
#: agreement, test accuracy within 0.1 point (docs/inference.md).
DEFAULT_FALLBACK_MARGIN = 0.2
CHECK_TEXTS = [
    "a gripping, beautifully shot film with a story that never lets go",
    "dull and far too long",
    "ok",
    "the cast tries hard, but the script gives them nothing to do for two hours, and the ending is a mess",
]


def _labels(prediction: Any) -> Any:
    """The label(s) of one prediction: single-label ``{"label", "score"}``, multi-label a list of them."""
    if isinstance(prediction, list):
        return sorted(p["label"] for p in prediction)
    return prediction["label"] if isinstance(prediction, dict) else prediction


def label_agreement(reference: list[Any], exported: list[Any]) -> float:
    """The share of texts given the same label(s) by both models."""
    if not reference:
        return 1.0
    return sum(_labels(a) == _labels(b) for a, b in zip(reference, exported)) / len(reference)


def export_spec(multi_label: bool) -> ExportSpec:
    """A single-label classifier's int8 export keeps its fp32 graph for close calls by default; a multi-label
    one has none (its labels are per-label thresholds rather than one best label) and keeps :data:`KEEP_FP32`
    in fp32 instead."""
    return ExportSpec(
        CLASSIFIER, check_inputs=list(CHECK_TEXTS), agreement=label_agreement, agreement_name="label_agreement",
        fallback_margin=None if multi_label else DEFAULT_FALLBACK_MARGIN, keep_fp32=KEEP_FP32,
        no_fallback_reason="a multi-label classifier, whose labels are per-label thresholds rather than one best "
                           "label, has no fp32 fallback" if multi_label else None)
