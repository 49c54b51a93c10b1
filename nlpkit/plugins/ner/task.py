"""Named-entity recognition (token classification): ``AutoModelForTokenClassification`` fine-tuned on tagged tokens.

Data: token lists + tag lists (jsonl/parquet/hub datasets, tags as names or ``ClassLabel`` ids) or CoNLL column
files, in IOB1, IOB2 or BIOES (:mod:`nlpkit.plugins.ner.tags`: converted to IOB2, an ``I-`` that opens an entity
repaired or refused). Sub-words: the first sub-word of each word carries its tag and the rest are ignored, or every
sub-word is labelled (``subword_labels``). Metrics: entity-level precision/recall/F1 with seqeval, default and strict
modes, per type, and a word-level confusion between types. The pipeline returns entity spans with character
offsets, grouped as ``transformers.pipeline("token-classification", aggregation_strategy="simple")`` groups them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from nlpkit import loader, lora
from nlpkit.callbacks import Callback, LoraAdapters
from nlpkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, one_of, opt
from nlpkit.data import load_splits
from nlpkit.errors import DataError, ModelNotFoundError, UsageError
from nlpkit.inference import check_texts, pad, run_sorted
from nlpkit.metrics import compute
from nlpkit.modeling import pretrained, resolve_model
from nlpkit.plugins.ner.data import (
    LINE_COLUMN,
    is_conll,
    label_set,
    read_conll,
    resolve_scheme,
    tag_names,
    to_tag_lists,
)
from nlpkit.plugins.ner.export import export_spec  # registers the token-classifier export kind
from nlpkit.plugins.ner.spans import group_spans, softmax
from nlpkit.plugins.ner.tags import SCHEMES, TagCheck, split_tag
from nlpkit.task import Data, DataInfo, RunResults, Task

logger = logging.getLogger("nlpkit.ner")
#: The attention kernel :meth:`NerTask.predict` runs a PyTorch model on CPU with, unless ``model.attn_implementation``
#: names one: on predict's length-sorted batches (little padding) eager attention beat torch's SDPA in 11 of 12
#: rounds of two runs with the default MiniLM-L6 run on a 2-core CPU (2.07x and 2.03x transformers.pipeline against
#: 1.94x and 1.92x, identical spans; docs/tasks/ner.md). Training keeps the model's own kernel.
CPU_ATTENTION = "eager"
#: The columns of the splits :meth:`NerTask.load_data` returns: token lists and IOB2 tag ids.
TOKENS, TAGS = "tokens", "tags"


@dataclass
class NerDataConfig(DataConfig):
    """The data options, with the ner task's columns, formats and tag schemes."""

    text_column: str = opt("tokens", "Column of token lists (one list of words per sentence) in table and hub "
                                     "data; CoNLL files fill it from their first column.")
    label_column: str = opt("ner_tags", "Column of tag lists, one tag per token: names (B-PER, I-PER, O) or ids "
                                        "(a hub dataset's ClassLabel sequence, or ids named by `labels`).")
    predict_column: str = opt("text", "Column of raw texts that `nlpkit predict` reads from a file.")
    format: str = opt("auto", "`auto` (CoNLL columns for .conll/.iob/.bio/.bioes files and for .txt files or folders "
                              "whose lines are token ... tag columns; else a table or hub dataset), `conll` or "
                              "`table`.", check=one_of("auto", "conll", "table"))
    conll_tag_column: int = opt(-1, "The column of a CoNLL line that holds the tag (-1: the last; the token is "
                                    "always the first).")
    scheme: str = opt("auto", "Tag scheme of the data: IOB1 (I- opens entities, B- separates adjacent ones of one "
                              "type: the original CoNLL-2003 files), IOB2 (B- opens every entity), BIOES (also "
                              "S-/E-; BILOU's U-/L- read as S-/E-) or `auto` (BIOES when S-/E- tags occur, else "
                              "IOB2). Training and metrics use IOB2.", check=one_of(*SCHEMES))
    invalid_tags: str = opt("repair", "An I-TYPE opening an entity in IOB2/BIOES data (after O or another type): "
                                      "`repair` (read as B-TYPE, counted in the report, as conlleval reads it) or "
                                      "`error` (a one-line error naming the file, line or row, and token).",
                            check=one_of("repair", "error"))


