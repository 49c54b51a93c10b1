"""Retrieval evaluation over a corpus built from a split: each query's relevant passage ranked among all passages.

The corpus is every distinct passage of the split (positives, and hard negatives when the data has them; equal
texts are one passage), so a query competes with every other pair's passage. Ranks are computed exactly (one
matrix product per block of queries), then :func:`nlpkit.metrics.compute` turns them into MRR@10, NDCG@10 and
recall@k (the plugin's ``retrieval`` metric module) and Spearman / Pearson of pair cosines against scores (the
core's ``word_similarity`` module, the same correlation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nlpkit.metrics import compute

__all__ = ["ranks", "retrieval_metrics", "spearman"]


def ranks(queries: torch.Tensor, relevant: Sequence[int], passages: torch.Tensor, passage_keys: Sequence[int], *,
          max_corpus: int | None = None, seed: int = 0, block: int = 1024) -> tuple[np.ndarray, int]:
    """``(ranks, corpus size)``: the 1-based rank of each query's relevant passage (key ``relevant[i]``) among the
    distinct passages by cosine. Ties count against the query (rank = the passages scored at least as high as its
    own, itself included), so a scorer that cannot tell passages apart gets no credit for it.

    ``max_corpus`` keeps at most that many passages (every relevant one, then distractors drawn with ``seed``).
    """
    keys = np.asarray(passage_keys, dtype=np.int64)
    _, first = np.unique(keys, return_index=True)
    keep = np.sort(first)
    if max_corpus is not None and len(keep) > max_corpus:
        needed = np.isin(keys[keep], np.asarray(relevant, dtype=np.int64))
        others = keep[~needed]
        room = max(max_corpus - int(needed.sum()), 0)
        drawn = np.random.default_rng(seed).choice(others, size=min(room, len(others)), replace=False)
        keep = np.sort(np.concatenate([keep[needed], drawn]))
    corpus = F.normalize(passages[torch.from_numpy(keep)], dim=-1)
    position = {int(k): i for i, k in enumerate(keys[keep])}
    target = torch.tensor([position[int(k)] for k in relevant], dtype=torch.long)
    out = np.empty(len(target), dtype=np.int64)
    q = F.normalize(queries, dim=-1)
    for start in range(0, len(q), block):
        scores = q[start:start + block] @ corpus.T
        own = scores.gather(1, target[start:start + block, None])
        out[start:start + block] = (scores >= own).sum(dim=1).numpy()
    return out, len(keep)


def retrieval_metrics(queries: torch.Tensor, relevant: Sequence[int], passages: torch.Tensor,
                      passage_keys: Sequence[int], *, max_corpus: int | None = None, seed: int = 0) -> dict[str, Any]:
    """MRR@10, NDCG@10, recall@1/5/10/100, mean and median rank, and the corpus size, for the queries."""
    found, size = ranks(queries, relevant, passages, passage_keys, max_corpus=max_corpus, seed=seed)
    metrics = compute("retrieval", predictions=found.tolist())
    metrics["corpus_size"] = size
    return metrics


def spearman(cosines: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Spearman's rho and Pearson's r of the pair cosines against the gold scores."""
    found = compute("word_similarity", predictions=[float(c) for c in cosines],
                    references=[float(s) for s in scores])
    return {"spearman": found["spearman"], "pearson": found["pearson"]}
