"""Multi-label decision thresholds: tuned on the validation split after training, saved with the model.

A multi-label model gives every label a sigmoid score; a label is predicted when its score reaches the label's
threshold. 0.5 is rarely the best cut (rare labels get low scores), so after training the thresholds that give
the best validation F1 are searched on a grid of 0.01 to 0.99: one for every label (``thresholds=global``, best
micro-F1) or one per label (``thresholds=per_label``, each label's own F1). Ties go to the value closest to 0.5,
so a label the validation split cannot tell anything about keeps the neutral 0.5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nlpkit.callbacks import Callback

if TYPE_CHECKING:
    from nlpkit.training import Loop

__all__ = ["GRID", "ThresholdTuning", "tune_thresholds"]

#: The candidate thresholds.
GRID = np.round(np.arange(1, 100) / 100, 2)


def _confusion_counts(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives of every label at every grid threshold, each of shape
    (labels, thresholds), from one pass over the scores (a histogram per label, not a pass per threshold)."""
    n_labels, width = probs.shape[1], len(GRID) + 1
    # bins[i, j] = how many grid values are <= the score: the score is predicted positive at GRID[t] iff t < bins
    bins = np.searchsorted(GRID, probs, side="right") + width * np.arange(n_labels)
    positive = targets.astype(bool)
    pos = np.bincount(bins[positive], minlength=n_labels * width).reshape(n_labels, width)
    neg = np.bincount(bins[~positive], minlength=n_labels * width).reshape(n_labels, width)
    # positives predicted at GRID[t] = those whose bin is above t: suffix sums from bin t + 1
    tp = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fp = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fn = pos.sum(axis=1, keepdims=True) - tp
    return tp, fp, fn


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(tp.shape, dtype=float), where=denominator > 0)


def _best(f1: np.ndarray) -> float:
    """The grid value of the highest F1; among equal ones, the closest to 0.5."""
    ties = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(GRID[ties[np.argmin(np.abs(GRID[ties] - 0.5))]])


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, per_label: bool = False) -> list[float]:
    """One threshold per label maximising F1 on ``(probs, targets)`` (both (examples, labels)): the same value
    for all labels (best micro-F1) or, with ``per_label``, each label's own best F1. Ties -> closest to 0.5."""
    probs, targets = np.asarray(probs, dtype=float), np.asarray(targets)
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"tune_thresholds: probs {probs.shape} and targets {targets.shape} must be (examples, labels)")
    n_labels = probs.shape[1]
    if len(probs) == 0:
        return [0.5] * n_labels
    tp, fp, fn = _confusion_counts(probs, targets)
    if per_label:
        return [_best(row) for row in _f1(tp, fp, fn)]
    return [_best(_f1(tp.sum(0), fp.sum(0), fn.sum(0)))] * n_labels


class ThresholdTuning(Callback):
    """After training (best weights back, before the final evaluation): the multi-label decision thresholds of
    ``thresholds`` (tuned on validation, or the fixed number given) go into the task's info, so the final
    validation and test metrics use them and the saved model carries them (descriptor and config.json)."""

    def on_train_end(self, loop: Loop) -> None:
        task: Any = loop.task
        if not loop.finished or not task.multi_label:
            return
        mode = str(task.cfg.thresholds)
        n_labels = len(task.labels)
        if mode in ("global", "per_label"):
            _, outputs = loop.evaluate("validation", desc="Tuning thresholds")
            found = tune_thresholds(np.asarray(outputs["probs"]), np.asarray(outputs["label"]),
                                    per_label=mode == "per_label")
            how = f"tuned on validation for the best F1 ({mode.replace('_', ' ')})"
        else:
            found, how = [float(mode)] * n_labels, "fixed (thresholds option)"
        task.set_thresholds(found)
        shown = (f"{found[0]:g}" if len(set(found)) == 1
                 else ", ".join(f"{name}: {t:g}" for name, t in zip(task.labels, found)))
        loop.results.notes["decision thresholds"] = f"{shown} ({how})"
