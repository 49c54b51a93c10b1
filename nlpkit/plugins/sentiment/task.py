"""Sentiment (any text classification): ``AutoModelForSequenceClassification`` fine-tuned on labelled texts.

Single-label (one class per text, softmax and cross-entropy) or multi-label (any number of labels per text,
sigmoid and binary cross-entropy, decision thresholds tuned on validation); optional class weights for
imbalanced labels; every label's score on request (``top_k``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from nlpkit import loader, lora
from nlpkit.artifacts import TASK_FILE
from nlpkit.callbacks import Callback, LoraAdapters
from nlpkit.data import drop_empty_texts, load_splits
from nlpkit.errors import ConfigError, DataError, ModelNotFoundError, UsageError
from nlpkit.inference import check_texts, pad, run_sorted
from nlpkit.metrics import compute
from nlpkit.modeling import pretrained, resolve_model
from nlpkit.plugins.sentiment.config import SentimentConfig
from nlpkit.plugins.sentiment.labels import holds_label_lists, label_map, map_labels, multi_hot, multi_label_names
from nlpkit.plugins.sentiment.report import confusion_section, per_class_section, pr_curve_section
from nlpkit.plugins.sentiment.thresholds import ThresholdTuning
from nlpkit.task import Data, DataInfo, RunResults, Task
from nlpkit.tokenizing import token_ids

#: transformers' name of each problem type (config.json ``problem_type``: picks the loss and the pipeline's
#: sigmoid or softmax).
HF_PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}
logger = logging.getLogger("nlpkit.sentiment")
_ALL = object()  # top_k not given: the default output (best label, or the labels above their thresholds)


@dataclass
class SentimentInfo(DataInfo):
    """Labels plus what classification needs: single- or multi-label, the decision thresholds (multi-label;
    tuned after training) and, while training, the label counts and loss weights."""

    #: ``single_label`` or ``multi_label`` (None: decided by the model when it is loaded without data).
    problem_type: Optional[str] = None
    #: Multi-label decision threshold of every label, in label order (None: 0.5 until tuned).
    thresholds: Optional[list[float]] = None
    #: Training examples of every label, and the number of training examples (for the class weights).
    label_counts: Optional[list[int]] = None
    train_rows: Optional[int] = None
    #: The loss weight of every label (``train.class_weights``): cross-entropy class weights, or BCE pos_weight.
    class_weights: Optional[list[float]] = None
    transient: ClassVar[tuple[str, ...]] = ("label_counts", "train_rows", "class_weights")


def class_weights(spec: Any, counts: list[int], rows: int, multi_label: bool) -> list[float] | None:
    """The loss weights ``train.class_weights`` asks for: ``auto`` -> single-label: ``rows / (labels x count)``
    (inverse frequency, normalised so that the average weight over the training examples is 1); multi-label:
    ``negatives / positives`` of each label (BCE pos_weight). A list is used as given (one per label)."""
    if spec is None:
        return None
    if spec != "auto":
        if len(spec) != len(counts):
            raise ConfigError(f"train.class_weights has {len(spec)} values but there are {len(counts)} labels; give "
                              f"one weight per label, in label order, or train.class_weights=auto.")
        return [float(w) for w in spec]
    n = np.maximum(np.asarray(counts, dtype=float), 1.0)  # a label absent from training: no example to weigh
    weights = (rows - n) / n if multi_label else rows / (len(n) * n)
    return [round(float(w), 6) for w in weights]


def _check_head(folder: str, labels: list[str]) -> None:
    """Refuse a saved classifier whose descriptor lists another number of labels than its head has outputs
    (``config.json``'s ``id2label`` / ``num_labels``): loading it would silently replace the trained head with a
    random one (random predictions)."""
    config = Path(folder) / "config.json"
    try:
        own = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # transformers reports a missing or unreadable config.json itself
    outputs = len(own.get("id2label") or {}) or own.get("num_labels") if isinstance(own, dict) else None
    if isinstance(outputs, int) and outputs != len(labels):
        raise ModelNotFoundError(
            f"{Path(folder) / TASK_FILE} lists {len(labels)} labels {labels}, but the model's classification head "
            f"({config}) has {outputs} outputs: the descriptor does not belong to these weights, and loading them "
            f"would replace the trained head with a random one. Restore the run's own nlpkit_task.json (or "
            f"config.json), or train again.")


class SentimentTask(Task):
    """Text classification: single-label or multi-label. Metrics: accuracy, balanced accuracy, macro
    precision/recall/F1, per-class table, confusion matrix, precision-recall curves (multi-label: micro/macro/
    samples F1, subset accuracy, Hamming loss)."""

    Config = SentimentConfig
    Info = SentimentInfo
    hub_task_type = "text-classification"
    usage_example = ["a gripping, beautifully shot film", "dull and far too long"]
    architectures = ("ForSequenceClassification",)
    # single-label, then multi-label (``accuracy`` means ``micro_f1`` there: see main_metric)
    metric_names = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                    "macro_average_precision", "loss", "micro_f1", "micro_precision", "micro_recall", "samples_f1",
                    "weighted_f1", "subset_accuracy", "hamming_loss")
    cfg: SentimentConfig
    info: SentimentInfo | None

    @property
    def labels(self) -> list[str]:
        """Label names in id order (known once the model is built)."""
        return list(self.info.labels or []) if self.info is not None else []

    @property
    def multi_label(self) -> bool:
        """Whether each text may have any number of labels (known once the data or model is loaded)."""
        kind = self.info.problem_type if self.info is not None else None
        return (kind or self.cfg.problem_type) == "multi_label"

    @property
    def main_metric(self) -> str:
        """``train.metric_for_best``; for multi-label, the default ``accuracy`` means ``micro_f1`` (subset accuracy,
        the multi-label accuracy, is too strict to pick a model by)."""
        name = self.cfg.train.metric_for_best
        return "micro_f1" if name == "accuracy" and self.multi_label else name

    # ------------------------------------------------------------------ data
    def _problem_type(self, train: Any) -> str:
        """single_label or multi_label: the saved model's; else ``problem_type``, checked against the data."""
        if self.saved_info is not None and self.saved_info.problem_type:
            return self.saved_info.problem_type
        d, chosen = self.cfg.data, self.cfg.problem_type
        lists = not d.label_columns and holds_label_lists(train, d.label_column)
        shaped = bool(d.label_columns or d.label_delimiter or lists)
        if chosen == "auto":
            return "multi_label" if shaped else "single_label"
        if chosen == "single_label" and shaped:
            form = ("data.label_columns is set" if d.label_columns else "data.label_delimiter is set"
                    if d.label_delimiter else f"the label column {d.label_column!r} holds lists")
            raise ConfigError(f"{form}: that is multi-label data, but problem_type=single_label. Set "
                              f"problem_type=multi_label (or auto to decide from the data).")
        return chosen

    def load_data(self) -> Data:
        d = self.cfg.data
        label_columns = list(d.label_columns or [])
        saved = self.saved_info.problem_type if self.saved_info is not None else None
        declared_multi = (saved or self.cfg.problem_type) == "multi_label" or bool(label_columns or d.label_delimiter)
        columns = {d.text_column: "data.text_column"}
        columns |= {c: "data.label_columns" for c in label_columns} or {d.label_column: "data.label_column"}
        # Columns are checked before splitting; single-label splits made here keep the classes' proportions.
        ds, meta = load_splits(d, self.cfg.seed, columns=columns,
                               label_column=None if declared_multi else d.label_column)
        notes: dict[str, Any] = {}
        dropped = drop_empty_texts(ds, [d.text_column], d.empty_texts, d.source)
        if any(dropped.values()):
            notes["empty texts skipped"] = dropped
        problem = self._problem_type(ds["train"])
        # A reloaded model keeps its label ids; a new one takes them from the config, the catalog or the data.
        known = (self.saved_info.labels if self.saved_info else None) or self.cfg.labels or meta.get("labels")
        if problem == "multi_label":
            where = {"column": None if label_columns else d.label_column, "columns": label_columns or None,
                     "delimiter": d.label_delimiter}
            labels = multi_label_names(ds["train"], labels=known, **where)
            ds = multi_hot(ds, labels, d.source, **where)
        else:
            labels = label_map(ds["train"], d.label_column, known, d.source)
            ds = map_labels(ds, d.label_column, labels, d.source)
        ds = ds.select_columns([d.text_column, "labels"])
        counts = self._label_counts(ds["train"], len(labels), problem == "multi_label")
        if problem == "single_label":
            self._check_classes(ds, labels, counts)
        info = SentimentInfo(labels=labels, problem_type=problem,
                             thresholds=self.saved_info.thresholds if self.saved_info else None,
                             label_counts=counts, train_rows=len(ds["train"]))
        info.class_weights = class_weights(self.cfg.train.class_weights, counts, len(ds["train"]),
                                           problem == "multi_label")
        if problem == "multi_label":
            notes["multi-label"] = f"{len(labels)} labels, {sum(counts) / max(len(ds['train']), 1):.2f} per text"
        if info.class_weights:
            notes["class weights"] = dict(zip(labels, info.class_weights))
        return Data(ds, info, notes)

    def stream_rows(self, batch: dict[str, list], info: DataInfo) -> dict[str, list]:
        """``data.streaming=true``: raw rows as :meth:`load_data` leaves them (text, label id), single-label only;
        blank texts skipped (or refused: data.empty_texts=error); a label not among ``info.labels`` (learned from
        the first rows, or given with labels=[...]) is refused, naming it. An int label not among the names is a
        class id (a hub ``ClassLabel`` column)."""
        d = self.cfg.data
        if getattr(info, "problem_type", "single_label") != "single_label":
            raise ConfigError("data.streaming=true streams single-label data only; multi-label data is read in "
                              "memory (data.streaming=false).")
        names = list(info.labels or [])
        index = {n: i for i, n in enumerate(names)}
        texts, ids = [], []
        for text, label in zip(batch[d.text_column], batch[d.label_column]):
            if text is None or not str(text).strip():
                if d.empty_texts == "error":
                    raise DataError(f"{d.source}: a streamed training row has an empty text (data.empty_texts="
                                    f"error); fix the row or set data.empty_texts=skip.")
                continue
            found = index.get(str(label))
            if found is None and isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names):
                found = label
            if found is None:
                raise DataError(f"{d.source}: a streamed training row has the label {label!r} in column "
                                f"{d.label_column!r}, not one of {names} (the labels of the first rows read). "
                                f"List every label with labels=[...].")
            texts.append(text)
            ids.append(found)
        return {d.text_column: texts, "labels": ids}

    def _check_classes(self, ds: Any, labels: list[str], train_counts: list[int]) -> None:
        """A single-label split with one class only: training on it learns nothing (every prediction is that
        class, and accuracy is 1.0), so a run refuses it; evaluating on it gives metrics that say little about
        the other classes, so evaluation warns loudly."""
        source = self.cfg.data.source
        present = [name for name, n in zip(labels, train_counts) if n]
        if self.run_dir is not None and len(present) < 2:
            raise DataError(f"{source}: every training row has the label {present[0]!r} "
                            f"({train_counts[labels.index(present[0])]} rows), and a classifier needs at least two "
                            f"classes to learn. Check data.label_column ({self.cfg.data.label_column!r}) and that "
                            f"the data holds examples of every class.")
        if self.run_dir is None:  # evaluation and prediction: the data is what the user wants scored
            for split, d in ds.items():
                found = np.unique(d.with_format("arrow", columns=["labels"])[:]["labels"].to_numpy())
                if len(d) and len(found) == 1:
                    logger.warning("%s (%s split): every row has the label %r: accuracy and the other metrics "
                                   "say nothing about how the model tells the classes apart.", source, split,
                                   labels[int(found[0])])

    @staticmethod
    def _label_counts(train: Any, n_labels: int, multi_label: bool) -> list[int]:
        """Training examples per label, from the Arrow column (no pass over the rows in Python)."""
        import pyarrow.compute as pc

        column = train.with_format("arrow", columns=["labels"])[:]["labels"]
        if multi_label:
            hot = pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, n_labels)
            return [int(c) for c in hot.sum(axis=0, dtype=np.int64)]
        ids = column.to_numpy(zero_copy_only=False)
        return [int(c) for c in np.bincount(ids, minlength=n_labels)[:n_labels]]

    def encode(self, batch: dict[str, list]) -> pa.Table:
        # Ids only, straight into Arrow: the collator builds the attention mask from the lengths.
        out = {"input_ids": token_ids(self.tokenizer, batch[self.cfg.data.text_column], self.cfg.data.max_length)}
        if "labels" in batch:
            out["labels"] = pa.array(batch["labels"])
        return pa.table(out)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.pad(features, return_tensors="pt")
        if self.multi_label and "labels" in batch:
            batch["labels"] = batch["labels"].float()  # multi-hot targets of the binary cross-entropy
        return batch

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """The encoder with a classification head for ``info.labels`` (a new head when the label set differs);
        without labels (a plain classifier loaded for prediction) the model's own labels are kept."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        assert isinstance(info, SentimentInfo)
        path = resolve_model(self.cfg.model.name)
        # a LoRA run's model/ holds no config.json of its own: its base model's says the problem type
        described_by = loader.config_folder(path)
        trust = self.cfg.model.trust_remote_code
        self.tokenizer = pretrained(AutoTokenizer, path, trust_remote_code=trust)
        if info.problem_type is None:  # no data: what the model says, else the config
            own = getattr(pretrained(AutoConfig, described_by, trust_remote_code=trust), "problem_type", None)
            multi = own == HF_PROBLEM_TYPES["multi_label"] or self.cfg.problem_type == "multi_label"
            info.problem_type = "multi_label" if multi else "single_label"
        # model.dtype=auto gives fp32 master weights: transformers 5 otherwise keeps a checkpoint's storage dtype
        # (bf16 on most hub models); reduced precision comes from the accelerate config's autocast instead.
        kwargs: dict[str, Any] = {"problem_type": HF_PROBLEM_TYPES[info.problem_type]}
        labels = info.labels or (list(self.cfg.labels) if self.cfg.labels else None)
        if labels and self.saved_info is not None and self.saved_info.labels and described_by == path:
            # a reloaded model keeps its trained head: never a new random one (a LoRA run's head is in its
            # adapter, and the base's config.json describes the base's)
            _check_head(path, labels)
        if labels:
            kwargs |= {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                      "label2id": {n: i for i, n in enumerate(labels)},
                      "ignore_mismatched_sizes": True}  # a new head when the label set differs
        # weights, a LoRA adapter on its base, or an ONNX export (whose int8 fp32 fallback is inside the model)
        self.model, loading = loader.load(AutoModelForSequenceClassification, path, self.cfg.model,
                                          output_loading_info=True, **kwargs)
        self.new_modules = lora.new_modules(loading)  # the new head: trained in full under LoRA
        info.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.set_thresholds(info.thresholds)

    def set_thresholds(self, thresholds: list[float] | None) -> None:
        """Set the multi-label decision thresholds (one per label), in the info (descriptor) and in the model's
        config (``decision_thresholds`` in config.json, for users of plain transformers)."""
        assert self.info is not None
        self.info.thresholds = [float(t) for t in thresholds] if thresholds else None
        config = self.model.config
        if self.info.thresholds and self.multi_label:
            config.decision_thresholds = dict(zip(self.labels, self.info.thresholds))
        elif hasattr(config, "decision_thresholds"):
            del config.decision_thresholds  # a previous model's: not this head's

    def decision_thresholds(self) -> np.ndarray:
        """The threshold of every label (0.5 until tuned)."""
        found = self.info.thresholds if self.info is not None else None
        return np.asarray(found if found else [0.5] * len(self.labels), dtype=float)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores of the labels: sigmoid (multi-label) or softmax (single-label) of the logits."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(-1)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The model's own loss (cross-entropy, or BCE for multi-label), weighted by ``train.class_weights``."""
        weights = self.info.class_weights if self.info is not None else None
        if not weights:
            return model(**batch).loss
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        w = torch.tensor(weights, dtype=logits.dtype, device=logits.device)
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=w)
        return F.cross_entropy(logits, labels, weight=w)

    def callbacks(self) -> list[Callback]:
        lora.check_trainable(self.cfg)
        found: list[Callback] = [ThresholdTuning()]
        if self.cfg.train.lora:
            # the new head (classifier, and e.g. DistilBERT's pre_classifier) trains in full beside the adapters
            found.append(LoraAdapters(self.cfg.lora, task_type="SEQ_CLS",
                                      modules_to_save=lambda: getattr(self, "new_modules", None) or None))
        return found

    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model (the LoRA adapter and head, or with ``lora.merge`` the merged plain model) + tokenizer."""
        if lora.is_peft_model(self.model) and self.cfg.lora.merge:
            self.model, state_dict = lora.merge_lora(self.model), None
        super().save(directory, state_dict=state_dict)

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model, batch):
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        labels = batch["labels"]
        probs = self.probabilities(logits)
        if self.multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(-1)
            return {"probs": probs, "label": labels.long(), "loss": loss}
        return {"pred": logits.argmax(-1), "label": labels, "probs": probs,
                "loss": F.cross_entropy(logits, labels, reduction="none")}

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        if self.multi_label:
            return self._multi_label_metrics(outputs)
        preds, refs = outputs["pred"], outputs["label"]
        ids = list(range(len(self.labels or [])))
        metrics: dict[str, Any] = {}
        metrics.update(compute("accuracy", predictions=preds, references=refs))
        prf = compute("precision_recall_f1", predictions=preds, references=refs, labels=ids)
        metrics.update({f"macro_{k}": v for k, v in prf.items()})
        metrics.update(compute("balanced_accuracy", predictions=preds, references=refs))
        ap = compute("average_precision", prediction_scores=outputs["probs"], references=refs)
        metrics["macro_average_precision"] = ap["macro_average_precision"]
        metrics["loss"] = float(sum(outputs["loss"]) / max(len(outputs["loss"]), 1))
        metrics["confusion_matrix"] = compute("confusion_matrix", predictions=preds, references=refs,
                                              labels=ids)["confusion_matrix"]
        metrics["per_class"] = {**compute("per_class", predictions=preds, references=refs, labels=ids),
                                "average_precision": ap["average_precision"]}
        metrics["labels"] = list(self.labels or [])
        return metrics

    def _multi_label_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        probs, refs = np.asarray(outputs["probs"], dtype=float), outputs["label"]
        thresholds = self.decision_thresholds()
        preds = (probs >= thresholds).astype(np.int64).tolist()
        metrics: dict[str, Any] = compute("multilabel", predictions=preds, references=refs)
        ap = compute("average_precision", prediction_scores=outputs["probs"], references=refs)
        metrics["macro_average_precision"] = ap["macro_average_precision"]
        metrics["loss"] = float(sum(outputs["loss"]) / max(len(outputs["loss"]), 1))
        metrics["per_class"] = {**compute("per_class", predictions=preds, references=refs),
                                "average_precision": ap["average_precision"]}
        metrics["labels"] = list(self.labels or [])
        metrics["thresholds"] = [float(t) for t in thresholds]
        return metrics

    # ------------------------------------------------------------------ inference
    @staticmethod
    def _top_k(top_k: Any, n_labels: int) -> Any:
        if top_k is _ALL:
            return _ALL
        if top_k is None or top_k == 0:  # None: every label (transformers' convention); 0: the same (CLI)
            return n_labels
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise UsageError(f"top_k={top_k!r}: expected a positive number of labels, or None for all of them.")
        return min(top_k, n_labels)

    @torch.inference_mode()
    def predict(self, inputs: list[Any], batch_size: int = 64, top_k: Any = _ALL,
                **kwargs: Any) -> list[Any]:
        """Single-label: ``{"label", "score"}`` per text, the best label. Multi-label: ``[{"label", "score"}, ...]``
        per text, every label whose score reaches its threshold, best first. ``top_k=k``: the k best labels
        with their scores, best first, whatever the thresholds; ``top_k=None`` (or 0): every label, as
        ``transformers.pipeline`` does. Blank texts get ``{"label": None, "score": None}`` (or ``[]``)."""
        if kwargs:
            raise UsageError(f"Unknown option(s) for sentiment prediction: {sorted(kwargs)}; known: top_k.")
        labels = self.labels
        k = self._top_k(top_k, len(labels))
        ranked = k is not _ALL or self.multi_label
        todo = check_texts(inputs)
        results: list[Any] = [[] if ranked else {"label": None, "score": None} for _ in inputs]
        if not todo:
            return results
        texts = [inputs[i] for i in todo]
        ids = token_ids(self.tokenizer, texts, self.cfg.data.max_length).to_pylist()
        device = self.model.device  # a transformers model's, or an ONNX Runtime model's (nlpkit export): cpu
        pad_id = self.tokenizer.pad_token_id or 0
        thresholds = self.decision_thresholds()

        def answer(scores: np.ndarray) -> Any:
            order = np.argsort(-scores, kind="stable")
            if not ranked:
                return {"label": labels[int(order[0])], "score": float(scores[order[0]])}
            chosen = order[:k] if k is not _ALL else [j for j in order if scores[j] >= thresholds[j]]
            return [{"label": labels[int(j)], "score": float(scores[j])} for j in chosen]

        model = self.model
        # An int8 ONNX export with an fp32 fallback (nlpkit export --fallback-margin): its close calls are
        # re-scored together after the first pass, in length-sorted batches of their own, rather than as a
        # small fp32 sub-batch padded to each batch's length.
        deferred = getattr(model, "fallback", None) is not None and hasattr(model, "run_fallback")
        first = (lambda **batch: model(**batch, fallback=False)) if deferred else model

        def logits_of(run: Any) -> Any:
            def scored(rows: list[list[int]]) -> list[torch.Tensor]:
                input_ids, mask = pad(rows, pad_id)
                return list(run(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.cpu())
            return scored

        lengths = [len(x) for x in ids]
        logits = run_sorted(ids, lengths, batch_size, logits_of(first))
        close = model.close_calls(torch.stack(logits)) if deferred else []
        if len(close):
            redo = run_sorted([ids[i] for i in close], [lengths[i] for i in close], batch_size,
                              logits_of(model.run_fallback), progress=False)
            for i, row in zip(close, redo):
                logits[i] = row
        for i, row in zip(todo, self.probabilities(torch.stack(logits)).numpy()):
            results[i] = answer(row)
        return results

    def prediction_columns(self, inputs: list[Any], outputs: list[Any]) -> dict[str, list]:
        """``nlpkit predict`` columns: ``label`` and ``score`` (the best label); with several labels per row
        (``--top-k``, multi-label) ``labels`` and ``scores``, JSON lists, best first."""
        if not any(isinstance(o, list) for o in outputs):
            return super().prediction_columns(inputs, outputs)
        rows = [o or [] for o in outputs]
        return {"labels": [json.dumps([p["label"] for p in r], ensure_ascii=False) for r in rows],
                "scores": [json.dumps([round(p["score"], 6) for p in r]) for r in rows]}

    def export_spec(self) -> Any:
        """``nlpkit export``: the core's classifier graph (:mod:`nlpkit.plugins.sentiment.export`)."""
        from nlpkit.plugins.sentiment.export import export_spec

        return export_spec(self.multi_label)

    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: a text -> every label with its score (:mod:`nlpkit.plugins.sentiment.demo`)."""
        from nlpkit.plugins.sentiment.demo import build_demo

        return build_demo(pipe)

    def serve_routes(self, server: Any) -> Any:
        """``nlpkit serve``: ``POST /v1/classify`` (:mod:`nlpkit.plugins.sentiment.serve`)."""
        from nlpkit.plugins.sentiment.serve import routes

        return routes(server)

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        test = results.test or {}
        sections = [confusion_section(run_dir, test), per_class_section(test),
                    pr_curve_section(run_dir, test, results.test_outputs or {})]
        return [s for s in sections if s is not None]
