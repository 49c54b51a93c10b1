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
from functools import lru_cache
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


@lru_cache(maxsize=16)
def _label_table(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per label id: whether it is a ``B-`` tag, the id of the type that merging compares, and the type name a
    group that starts with it gets (``O`` groups are dropped)."""
    kinds: dict[str, int] = {}
    is_b = np.array([_tag(name)[0] == "B" for name in labels], dtype=bool)
    kind_ids = np.array([kinds.setdefault(_tag(name)[1], len(kinds)) for name in labels], dtype=np.int64)
    return is_b, kind_ids, [name.split("-", 1)[-1] for name in labels]


def group_spans(text: str, scores: np.ndarray, offsets: Sequence[tuple[int, int]], special: Sequence[int],
                labels: Sequence[str]) -> list[dict[str, Any]]:
    """The entity spans of one text: ``{"type", "start", "end", "score", "text"}`` in text order.

    ``scores`` (tokens x labels) are the softmax scores of the text's tokens, ``offsets`` their character
    offsets, ``special`` 1 for the tokenizer's special tokens (skipped), ``labels`` the label names in id order.
    Grouping is done on arrays: a group starts at a token whose type differs from the previous token's or whose
    tag is ``B-``.
    """
    keep = np.flatnonzero(np.asarray(special, dtype=bool)[: len(scores)] == 0)
    if not keep.size:
        return []
    is_b, kind_ids, group_kind = _label_table(tuple(labels))
    best = scores[keep].argmax(-1)
    top = scores[keep, best].astype(np.float64)
    kind = kind_ids[best]
    new = np.empty(len(keep), dtype=bool)
    new[0] = True
    new[1:] = (kind[1:] != kind[:-1]) | is_b[best[1:]]
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], len(keep))
    means = np.add.reduceat(top, starts) / (stops - starts)
    spans: list[dict[str, Any]] = []
    for first, stop, score in zip(starts.tolist(), stops.tolist(), means.tolist()):
        name = group_kind[int(best[first])]
        if name == "O":
            continue
        start, end = int(offsets[keep[first]][0]), int(offsets[keep[stop - 1]][1])
        spans.append({"type": name, "start": start, "end": end, "score": score, "text": text[start:end]})
    return spans
