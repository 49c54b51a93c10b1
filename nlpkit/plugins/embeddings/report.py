"""The embeddings report section: recall@k over k (the test split's retrieval) and, for scored pairs, cosine vs
score."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nlpkit.plugins.embeddings.retrieval import ranks
from nlpkit.report import md_table, save_figure

if TYPE_CHECKING:
    from nlpkit.plugins.embeddings.task import EmbeddingsTask
    from nlpkit.task import RunResults

_KS = (1, 3, 5, 10, 20, 50, 100)


def retrieval_section(task: EmbeddingsTask, run_dir: Path, results: RunResults) -> tuple[str, str] | None:
    """``("Retrieval", markdown)`` with ``recall_at_k.png`` (and ``cosine_vs_score.png`` for scored pairs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Any] = results.test_outputs or {}
    if not out.get("anchor"):
        return None
    anchors = torch.tensor(out["anchor"], dtype=torch.float32)
    passages = [(torch.tensor(out["positive"], dtype=torch.float32), list(out["positive_key"]))]
    if out.get("negative"):
        passages.append((torch.tensor(out["negative"], dtype=torch.float32), list(out["negative_key"])))
    queries = np.arange(len(anchors))
    scores = np.asarray(out["score"], dtype=float) if out.get("score") else None
    if scores is not None:
        queries = np.flatnonzero(scores >= task.cfg.data.relevant_score)
    parts: list[str] = []
    if len(queries):
        found, size = ranks(anchors[queries], [out["positive_key"][i] for i in queries],
                            torch.cat([v for v, _ in passages]), [k for _, ks in passages for k in ks],
                            max_corpus=task.cfg.data.max_corpus, seed=task.cfg.seed)
        ks = [k for k in _KS if k <= size]
        recall = [float((found <= k).mean()) for k in ks]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(ks, recall, marker="o")
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k (passages returned)")
        ax.set_ylabel("recall@k")
        ax.set_title(f"Test retrieval: {len(found):,} queries, {size:,} passages")
        ax.grid(alpha=0.3)
        save_figure(fig, run_dir / "recall_at_k.png")
        rows = [[k, r] for k, r in zip(ks, recall)]
        parts.append(f"Each test anchor searches the {size:,} distinct passages of the test split for its own "
                     f"positive (median rank {float(np.median(found)):g}).\n\n![recall@k](recall_at_k.png)\n\n"
                     + md_table(rows, ["k", "recall@k"]))
    if scores is not None:
        cos = torch.nn.functional.cosine_similarity(anchors, passages[0][0], dim=-1).numpy()
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(scores, cos, s=6, alpha=0.4)
        ax.set_xlabel("gold score / score_max")
        ax.set_ylabel("cosine")
        rho = (results.test or {}).get("spearman")
        ax.set_title(f"Test pairs (Spearman {rho:.3f})" if isinstance(rho, float) else "Test pairs")
        save_figure(fig, run_dir / "cosine_vs_score.png")
        parts.append("![cosine vs score](cosine_vs_score.png)")
    return ("Retrieval", "\n\n".join(parts)) if parts else None