@dataclass
class NerConfig(RunConfig):
    task: str = opt("ner", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="Encoder to fine-tune (model.name: a catalog name, a hub id such as "
                                  "bert-base-cased, or a local folder / previous run; it needs a fast tokenizer) and "
                                  "how it is loaded.", factory=lambda: ModelConfig(name="minilm-l6"))
    labels: Optional[list[str]] = opt(None, "Tag names in id order, for data whose tags are ids without a ClassLabel "
                                            "feature (default: O then B-/I- of every type found, types sorted; a "
                                            "saved model keeps its own).")
    subword_labels: str = opt("first", "Which sub-words of a word carry its tag in training: `first` (the rest "
                                       "are ignored by the loss) or `all` (the rest get I-TYPE). Evaluation and "
                                       "word-level metrics read each word's first sub-word either way.",
                              check=one_of("first", "all"))
    data: NerDataConfig = opt(help="Data options.", factory=lambda: NerDataConfig(
        source="wnut16", validation_size=0.15, test_size=0.15, max_length=128))
    train: TrainConfig = opt(help="Training options.", factory=lambda: TrainConfig(
        full_lr=3e-4, epochs=8.0, batch_size=16, metric_for_best="f1", greater_is_better=True))


@dataclass
class NerInfo(DataInfo):
    """The tag names (``labels``, IOB2, id order), the data's own scheme and how sub-words were labelled."""

    #: The scheme the training data was written in (converted to IOB2 for the model).
    scheme: Optional[str] = None
    #: ``first`` or ``all``: which sub-words carried a word's tag in training.
    subword_labels: str = "first"


