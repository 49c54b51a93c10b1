"""Sentiment (any text classification): ``AutoModelForSequenceClassification`` fine-tuned on labelled texts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from nlpkit.config import DataConfig, RunConfig, TrainConfig, opt
from nlpkit.data import drop_empty_texts, label_map, load_splits, map_labels
from nlpkit.errors import UsageError
from nlpkit.inference import check_texts, pad, run_sorted
from nlpkit.metrics import compute
from nlpkit.modeling import resolve_model
from nlpkit.report import md_table, save_figure
from nlpkit.task import Data, DataInfo, RunResults, Task


@dataclass
class SentimentConfig(RunConfig):
    task: str = opt("sentiment", "Task name (set by the launch script).")
    model: str = opt("minilm-l6", "Encoder to fine-tune: a catalog name, a hub id (e.g. distilbert-base-uncased) "
                                  "or a local folder / previous run.")
    labels: Optional[list[str]] = opt(None, "Label names in id order (default: the sorted labels of the "
                                            "training split, or the saved model's).")
    data: DataConfig = opt(help="Data options.", factory=lambda: DataConfig(source="rotten_tomatoes"))
    train: TrainConfig = opt(help="Training options.", factory=lambda: TrainConfig(
        lr=1e-4, epochs=2.0, batch_size=32, metric_for_best="accuracy", greater_is_better=True))


class SentimentTask(Task):
    """Sequence classification. Metrics: accuracy, macro precision/recall/F1, confusion matrix."""

    Config = SentimentConfig
    hub_task_type = "text-classification"
    usage_example = ["a gripping, beautifully shot film", "dull and far too long"]
    architectures = ("ForSequenceClassification",)
    cfg: SentimentConfig

    @property
    def labels(self) -> list[str]:
        """Label names in id order (known once the model is built)."""
        return list(self.info.labels or []) if self.info is not None else []

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        d = self.cfg.data
        # Columns are checked before splitting; the splits made here keep the label's class proportions.
        ds, meta = load_splits(d, self.cfg.seed, columns={d.text_column: "data.text_column",
                                                          d.label_column: "data.label_column"},
                               label_column=d.label_column)
        notes = {}
        dropped = drop_empty_texts(ds, [d.text_column], d.empty_texts, d.source)
        if any(dropped.values()):
            notes["empty texts skipped"] = dropped
        # A reloaded model keeps its label ids; a new one takes them from the config, the catalog or the data.
        known = (self.saved_info.labels if self.saved_info else None) or self.cfg.labels or meta.get("labels")
        labels = label_map(ds["train"], d.label_column, known)
        ds = map_labels(ds, d.label_column, labels, d.source)
        ds = ds.select_columns([d.text_column, "labels"])
        return Data(ds, DataInfo(labels=labels), notes)

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(batch[self.cfg.data.text_column], truncation=True, max_length=self.cfg.data.max_length)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "labels" in batch:
            out["labels"] = batch["labels"]
        return out

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.tokenizer.pad(features, return_tensors="pt")

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """The encoder with a classification head for ``info.labels`` (a new head when the label set differs);
        without labels (a plain classifier loaded for prediction) the model's own labels are kept."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model(self.cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # fp32 master weights: transformers 5 otherwise keeps a checkpoint's storage dtype (bf16 on most hub
        # models); reduced precision comes from the accelerate config's autocast instead.
        kwargs: dict[str, Any] = {"dtype": torch.float32}
        labels = info.labels or (list(self.cfg.labels) if self.cfg.labels else None)
        if labels:
            kwargs |= {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                      "label2id": {n: i for i, n in enumerate(labels)},
                      "ignore_mismatched_sizes": True}  # a new head when the label set differs
        self.model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        info.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model, batch):
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        labels = batch["labels"]
        return {"pred": logits.argmax(-1), "label": labels,
                "loss": F.cross_entropy(logits, labels, reduction="none")}

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        preds, refs = outputs["pred"], outputs["label"]
        ids = list(range(len(self.labels or [])))
        metrics: dict[str, Any] = {}
        metrics.update(compute("accuracy", predictions=preds, references=refs))
        prf = compute("precision_recall_f1", predictions=preds, references=refs, labels=ids)
        metrics.update({f"macro_{k}": v for k, v in prf.items()})
        metrics["loss"] = float(sum(outputs["loss"]) / max(len(outputs["loss"]), 1))
        metrics["confusion_matrix"] = compute("confusion_matrix", predictions=preds, references=refs,
                                              labels=ids)["confusion_matrix"]
        metrics["labels"] = list(self.labels or [])
        return metrics

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[dict[str, Any]]:
        """``[{"label": str, "score": float}]`` per text; blank texts get ``{"label": None, "score": None}``."""
        if kwargs:
            raise UsageError(f"Unknown option(s) for sentiment prediction: {sorted(kwargs)}")
        todo = check_texts(inputs)
        results: list[dict[str, Any]] = [{"label": None, "score": None} for _ in inputs]
        if not todo:
            return results
        texts = [inputs[i] for i in todo]
        ids = self.tokenizer(texts, truncation=True, max_length=self.cfg.data.max_length)["input_ids"]
        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id or 0
        labels = self.labels

        def classify(rows: list[list[int]]) -> list[dict[str, Any]]:
            input_ids, mask = pad(rows, pad_id)
            logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            scores, best = logits.float().softmax(-1).cpu().max(-1)
            return [{"label": labels[int(b)], "score": float(sc)} for sc, b in zip(scores, best)]

        for i, out in zip(todo, run_sorted(ids, [len(x) for x in ids], batch_size, classify)):
            results[i] = out
        return results

    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: a text -> every label with its score (:mod:`nlpkit.plugins.sentiment.demo`)."""
        from nlpkit.plugins.sentiment.demo import build_demo

        return build_demo(pipe)

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        test = results.test or {}
        cm = test.get("confusion_matrix")
        if not cm:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = test["labels"]
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
        return [("Confusion matrix (test)", f"![confusion matrix](confusion_matrix.png)\n\n{table}")]
