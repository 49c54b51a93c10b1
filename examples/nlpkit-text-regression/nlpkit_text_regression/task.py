"""Text regression: ``AutoModelForSequenceClassification`` with one output and MSE loss, fine-tuned on
texts with a real-valued score (review -> rating, essay -> grade, sentence pair -> similarity...).

Built only from nlpkit's public pieces, as any third-party task would be: the hooks below are called by
nlpkit's shared training loop, ``nlpkit.evaluate`` and ``nlpkit.pipeline`` in the order of the task contract
(load_data -> load_model(info) -> encode/collate -> eval_step -> compute_metrics; predict; report_extras).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlpkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, opt
from nlpkit.data import check_columns, drop_empty_texts, load_splits
from nlpkit.errors import DataError, UsageError
from nlpkit.inference import check_texts, pad, run_sorted
from nlpkit.modeling import resolve_model
from nlpkit.report import md_table, save_figure
from nlpkit.task import Data, DataInfo, RunResults, Task


@dataclass
class TextRegressionConfig(RunConfig):
    task: str = opt("text_regression", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="Encoder to fine-tune (model.name: a catalog name, a hub id such as "
                                  "distilbert-base-uncased, or a local folder / previous run) and how it is loaded.",
                             factory=lambda: ModelConfig(name="minilm-l6"))
    standardize: bool = opt(True, "Train on (score - mean) / std of the training scores, so the loss and the "
                                  "learning rate do not depend on the score's units; predictions are mapped "
                                  "back to the score scale (the mean and std are saved with the model). Set "
                                  "false to evaluate a regression model trained elsewhere (raw outputs).")
    data: DataConfig = opt(help="Data options: texts in data.text_column, scores (numbers) in data.label_column.",
                           factory=lambda: DataConfig(label_column="score"))
    train: TrainConfig = opt(help="Training options.", factory=lambda: TrainConfig(
        lr=1e-4, epochs=3.0, batch_size=32, metric_for_best="rmse", greater_is_better=False))


@dataclass
class TextRegressionInfo(DataInfo):
    """The training scores' statistics: the scale the model predicts on, saved in the model's descriptor."""

    #: Mean and standard deviation of the training split's scores.
    mean: float = 0.0
    std: float = 1.0
    #: Whether the model predicts standardized scores ((score - mean) / std) rather than raw ones. False for a
    #: plain regression model loaded without an nlpkit descriptor: its outputs are used as they are.
    standardized: bool = False

    def scale(self) -> tuple[float, float]:
        """``(shift, factor)`` with ``score = shift + factor * model output``."""
        return (self.mean, self.std) if self.standardized else (0.0, 1.0)


class TextRegressionTask(Task):
    """Text regression: a real-valued score per text (MSE loss). Metrics: rmse, mse, mae, Pearson, Spearman."""

    Config = TextRegressionConfig
    Info = TextRegressionInfo
    hub_task_type = "text-classification"  # the hub files regression heads under text classification
    usage_example = ["a gripping, beautifully shot film", "dull and far too long"]
    # A regression head is a ForSequenceClassification model too: sentiment claims those folders. Ours are
    # recognised by the nlpkit_task.json descriptor of the run, or named: nlpkit.pipeline("text_regression", ...).
    architectures = ()
    cfg: TextRegressionConfig
    info: TextRegressionInfo

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        d = self.cfg.data
        ds, _ = load_splits(d, self.cfg.seed)
        check_columns(ds, [d.text_column], d.source, "data.text_column")
        check_columns(ds, [d.label_column], d.source, "data.label_column")
        notes: dict[str, Any] = {}
        dropped = drop_empty_texts(ds, [d.text_column], d.empty_texts, d.source)
        if any(dropped.values()):
            notes["empty texts skipped"] = dropped
        for split in list(ds):
            scores = _scores(ds[split][d.label_column], split, d.label_column, d.source)
            ds[split] = ds[split].select_columns([d.text_column]).add_column("labels", scores)
        train = np.asarray(ds["train"]["labels"], dtype=np.float64)
        notes["training scores"] = (f"mean {train.mean():.4g}, std {train.std():.4g}, "
                                    f"range {train.min():.4g} to {train.max():.4g}")
        # A reloaded model keeps the scale it was trained on, whatever data it is evaluated on now.
        info = self.saved_info or TextRegressionInfo(mean=float(train.mean()), std=float(train.std()) or 1.0,
                                                     standardized=self.cfg.standardize)
        return Data(ds, info, notes)

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(batch[self.cfg.data.text_column], truncation=True, max_length=self.cfg.data.max_length)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "labels" in batch:
            shift, factor = self.info.scale()
            out["labels"] = [(s - shift) / factor for s in batch["labels"]]
        return out

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.tokenizer.pad(features, return_tensors="pt")  # float labels stay float32

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """The encoder with a one-unit regression head (MSE loss); a new head when the checkpoint has another."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model(self.cfg.model.name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # fp32 master weights (reduced precision comes from the accelerate config's autocast); problem_type makes
        # the model's own loss the mean squared error against float labels.
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, problem_type="regression", dtype=torch.float32, ignore_mismatched_sizes=True)

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        """Predicted and true scores, on the data's scale."""
        shift, factor = self.info.scale()
        output = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().squeeze(-1)
        return {"pred": output * factor + shift, "score": batch["labels"].float() * factor + shift}

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        return regression_metrics(outputs["pred"], outputs["score"])

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[dict[str, Any]]:
        """``{"score": float}`` per text, in input order; blank texts get ``{"score": None}``."""
        if kwargs:
            raise UsageError(f"Unknown option(s) for text_regression prediction: {sorted(kwargs)}")
        todo = check_texts(inputs)
        results: list[dict[str, Any]] = [{"score": None} for _ in inputs]
        if not todo:
            return results
        ids = self.tokenizer([inputs[i] for i in todo], truncation=True,
                             max_length=self.cfg.data.max_length)["input_ids"]
        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id or 0
        shift, factor = self.info.scale()

        def score(rows: list[list[int]]) -> list[dict[str, Any]]:
            input_ids, mask = pad(rows, pad_id)
            output = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            return [{"score": float(v) * factor + shift} for v in output.float().squeeze(-1).cpu()]

        for i, out in zip(todo, run_sorted(ids, [len(x) for x in ids], batch_size, score)):
            results[i] = out
        return results

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        """A predicted-vs-true scatter plot of the scored split, and the model against predicting the mean."""
        outputs = results.test_outputs
        if not outputs.get("pred"):
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pred, true = np.asarray(outputs["pred"]), np.asarray(outputs["score"])
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(true, pred, s=12, alpha=0.5)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "--", color="grey", label="predicted = true")
        ax.set_xlabel("true score")
        ax.set_ylabel("predicted score")
        ax.set_title("Predicted vs true scores")
        ax.legend(loc="upper left")
        save_figure(fig, run_dir / "predicted_vs_true.png")
        # The bar any useful model must clear: always predicting the training split's mean score.
        mean = regression_metrics(np.full_like(true, self.info.mean), true)
        model = results.test or regression_metrics(pred, true)
        rows = [[name, m["rmse"], m["mae"]] for name, m in
                (("fine-tuned model", model), (f"training mean ({self.info.mean:.4g})", mean))]
        table = md_table(rows, ["predictor", "rmse", "mae"])
        return [("Predicted vs true scores", f"![predicted vs true](predicted_vs_true.png)\n\n{table}")]


# --------------------------------------------------------------------------------------------- helpers


def regression_metrics(pred: Any, true: Any) -> dict[str, float]:
    """mse, rmse, mae, and the Pearson and Spearman correlations (NaN when either side is constant)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    mse = float(mean_squared_error(true, pred))
    # Correlation is undefined for a constant side (an untrained head often predicts one value).
    defined = len(pred) > 1 and np.ptp(pred) > 0 and np.ptp(true) > 0
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(true, pred)),
            "pearson": float(pearsonr(pred, true).statistic) if defined else math.nan,
            "spearman": float(spearmanr(pred, true).statistic) if defined else math.nan}


def _scores(values: list[Any], split: str, column: str, source: str) -> list[float]:
    """The score column as floats; a missing or non-numeric score fails, naming its row."""
    out = []
    for row, v in enumerate(values):
        try:
            score = float(v)
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score) or isinstance(v, bool):
            raise DataError(f"{source} ({split} split) row {row}: score {v!r} in column {column!r} is not a finite "
                            f"number. Fix the row, or point data.label_column at the score column.")
        out.append(score)
    return out
