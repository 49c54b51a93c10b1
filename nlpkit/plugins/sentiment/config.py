"""The sentiment task's config section: the classification-only options live here, not in the core config
(``labels``, ``problem_type``, ``thresholds``; ``data.label_delimiter``, ``data.label_columns``;
``train.class_weights``). Their keys are the same as before: a task's config subclasses the core's sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from nlpkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, one_of, opt
from nlpkit.errors import ConfigError

__all__ = ["PROBLEM_TYPES", "SentimentConfig", "SentimentDataConfig", "SentimentTrainConfig"]

PROBLEM_TYPES = ("single_label", "multi_label", "auto")


@dataclass
class SentimentDataConfig(DataConfig):
    """The core's data options plus the multi-label forms of the label column."""

    label_delimiter: Optional[str] = opt(None, "Multi-label classification: the label column holds strings of "
                                               "labels joined by this delimiter (e.g. `,` or `|`).")
    label_columns: Optional[list[str]] = opt(None, "Multi-label classification: one 0/1 column per label, named "
                                                   "here (the column names become the label names).")


@dataclass
class SentimentTrainConfig(TrainConfig):
    """The core's training options plus class weights."""

    class_weights: Any = opt(None, "Weigh the loss by class (imbalanced labels): `auto` (inverse class frequency, "
                                   "normalised so that the average weight per example is 1; multi-label: each "
                                   "label's negatives/positives as BCE pos_weight) or a list with one weight per "
                                   "label, in label order.")

    def __post_init__(self) -> None:
        weights = self.class_weights
        if isinstance(weights, str) and weights.strip().lower() in ("", "none", "null", "false", "off"):
            self.class_weights = None
        elif isinstance(weights, str) and weights.strip().lower() == "auto":
            self.class_weights = "auto"
        elif isinstance(weights, (list, tuple)) and weights and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights):
            self.class_weights = [float(w) for w in weights]
        elif weights is not None:
            raise ConfigError(f"train.class_weights={weights!r}: expected `auto`, a list of non-negative numbers "
                              f"(one per label, e.g. train.class_weights=[1,5]) or none.")


@dataclass
class SentimentConfig(RunConfig):
    task: str = opt("sentiment", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="Encoder to fine-tune (model.name: a catalog name, a hub id such as "
                                  "distilbert-base-uncased, or a local folder / previous run) and how it is loaded.",
                             factory=lambda: ModelConfig(name="minilm-l6"))
    labels: Optional[list[str]] = opt(None, "Label names in id order (default: the sorted labels of the "
                                            "training split, or the saved model's).")
    problem_type: str = opt("auto", "`auto` (multi_label when the labels come in one of the multi-label forms: a "
                                    "list column, data.label_delimiter or data.label_columns; else single_label), "
                                    "`single_label` (one label per text) or `multi_label` (any number of labels per "
                                    "text).", check=one_of(*PROBLEM_TYPES))
    thresholds: str = opt("global", "Multi-label decision thresholds, chosen after training for the best "
                                    "validation F1: `global` (one for every label, best micro-F1), `per_label` "
                                    "(each label's best F1), or a number in (0, 1) (fixed, not tuned).")
    data: SentimentDataConfig = opt(help="Data options.", factory=lambda: SentimentDataConfig(source="rotten_tomatoes"))
    train: SentimentTrainConfig = opt(help="Training options.", factory=lambda: SentimentTrainConfig(
        full_lr=1e-4, epochs=2.0, batch_size=32, metric_for_best="accuracy", greater_is_better=True))

    def __post_init__(self) -> None:
        if self.thresholds not in ("global", "per_label"):
            try:
                value = float(self.thresholds)
            except ValueError:
                value = -1.0
            if not 0 < value < 1:
                raise ConfigError(f"thresholds={self.thresholds!r}: expected `global`, `per_label` or a number "
                                  f"between 0 and 1.")
