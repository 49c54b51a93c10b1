"""The classification sections of a run's report: confusion matrix, per-class table, precision-recall curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nlpkit.report import md_table, save_figure

__all__ = ["confusion_section", "per_class_section", "pr_curve_section"]

#: Up to this many classes get a curve each; beyond, one micro-averaged curve.
MAX_CURVES = 10


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_section(run_dir: Path, test: dict[str, Any]) -> tuple[str, str] | None:
    """``confusion_matrix.png`` and its table (single-label)."""
    cm, labels = test.get("confusion_matrix"), test.get("labels") or []
    if not cm:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(labels), 1.2 + 1.0 * len(labels)))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(r) for r in cm) or 1
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("Test confusion matrix")
    save_figure(fig, run_dir / "confusion_matrix.png")
    rows = [[labels[i]] + row for i, row in enumerate(cm)]
    table = md_table(rows, ["true \\ predicted"] + labels)
    return "Confusion matrix (test)", f"![confusion matrix](confusion_matrix.png)\n\n{table}"


def per_class_section(test: dict[str, Any]) -> tuple[str, str] | None:
    """Precision, recall, F1, support (and average precision, decision threshold) of every class."""
    per, labels = test.get("per_class"), test.get("labels") or []
    if not per or not labels:
        return None
    header = ["label", "precision", "recall", "F1", "support"]
    columns = [per["precision"], per["recall"], per["f1"], per["support"]]
    if per.get("average_precision"):
        header.append("average precision")
        columns.append(["-" if v is None else v for v in per["average_precision"]])
    if test.get("thresholds"):
        header.append("threshold")
        columns.append(test["thresholds"])
    rows = [[name, *(col[i] for col in columns)] for i, name in enumerate(labels)]
    note = ("Support: test examples of the class. A class the model never predicts shows precision and recall 0: "
            "compare with `train.class_weights=auto` when classes are imbalanced.")
    return "Per-class metrics (test)", f"{md_table(rows, header)}\n\n{note}"


def pr_curve_section(run_dir: Path, test: dict[str, Any], outputs: dict[str, list]) -> tuple[str, str] | None:
    """``precision_recall.png``: a precision-recall curve per class (up to :data:`MAX_CURVES` classes; else the
    micro-average over all decisions), average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels = test.get("labels") or []
    if not outputs.get("probs") or not outputs.get("label") or not labels:
        return None
    scores = np.asarray(outputs["probs"], dtype=float)
    refs = np.asarray(outputs["label"])
    if refs.ndim == 1:  # class ids -> one-vs-rest indicator rows
        refs = np.eye(len(labels), dtype=np.int64)[refs]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    curves = [(name, refs[:, j], scores[:, j]) for j, name in enumerate(labels) if refs[:, j].any()]
    if len(labels) > MAX_CURVES or not curves:
        curves = [("micro-average", refs.ravel(), scores.ravel())] if refs.any() else []
    if not curves:
        plt.close(fig)
        return None
    for name, truth, score in curves:
        precision, recall, _ = precision_recall_curve(truth, score)
        ap = average_precision_score(truth, score)
        ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f}, {int(truth.sum())} ex.)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title("Test precision-recall curves" + (" (micro-average)" if curves[0][0] == "micro-average" else ""))
    save_figure(fig, run_dir / "precision_recall.png")
    text = ("![precision-recall curves](precision_recall.png)\n\nOne curve per class (one-vs-rest): precision "
            "against recall as the score needed to predict the class goes down. AP (average precision) is the area "
            "under the curve; chance level is the class's share of the examples.")
    return "Precision-recall curves (test)", text
