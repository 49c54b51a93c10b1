"""Sentence embeddings: a transformer encoder + pooling (+ normalisation) fine-tuned so that texts that go together
(a question and its answer, two paraphrases) get close vectors.

Data: pairs ``(anchor, positive)``, triplets ``(anchor, positive, negative)`` or scored pairs ``(anchor, positive,
score)``. Losses: MultipleNegativesRanking (in-batch negatives, plus the hard negatives of triplets), a triplet
margin loss, CoSENT and a cosine regression, picked from the data's columns or named (``loss=``). Evaluation:
retrieval over a corpus built from the split (each anchor's positive among every passage of the split: MRR@10,
NDCG@10, recall@1/10) and, where the data has scores, Spearman's rank correlation of cosine and score.

The saved model is a sentence-transformers folder (``modules.json``, ``1_Pooling/config.json``, ``2_Normalize``
beside the transformer's weights and tokenizer), so ``sentence_transformers.SentenceTransformer(path)`` loads it
and gives the same vectors as ``nlpkit.pipeline(run)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from nlpkit import loader, lora
from nlpkit.callbacks import Callback, LoraAdapters
from nlpkit.data import drop_empty_texts, load_splits, origin_of
from nlpkit.errors import ConfigError, DataError, UsageError
from nlpkit.inference import check_texts, pad, run_sorted
from nlpkit.modeling import pretrained
from nlpkit.plugins.embeddings import export as _export  # noqa: F401  (registers the "sentence-encoder" kind)
from nlpkit.plugins.embeddings.config import EmbeddingsConfig
from nlpkit.plugins.embeddings.retrieval import retrieval_metrics, spearman
from nlpkit.plugins.embeddings.st_layout import read_st_modules, write_st_modules
from nlpkit.task import Data, DataInfo, RunResults, Task
from nlpkit.tokenizing import token_ids

logger = logging.getLogger("nlpkit.embeddings")
#: The text columns an encoded example can have, in the order the loss reads them.
ROLES = ("anchor", "positive", "negative")


@dataclass
class EmbeddingsInfo(DataInfo):
    """How token vectors become the sentence vector, and what the training data held; saved with the model."""

    #: ``mean``, ``cls`` or ``max`` (None: not decided yet: the model folder's sentence-transformers pooling,
    #: else mean).
    pooling: Optional[str] = None
    #: Whether sentence vectors are scaled to length 1 (None: the folder's Normalize module, else true).
    normalize: Optional[bool] = None
    #: The loss the model was trained with (``mnrl``, ``triplet``, ``cosent``, ``cosine``).
    loss: Optional[str] = None
    #: What scores are divided by (scored pairs), so that 1.0 means "same meaning".
    score_max: Optional[float] = None
    #: Which of ``negative`` / ``score`` the encoded data carries (while training and evaluating).
    has_negative: bool = False
    has_score: bool = False
    transient: ClassVar[tuple[str, ...]] = ("has_negative", "has_score")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vectors from token vectors ``hidden`` (batch, tokens, dim) and the attention ``mask``, as
    sentence-transformers' Pooling computes them: ``mean`` of the unmasked tokens, ``cls`` (the first token) or
    ``max`` over the unmasked tokens."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def _key(ids: list[int]) -> int:
    """A stable 63-bit key of a token sequence: equal texts, equal keys (duplicate passages in a batch or split)."""
    return hash(tuple(ids)) & 0x7FFFFFFFFFFFFFFF


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Every cosine between the rows of ``a`` and ``b``."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


class EmbeddingsTask(Task):
    """Sentence embeddings: an encoder fine-tuned on pairs, triplets or scored pairs (MultipleNegativesRanking,
    triplet, CoSENT, cosine losses). Metrics: retrieval MRR@10, NDCG@10, recall@1/10, Spearman."""

    Config = EmbeddingsConfig
    Info = EmbeddingsInfo
    hub_task_type = "sentence-similarity"
    hub_library = "sentence-transformers"
    usage_example = ["How do I reset my password?", "Click 'Forgot password' on the sign-in page."]
    prediction_name = "embedding"
    #: A sentence-transformers folder (its modules.json): nlpkit.pipeline(folder) serves it as this task.
    saved_files = ("modules.json",)
    metric_names = ("mrr_at_10", "ndcg_at_10", "recall_at_1", "recall_at_10", "spearman", "pearson", "loss")
    cfg: EmbeddingsConfig
    info: EmbeddingsInfo | None

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        d = self.cfg.data
        columns = {d.anchor_column: "data.anchor_column", d.positive_column: "data.positive_column"}
        ds, meta = load_splits(d, self.cfg.seed, columns=columns)
        has_negative = bool(d.negative_column) and all(d.negative_column in s.column_names for s in ds.values())
        has_score = bool(d.score_column) and all(d.score_column in s.column_names for s in ds.values())
        texts = [d.anchor_column, d.positive_column] + ([d.negative_column] if has_negative else [])
        notes: dict[str, Any] = {}
        dropped = drop_empty_texts(ds, texts, d.empty_texts, d.source)
        if any(dropped.values()):
            notes["pairs with an empty text skipped"] = dropped
        names = dict(zip(ROLES, texts))
        if has_score:
            for split in list(ds):
                scores = self._scores(ds[split], split)
                ds[split] = ds[split].select_columns(texts).add_column("score", scores)
        else:
            for split in list(ds):
                ds[split] = ds[split].select_columns(texts)
        ds = ds.rename_columns({c: role for role, c in names.items() if c != role})
        loss = self._loss(has_negative, has_score)
        score_max = None
        if has_score:
            saved = self.saved_info.score_max if self.saved_info is not None else None
            score_max = d.score_max or saved or float(max(ds["train"]["score"]))
            if not score_max or score_max <= 0:
                raise DataError(f"{d.source}: every training score is 0 or less; set data.score_max to the score "
                                f"that means 'same meaning' (5 for STS-B).")
            notes["scores"] = f"divided by {score_max:g}; a pair is relevant (retrieval) from {d.relevant_score:g}"
        notes["training objective"] = loss + (" with hard negatives" if loss == "mnrl" and has_negative else "")
        base = self.saved_info or EmbeddingsInfo()
        info = EmbeddingsInfo(pooling=base.pooling, normalize=base.normalize, loss=loss, score_max=score_max,
                              has_negative=has_negative, has_score=has_score)
        return Data(ds, info, notes)

    def _scores(self, split_ds: Any, split: str) -> list[float]:
        """The score column as floats; a value that is not a number is a DataError naming its file and line."""
        d = self.cfg.data
        out = []
        for i, value in enumerate(split_ds[d.score_column]):
            try:
                score = float(value)
            except (TypeError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise DataError(f"{origin_of(split_ds, i, d.source, split)}: {d.score_column}={value!r} is not a "
                                f"number. Fix the row, or set data.score_column=null to train on the pairs without "
                                f"scores.")
            out.append(score)
        return out

    def _loss(self, has_negative: bool, has_score: bool) -> str:
        """The objective ``loss`` names, checked against what the data has (``auto``: cosent with scores, else
        mnrl)."""
        name = self.cfg.loss
        if name == "auto":
            return "cosent" if has_score else "mnrl"
        if name == "triplet" and not has_negative:
            raise ConfigError(f"loss=triplet needs a hard negative per pair, but {self.cfg.data.source} has no "
                              f"column {self.cfg.data.negative_column!r} (data.negative_column). Use loss=mnrl.")
        if name in ("cosent", "cosine") and not has_score:
            raise ConfigError(f"loss={name} needs a score per pair, but {self.cfg.data.source} has no column "
                              f"{self.cfg.data.score_column!r} (data.score_column). Use loss=mnrl.")
        return name

    def encode(self, batch: dict[str, list]) -> pa.Table:
        columns = {f"{role}_ids": token_ids(self.tokenizer, batch[role], self.cfg.data.max_length)
                   for role in ROLES if role in batch}
        if "score" in batch:
            scale = (self.info.score_max if self.info is not None else None) or 1.0
            columns["labels"] = pa.array([float(s) / scale for s in batch["score"]], type=pa.float32())
        return pa.table(columns)

    def lengths(self, encoded: Any) -> list[int]:
        """The longer of the anchor and the positive (what a batch pads to)."""
        from datasets import Dataset

        if not isinstance(encoded, Dataset):
            return [max(len(a), len(p)) for a, p in zip(encoded["anchor_ids"], encoded["positive_ids"])]
        import pyarrow.compute as pc

        table = encoded.with_format("arrow", columns=["anchor_ids", "positive_ids"])[:]
        a = pc.list_value_length(table["anchor_ids"]).to_numpy()
        p = pc.list_value_length(table["positive_ids"]).to_numpy()
        return np.maximum(a, p).tolist()

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id or 0
        batch: dict[str, torch.Tensor] = {}
        for role in ROLES:
            if f"{role}_ids" not in features[0]:
                continue
            rows = [f[f"{role}_ids"] for f in features]
            # the anchor under the plain names: the training loop counts examples and tokens from `input_ids`
            prefix = "" if role == "anchor" else f"{role}_"
            batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"] = pad(rows, pad_id)
            if role != "anchor":
                batch[f"{role}_key"] = torch.tensor([_key(r) for r in rows], dtype=torch.long)
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return batch

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """The transformer (``AutoModel``: token vectors) and its tokenizer; the pooling and normalisation are
        decided here (option, else the saved run's, else the folder's sentence-transformers modules, else mean
        and true) and recorded in ``info``."""
        from transformers import AutoModel, AutoTokenizer

        assert isinstance(info, EmbeddingsInfo)
        path = self.resolve(self.cfg.model.name)
        folder = loader.config_folder(path)
        trust = self.cfg.model.trust_remote_code
        self.tokenizer = pretrained(AutoTokenizer, folder if not Path(path, "tokenizer_config.json").exists()
                                    else path, trust_remote_code=trust)
        self.model = loader.load(AutoModel, path, self.cfg.model)
        found = read_st_modules(path)
        if self.cfg.pooling != "auto":
            info.pooling = self.cfg.pooling
        elif info.pooling is None:
            info.pooling = found.pooling or "mean"
        if self.cfg.normalize is not None:
            info.normalize = self.cfg.normalize
        elif info.normalize is None:
            info.normalize = found.normalize if found.pooling else True

    def embed(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence vectors of a padded batch: the model's token vectors, pooled, normalised if the model is."""
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        assert self.info is not None
        vectors = pool(hidden.float(), attention_mask, self.info.pooling or "mean")
        return F.normalize(vectors, dim=-1) if self.info.normalize else vectors

    def _side(self, model: Any, batch: dict[str, Any], role: str) -> torch.Tensor:
        prefix = "" if role == "anchor" else f"{role}_"
        return self.embed(model, batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"])

    def loss(self, model: torch.nn.Module, batch: dict[str, Any],
             num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        """The objective of ``info.loss`` on one batch (see :class:`~nlpkit.plugins.embeddings.config.
        EmbeddingsConfig` ``loss``)."""
        assert self.info is not None
        kind = self.info.loss or "mnrl"
        a, p = self._side(model, batch, "anchor"), self._side(model, batch, "positive")
        if kind in ("cosent", "cosine"):
            labels = batch["labels"].float()
            cos = F.cosine_similarity(a, p, dim=-1)
            if kind == "cosine":
                return F.mse_loss(cos, labels)
            # CoSENT: every pair i scored below pair j should have a lower cosine: log(1 + sum exp(s_i - s_j))
            diff = (cos[:, None] - cos[None, :]) * self.cfg.scale
            diff = diff - (~(labels[:, None] < labels[None, :])).float() * 1e12
            return torch.logsumexp(torch.cat([diff.new_zeros(1), diff.flatten()]), dim=0)
        has_negative = "negative_input_ids" in batch
        n = self._side(model, batch, "negative") if has_negative else None
        if kind == "triplet":
            assert n is not None
            gap = F.cosine_similarity(a, n, dim=-1) - F.cosine_similarity(a, p, dim=-1) + self.cfg.margin
            return F.relu(gap).mean()
        # MultipleNegativesRanking: anchor i against every positive (and hard negative) of the batch, its own
        # positive the right answer; a candidate that is the very same text as i's positive is not a negative
        candidates = torch.cat([p, n]) if n is not None else p
        keys = torch.cat([batch["positive_key"], batch["negative_key"]]) if n is not None else batch["positive_key"]
        logits = _cos(a, candidates) * self.cfg.scale
        same = keys[None, :] == batch["positive_key"][:, None]
        own = torch.zeros_like(same)
        own[torch.arange(len(a)), torch.arange(len(a))] = True
        logits = logits.masked_fill(same & ~own, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(a), device=logits.device))

    def callbacks(self) -> list[Callback]:
        lora.check_trainable(self.cfg)
        if self.cfg.train.lora:
            return [LoraAdapters(self.cfg.lora, task_type="FEATURE_EXTRACTION")]
        return []

    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """The transformer (merged when ``lora.merge``) + tokenizer + descriptor, and the sentence-transformers
        modules (pooling, normalisation) so that ``SentenceTransformer(directory)`` loads it."""
        if lora.is_peft_model(self.model) and self.cfg.lora.merge:
            self.model, state_dict = lora.merge_lora(self.model), None
        super().save(directory, state_dict=state_dict)
        if not lora.is_peft_model(self.model):
            assert self.info is not None
            write_st_modules(directory, pooling=self.info.pooling or "mean", normalize=bool(self.info.normalize),
                             dimension=int(self.model.config.hidden_size), max_length=self.cfg.data.max_length)

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"anchor": self._side(model, batch, "anchor"),
                               "positive": self._side(model, batch, "positive"),
                               "positive_key": batch["positive_key"]}
        if "negative_input_ids" in batch:
            out["negative"] = self._side(model, batch, "negative")
            out["negative_key"] = batch["negative_key"]
        if "labels" in batch:
            out["score"] = batch["labels"]
        return out

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        """Retrieval of each anchor's positive among the split's passages (positives and hard negatives,
        duplicates merged), and Spearman/Pearson of the pair cosines against the scores where there are scores."""
        anchors = torch.tensor(outputs["anchor"], dtype=torch.float32)
        positives = torch.tensor(outputs["positive"], dtype=torch.float32)
        metrics: dict[str, Any] = {}
        queries = np.arange(len(anchors))
        if "score" in outputs:
            scores = np.asarray(outputs["score"], dtype=np.float64)
            cos = F.cosine_similarity(anchors, positives, dim=-1).numpy()
            metrics.update(spearman(cos, scores))
            queries = np.flatnonzero(scores >= self.cfg.data.relevant_score)
        passages = [(positives, outputs["positive_key"])]
        if "negative" in outputs:
            passages.append((torch.tensor(outputs["negative"], dtype=torch.float32), outputs["negative_key"]))
        metrics.update(retrieval_metrics(anchors[queries], [outputs["positive_key"][i] for i in queries],
                                         torch.cat([v for v, _ in passages]), [k for _, ks in passages for k in ks],
                                         max_corpus=self.cfg.data.max_corpus, seed=self.cfg.seed))
        return metrics

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def vectors(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Sentence vectors of ``texts`` (float32, one row per text, in order), in length-sorted batches; a blank
        text is a :class:`~nlpkit.errors.UsageError` naming it (it has no meaning to embed)."""
        todo = check_texts(texts)
        if len(todo) != len(texts):
            blank = next(i for i in range(len(texts)) if i not in set(todo))
            raise UsageError(f"Text {blank} is blank: there is nothing to embed. Leave blank texts out.")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        ids = token_ids(self.tokenizer, texts, self.cfg.data.max_length).to_pylist()
        pad_id = self.tokenizer.pad_token_id or 0
        device = self.model.device

        def run(rows: list[list[int]]) -> list[np.ndarray]:
            input_ids, mask = pad(rows, pad_id)
            return list(self.embed(self.model, input_ids.to(device), mask.to(device)).cpu().numpy())

        return np.stack(run_sorted(ids, [len(x) for x in ids], batch_size, run, desc="Embedding"))

    @property
    def dimension(self) -> int:
        """The length of a sentence vector."""
        return int(self.model.config.hidden_size)

    def search(self, queries: list[str], corpus: list[str], top_k: int = 10,
               batch_size: int = 64) -> list[list[dict[str, Any]]]:
        """For each query, the ``top_k`` passages of ``corpus`` with the highest cosine, best first:
        ``{"index": position in corpus, "score": cosine, "text": passage}``."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise UsageError(f"top_k={top_k!r}: expected a positive number of passages.")
        if not corpus:
            raise UsageError("corpus is empty: give the passages to search.")
        docs = torch.from_numpy(self.vectors(list(corpus), batch_size))
        found = torch.from_numpy(self.vectors(list(queries), batch_size))
        k = min(top_k, len(corpus))
        scores, idx = _cos(found, docs).topk(k, dim=-1)
        return [[{"index": int(j), "score": float(s), "text": corpus[int(j)]} for s, j in zip(row_s, row_i)]
                for row_s, row_i in zip(scores.tolist(), idx.tolist())]

    def predict(self, inputs: list[Any], batch_size: int = 64, corpus: list[str] | None = None, top_k: int = 10,
                **kwargs: Any) -> list[Any]:
        """Without ``corpus``: each text's sentence vector (a list of floats; None for a blank text). With
        ``corpus`` (a list of passages): each text, as a query, gets the ``top_k`` best passages
        (:meth:`search`)."""
        if kwargs:
            raise UsageError(f"Unknown option(s) for embeddings prediction: {sorted(kwargs)}; known: corpus, top_k.")
        todo = check_texts(inputs)
        results: list[Any] = [None if corpus is None else [] for _ in inputs]
        if not todo:
            return results
        texts = [inputs[i] for i in todo]
        if corpus is not None:
            if isinstance(corpus, str):
                raise UsageError("corpus must be a list of passages, not one string.")
            found: list[Any] = self.search(texts, list(corpus), top_k, batch_size)
        else:
            found = self.vectors(texts, batch_size).tolist()
        for i, value in zip(todo, found):
            results[i] = value
        return results

    def prediction_columns(self, inputs: list[Any], outputs: list[Any]) -> dict[str, list]:
        """``nlpkit predict`` writes one column, ``embedding``: the vector as a list of float32 (a parquet
        ``list<float>``; JSON lists in csv/jsonl), empty for a blank text."""
        if any(isinstance(o, list) and o and isinstance(o[0], dict) for o in outputs):
            return super().prediction_columns(inputs, outputs)
        return {"embedding": [np.asarray(o, dtype=np.float32) if o is not None else None for o in outputs]}

    # ------------------------------------------------------------------ hooks: export, demo, serve
    def export_spec(self) -> Any:
        """``nlpkit export``: the token-vector graph (:mod:`nlpkit.plugins.embeddings.export`). An int8 export
        keeps its fp32 graph for texts of at most :data:`~nlpkit.plugins.embeddings.export.FP32_MAX_TOKENS`
        tokens, and is refused if its vectors fall under cosine 0.99 to the PyTorch model's on the check texts."""
        from nlpkit.onnx_runtime import ExportSpec
        from nlpkit.plugins.embeddings.export import (
            CHECK_TEXTS,
            FP32_MAX_TOKENS,
            KEEP_FP32,
            SENTENCE_ENCODER,
            min_cosine,
        )

        return ExportSpec(SENTENCE_ENCODER, check_inputs=list(CHECK_TEXTS), agreement=min_cosine,
                          agreement_name="min_cosine", min_int8_agreement=0.99, fallback_margin=FP32_MAX_TOKENS,
                          keep_fp32=KEEP_FP32, keep_fp32_with_fallback=True,
                          no_fallback_reason=f"its int8 export runs the texts of at most {FP32_MAX_TOKENS} tokens "
                                             f"on the kept fp32 graph, a length rule rather than a probability gap "
                                             f"(--fallback-margin 0: every text int8)",
                          int8_hint=f"Export in fp32 (no --quantize): int8 moves this model's vectors too far "
                                    f"(with --fallback-margin 0 also on the texts of at most {FP32_MAX_TOKENS} tokens, "
                                    f"which an int8 export otherwise runs in fp32).",
                          fp32_tolerance=1e-3)

    # ------------------------------------------------------------------ hooks: demo, serve
    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: rank a small corpus against a query (:mod:`nlpkit.plugins.embeddings.demo`)."""
        from nlpkit.plugins.embeddings.demo import build_demo

        return build_demo(pipe)

    def serve_routes(self, server: Any) -> Any:
        """``nlpkit serve``: OpenAI-shaped ``POST /v1/embeddings`` (:mod:`nlpkit.plugins.embeddings.serve`)."""
        from nlpkit.plugins.embeddings.serve import routes

        return routes(server)

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        from nlpkit.plugins.embeddings.report import retrieval_section

        section = retrieval_section(self, run_dir, results)
        return [section] if section is not None else []