class NerTask(Task):
    """Named-entity recognition (token classification). Metrics: entity precision/recall/F1 (seqeval default
    and strict), per-type table, confusion between types; the pipeline gives entity spans with character
    offsets."""

    Config = NerConfig
    Info = NerInfo
    hub_task_type = "token-classification"
    usage_example = ["Empire State Building is in New York", "Watching the Lakers game with Sarah tonight"]
    architectures = ("ForTokenClassification",)
    metric_names = ("f1", "precision", "recall", "strict_f1", "strict_precision", "strict_recall", "macro_f1",
                    "accuracy", "loss")
    prediction_name = "entities"
    cfg: NerConfig
    info: NerInfo | None

    @property
    def labels(self) -> list[str]:
        """The tag names in id order (known once the data or the model is loaded)."""
        return list(self.info.labels or []) if self.info is not None else []

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        d = self.cfg.data
        conll = is_conll(d.source, d.format)
        loaded = None
        if conll:
            raw = read_conll(d.source, tokens_column=d.text_column, tags_column=d.label_column,
                             tag_column=d.conll_tag_column)
            loaded = (raw, {})
        columns = {d.text_column: "data.text_column", d.label_column: "data.label_column"}
        ds, meta = load_splits(d, self.cfg.seed, loaded=loaded, columns=columns)
        saved = self.saved_info
        id_names = tag_names(ds["train"], d.label_column) or (list(self.cfg.labels) if self.cfg.labels else None)
        sample = ds["train"].select(range(min(len(ds["train"]), 2000)))[d.label_column]
        scheme = resolve_scheme(d.scheme if d.scheme != "auto" else meta.get("scheme", "auto"), sample, id_names)
        notes: dict[str, Any] = {"format": "CoNLL columns" if conll else "token and tag lists",
                                 "tag scheme": scheme + (" (converted to IOB2)" if scheme != "IOB2" else "")}
        tokens: dict[str, list] = {}
        tags: dict[str, list] = {}
        repaired: dict[str, int] = {}
        skipped: dict[str, int] = {}
        for split in ds:
            check = TagCheck()
            tokens[split], tags[split], skipped[split] = to_tag_lists(
                ds[split], tokens_column=d.text_column, tags_column=d.label_column, scheme=scheme,
                invalid=d.invalid_tags, source=d.source, split=split, id_names=id_names, check=check)
            if check.total:
                repaired[split] = check.total
                logger.warning("%s (%s split): %d I- tags opened an entity and were read as B- (%d sentences).",
                               d.source, split, check.total, check.rows_repaired)
            if not tokens[split]:
                raise DataError(f"{d.source} ({split} split) has no sentence with tokens.")
        if repaired:
            notes["I- tags opening an entity, read as B- (data.invalid_tags=repair)"] = repaired
        if any(skipped.values()):
            notes["sentences without tokens skipped"] = skipped
        found = label_set([t for split in tags for t in tags[split]])
        if saved is not None and saved.labels:
            labels = list(saved.labels)
            unknown = sorted(set(found) - set(labels))
            if unknown:
                raise DataError(f"{d.source} has tags the model was not trained on: {', '.join(unknown)} (it knows "
                                f"{', '.join(labels)}). Evaluate it on data with its entity types.")
        elif self.cfg.labels:
            labels = [str(x) for x in self.cfg.labels]
            missing = sorted(set(found) - set(labels))
            if missing:
                raise DataError(f"{d.source} has tags that labels=[...] does not list: {', '.join(missing)}.")
        else:
            labels = found
            absent = sorted({split_tag(t)[1] for t in found if t != "O"}
                            - {split_tag(t)[1] for row in tags["train"] for t in row if t != "O"})
            if absent:
                logger.warning("Entity types %s occur in validation/test but never in training: the model cannot "
                               "learn them.", absent)
                notes["types absent from training"] = absent
        index = {name: i for i, name in enumerate(labels)}
        from datasets import Dataset, DatasetDict

        splits = DatasetDict({split: Dataset.from_dict({TOKENS: tokens[split],
                                                        TAGS: [[index[t] for t in row] for row in tags[split]]})
                              for split in ds})
        counts = {split: sum(len(row) for row in tokens[split]) for split in splits}
        notes["tokens"] = counts
        notes["entities"] = {split: sum(t.startswith("B-") for row in tags[split] for t in row) for split in splits}
        if LINE_COLUMN in ds["train"].column_names:
            notes["format"] += f" ({d.source})"
        info = NerInfo(labels=labels, scheme=scheme, subword_labels=self.cfg.subword_labels)
        return Data(splits, info, notes)

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """The encoder with a token-classification head for ``info.labels`` (a new head when they differ); without
        labels (a plain token classifier loaded for prediction) the model's own labels are kept."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        assert isinstance(info, NerInfo)
        path = resolve_model(self.cfg.model.name)
        trust = self.cfg.model.trust_remote_code
        tokenizer = pretrained(AutoTokenizer, path, trust_remote_code=trust)
        if getattr(tokenizer, "add_prefix_space", None) is False:
            # byte-level BPE (RoBERTa, GPT-2): words given one by one need the space they had in the text
            tokenizer = pretrained(AutoTokenizer, path, trust_remote_code=trust, add_prefix_space=True)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelNotFoundError(f"{self.cfg.model.name}: its tokenizer ({type(tokenizer).__name__}) is not a "
                                     f"fast (Rust) tokenizer, which named-entity recognition needs for word ids and "
                                     f"character offsets. Use a model with a tokenizer.json.")
        self.tokenizer = tokenizer
        kwargs: dict[str, Any] = {}
        if info.labels:
            kwargs = {"num_labels": len(info.labels), "id2label": dict(enumerate(info.labels)),
                      "label2id": {n: i for i, n in enumerate(info.labels)}, "ignore_mismatched_sizes": True}
        self.model, loading = loader.load(AutoModelForTokenClassification, path, self.cfg.model,
                                          output_loading_info=True, **kwargs)
        self.new_modules = lora.new_modules(loading)  # the new head: trained in full under LoRA
        config = self.model.config
        info.labels = [config.id2label[i] for i in range(config.num_labels)]

    def callbacks(self) -> list[Callback]:
        lora.check_trainable(self.cfg)
        if not self.cfg.train.lora:
            return []
        return [LoraAdapters(self.cfg.lora, task_type="TOKEN_CLS",
                             modules_to_save=lambda: getattr(self, "new_modules", None) or None)]

    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model (the LoRA adapter and head, or with ``lora.merge`` the merged plain model) + tokenizer."""
        if lora.is_peft_model(self.model) and self.cfg.lora.merge:
            self.model, state_dict = lora.merge_lora(self.model), None
        super().save(directory, state_dict=state_dict)

    # ------------------------------------------------------------------ encoding
    def _continuation(self) -> list[int]:
        """For ``subword_labels=all``: the id of I-TYPE for every label id (B-TYPE -> I-TYPE, others unchanged)."""
        index = {name: i for i, name in enumerate(self.labels)}
        return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(self.labels)]

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        """Sub-word ids of the words; ``labels`` per sub-word (-100 where the loss ignores it); ``word_pos`` (the
        first sub-word of each word, -1 when truncation or the tokenizer left it none) and ``word_tags``
        (every word's tag id), which evaluation scores words by."""
        enc = self.tokenizer(batch[TOKENS], is_split_into_words=True, truncation=True,
                             max_length=self.cfg.data.max_length)
        every = self.info is not None and self.info.subword_labels == "all"
        cont = self._continuation() if every else []
        out: dict[str, list] = {"input_ids": enc["input_ids"], "labels": [], "word_pos": []}
        if "token_type_ids" in enc:
            out["token_type_ids"] = enc["token_type_ids"]
        tags = batch.get(TAGS)
        if tags is not None:
            out["word_tags"] = tags
        for i, words in enumerate(batch[TOKENS]):
            word_ids = enc.word_ids(i)
            pos = [-1] * len(words)
            labels = [-100] * len(word_ids)
            previous = None
            for t, w in enumerate(word_ids):
                if w is None:
                    previous = None
                    continue
                if w != previous:
                    pos[w] = t
                    if tags is not None:
                        labels[t] = tags[i][w]
                elif every and tags is not None:
                    labels[t] = cont[tags[i][w]]
                previous = w
            out["labels"].append(labels)
            out["word_pos"].append(pos)
        if tags is None:
            del out["labels"]
        return out

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id or 0
        ids, mask = pad([f["input_ids"] for f in features], pad_id)
        batch: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask}
        width, words = ids.shape[1], max(len(f["word_pos"]) for f in features)

        def padded(key: str, size: int, value: int) -> torch.Tensor:
            out = torch.full((len(features), size), value, dtype=torch.long)
            for i, f in enumerate(features):
                out[i, :len(f[key])] = torch.as_tensor(f[key], dtype=torch.long)
            return out

        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = padded("token_type_ids", width, 0)
        if "labels" in features[0]:
            batch["labels"] = padded("labels", width, -100)
        batch["word_pos"] = padded("word_pos", words, -1)
        if "word_tags" in features[0]:
            batch["word_tags"] = padded("word_tags", words, -100)
        return batch

    @staticmethod
    def _inputs(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any],
             num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        """The model's own cross-entropy over the labelled sub-words (mean of the batch)."""
        return model(**self._inputs(batch), labels=batch["labels"]).loss

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        """Per sentence: the predicted tag id of every word (its first sub-word's; ``O`` for a word that has none,
        e.g. cut by data.max_length), the reference ids (-100 padded) and the sub-word loss."""
        logits = model(**self._inputs(batch)).logits.float()
        pos = batch["word_pos"]
        pred_tokens = logits.argmax(-1)
        pred = torch.gather(pred_tokens, 1, pos.clamp(min=0))
        pred = torch.where(pos >= 0, pred, torch.zeros_like(pred))  # id 0 is O
        gold = batch["word_tags"]
        pred = torch.where(gold == -100, torch.full_like(pred, -100), pred)
        labels = batch["labels"]
        per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none", ignore_index=-100)
        counted = (labels != -100).sum(-1).clamp(min=1)
        return {"pred": pred, "label": gold, "loss": per_token.sum(-1) / counted}

    def _names(self, rows: list[list[int]]) -> list[list[str]]:
        labels = self.labels
        return [[labels[t] for t in row if t != -100] for row in rows]

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        preds, refs = self._names(outputs["pred"]), self._names(outputs["label"])
        default = compute("seqeval_entities", predictions=preds, references=refs)
        strict = compute("seqeval_entities", predictions=preds, references=refs, mode="strict", scheme="IOB2")
        metrics: dict[str, Any] = {k: default[k] for k in ("f1", "precision", "recall", "macro_f1", "accuracy")}
        metrics.update({f"strict_{k}": strict[k] for k in ("f1", "precision", "recall")})
        metrics["loss"] = float(np.mean(outputs["loss"])) if outputs.get("loss") else float("nan")
        metrics["per_type"] = default["per_type"]
        metrics["per_type_strict"] = strict["per_type"]
        kinds = sorted({split_tag(t)[1] for t in self.labels if t != "O"})
        names = [*kinds, "O"]
        where = {k: i for i, k in enumerate(names)}
        matrix = np.zeros((len(names), len(names)), dtype=np.int64)
        for p_row, r_row in zip(preds, refs):
            for p, r in zip(p_row, r_row):
                matrix[where[split_tag(r)[1] or "O"], where[split_tag(p)[1] or "O"]] += 1
        metrics["confusion_matrix"] = matrix.tolist()
        metrics["confusion_labels"] = names
        return metrics

    # ------------------------------------------------------------------ inference
    def prediction_input_column(self) -> str:
        return self.cfg.data.predict_column

    @torch.inference_mode()
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[Any]:
        """The entity spans of every text: ``[{"type", "start", "end", "score", "text"}, ...]`` in text order
        (character offsets into the text; ``score`` the mean softmax score of the span's sub-words), grouped as
        transformers' token-classification pipeline with ``aggregation_strategy="simple"`` groups them. Texts
        are cut at ``data.max_length`` tokens; a blank text has no spans."""
        if kwargs:
            raise UsageError(f"Unknown option(s) for ner prediction: {sorted(kwargs)}.")
        todo = check_texts(inputs)
        results: list[Any] = [[] for _ in inputs]
        if not todo:
            return results
        texts = [inputs[i] for i in todo]
        self._cpu_attention()
        enc = self.tokenizer(texts, truncation=True, max_length=self.cfg.data.max_length,
                             return_offsets_mapping=True, return_special_tokens_mask=True)
        rows = list(range(len(texts)))
        ids = enc["input_ids"]
        labels = self.labels
        model = self.model
        device = model.device
        pad_id = self.tokenizer.pad_token_id or 0

        def spans(chunk: list[int]) -> list[list[dict[str, Any]]]:
            input_ids, mask = pad([ids[r] for r in chunk], pad_id)
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            scores = softmax(logits.float().cpu().numpy())
            return [group_spans(texts[r], scores[j, :len(ids[r])], enc["offset_mapping"][r],
                                enc["special_tokens_mask"][r], labels) for j, r in enumerate(chunk)]

        found = run_sorted(rows, [len(x) for x in ids], batch_size, spans)
        for i, row in zip(todo, found):
            results[i] = row
        return results

    def _cpu_attention(self) -> None:
        """Switch a PyTorch model on CPU from SDPA to :data:`CPU_ATTENTION` unless the config chose a kernel."""
        model = self.model
        if (self.cfg.model.attn_implementation or not hasattr(model, "set_attn_implementation")
                or getattr(model, "device", None) is None or model.device.type != "cpu"
                or getattr(model.config, "_attn_implementation", None) != "sdpa"):
            return
        model.set_attn_implementation(CPU_ATTENTION)

    def prediction_columns(self, inputs: list[Any], outputs: list[Any]) -> dict[str, list]:
        """``nlpkit predict`` columns: ``entities`` (the spans of each row, a JSON list)."""
        import json

        return {"entities": [json.dumps(o or [], ensure_ascii=False) for o in outputs]}

    # ------------------------------------------------------------------ export, report, demo, serve
    def export_spec(self) -> Any:
        """``nlpkit export``: the encoder's per-token logits as one ONNX graph (:mod:`nlpkit.plugins.ner.export`)."""
        return export_spec()

    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        from nlpkit.plugins.ner.report import sections

        return sections(run_dir, results.test or {}, results.extra)

    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: a text -> its entities highlighted (:mod:`nlpkit.plugins.ner.demo`)."""
        from nlpkit.plugins.ner.demo import build_demo

        return build_demo(pipe)

    def serve_routes(self, server: Any) -> Any:
        """``nlpkit serve``: ``POST /v1/entities`` (:mod:`nlpkit.plugins.ner.serve`)."""
        from nlpkit.plugins.ner.serve import routes

        return routes(server)
