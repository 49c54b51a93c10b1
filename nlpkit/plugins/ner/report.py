"""The ner sections of a run's report: entity scores per type (default and strict), a bar plot of them and the
word-level confusion between entity types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlpkit.report import md_table, save_figure

__all__ = ["sections"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_type_section(run_dir: Path, test: dict[str, Any]) -> tuple[str, str] | None:
    """Precision, recall, F1 (default and strict) and support of every entity type, and ``per_type_f1.png``."""
    per, strict = test.get("per_type") or {}, test.get("per_type_strict") or {}
    if not per:
        return None
    kinds = sorted(per, key=lambda k: -per[k]["support"])
    rows = [[k, per[k]["precision"], per[k]["recall"], per[k]["f1"], (strict.get(k) or {}).get("f1", "-"),
             per[k]["support"]] for k in kinds]
    rows.append(["**all (micro)**", test.get("precision"), test.get("recall"), test.get("f1"),
                 test.get("strict_f1"), sum(per[k]["support"] for k in kinds)])
    table = md_table(rows, ["type", "precision", "recall", "F1", "strict F1", "entities"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * len(kinds)))
    y = range(len(kinds))
    ax.barh([v - 0.2 for v in y], [per[k]["f1"] for k in kinds], height=0.4, label="F1 (default)")
    ax.barh([v + 0.2 for v in y], [(strict.get(k) or {}).get("f1", 0.0) for k in kinds], height=0.4,
            label="F1 (strict)")
    ax.set_yticks(list(y), [f"{k} ({per[k]['support']})" for k in kinds])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("entity F1 (test)")
    ax.legend(loc="lower right")
    ax.set_title("Entity F1 per type (entities in the test split)")
    save_figure(fig, run_dir / "per_type_f1.png")
    note = ("Entity-level scores (seqeval): an entity counts when its type and both its ends are right. Default "
            "mode reads an I- that opens an entity as its start (conlleval); strict mode (IOB2) does not count such "
            "a chunk at all.")
    return "Entities per type (test)", f"{note}\n\n![per-type F1](per_type_f1.png)\n\n{table}"


def confusion_section(run_dir: Path, test: dict[str, Any]) -> tuple[str, str] | None:
    """``type_confusion.png`` and its table: words by reference type (rows) and predicted type (columns)."""
    cm, names = test.get("confusion_matrix"), test.get("confusion_labels") or []
    if not cm:
        return None
    plt = _pyplot()
    import numpy as np

    matrix = np.asarray(cm, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 0.75 * len(names), 1.2 + 0.7 * len(names)))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the row")
    ax.set_title("Word-level confusion between types (test)")
    save_figure(fig, run_dir / "type_confusion.png")
    table = md_table([[names[i], *row] for i, row in enumerate(cm)], ["reference \\ predicted", *names])
    note = "Words counted by the type of their reference tag and of their predicted tag (B- and I- merged)."
    return "Confusion between types (test)", f"{note}\n\n![type confusion](type_confusion.png)\n\n{table}"


def sections(run_dir: Path, test: dict[str, Any], extra: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every ner report section that the test metrics allow."""
    found = [per_type_section(run_dir, test), confusion_section(run_dir, test)]
    return [s for s in found if s is not None]
