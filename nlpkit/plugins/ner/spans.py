"""Token scores -> entity spans, grouped as ``transformers.pipeline("token-classification",
aggregation_strategy="simple")`` groups them.

Every non-special token takes its best label and that label's softmax score; adjacent tokens whose labels have
the same type are merged unless the later one is ``B-`` (a label without a ``B-``/``I-`` prefix counts as
``I-``); groups labelled ``O`` are dropped. A span's score is the mean of its tokens' scores, its ``start`` the
first token's first character and its ``end`` the last token's end (character offsets into the text, from the
fast tokenizer's offset mapping), its ``text`` the text between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["group_spans", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, as the transformers pipeline computes it (float32 logits, max shifted)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_spans(text: str, scores: np.ndarray, offsets: Sequence[tuple[int, int]], special: Sequence[int],
                labels: Sequence[str]) -> list[dict[str, Any]]:
    """The entity spans of one text: ``{"type", "start", "end", "score", "text"}`` in text order.

    ``scores`` (tokens x labels) are the softmax scores of the text's tokens, ``offsets`` their character
    offsets, ``special`` 1 for the tokenizer's special tokens (skipped), ``labels`` the label names in id order.
    """
    best = scores.argmax(-1)
    spans: list[dict[str, Any]] = []
    group: list[tuple[str, float, int, int]] = []  # (label, score, start, end) of the tokens being merged

    def close() -> None:
        kind = group[0][0].split("-", 1)[-1]
        if kind != "O":
            start, end = group[0][2], group[-1][3]
            spans.append({"type": kind, "start": int(start), "end": int(end),
                          "score": float(np.mean([g[1] for g in group])), "text": text[start:end]})

    for i, label_id in enumerate(best):
        if special[i]:
            continue
        label = labels[int(label_id)]
        token = (label, float(scores[i, label_id]), int(offsets[i][0]), int(offsets[i][1]))
        if group:
            bi, kind = _tag(label)
            if kind == _tag(group[-1][0])[1] and bi != "B":
                group.append(token)
                continue
            close()
        group = [token]
    if group:
        close()
    return spans
