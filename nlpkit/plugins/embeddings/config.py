"""The embeddings task's options: which columns hold the pairs, the loss, the pooling, what counts as relevant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nlpkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, at_least, between, one_of, opt, positive

#: Training objectives; ``auto`` picks one from the data's columns (see :attr:`EmbeddingsConfig.loss`).
LOSSES = ("auto", "mnrl", "triplet", "cosent", "cosine")
#: How token vectors become one sentence vector (sentence-transformers' Pooling modes of the same names).
POOLING = ("auto", "mean", "cls", "max")


@dataclass
class EmbeddingsDataConfig(DataConfig):
    anchor_column: str = opt("anchor", "Column of the first text of each pair: the query, question or sentence.")
    positive_column: str = opt("positive", "Column of the second text of each pair: the passage, answer or "
                                           "paraphrase that goes with the anchor.")
    negative_column: Optional[str] = opt("negative", "Column of a hard negative per pair (a text close to the "
                                                     "anchor that is not its match), used when the data has it; "
                                                     "null to ignore such a column.")
    score_column: Optional[str] = opt("score", "Column of a similarity score per pair (e.g. STS-B's 0-5), used "
                                               "when the data has it: scored pairs train with cosent/cosine and "
                                               "are evaluated with Spearman; null to ignore such a column.")
    score_max: Optional[float] = opt(None, "The score that means 'same meaning' (scores are divided by it, so "
                                           "5 for STS-B's 0-5); default: the largest training score.",
                                     check=positive)
    relevant_score: float = opt(0.8, "Scored pairs: a pair counts as a query with a relevant passage in the "
                                     "retrieval metrics when score / score_max reaches this.", check=between(0, 1))
    max_corpus: Optional[int] = opt(None, "Evaluate retrieval against at most this many passages (the "
                                          "relevant ones always kept); default: every passage of the split.",
                                    check=at_least(1))


@dataclass
class EmbeddingsConfig(RunConfig):
    task: str = opt("embeddings", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="Encoder to fine-tune (model.name: a catalog name such as minilm-l6, a "
                                  "sentence-transformers or BERT-like hub id or folder, or a previous run) and "
                                  "how it is loaded.", factory=lambda: ModelConfig(name="minilm-l6"))
    loss: str = opt("auto", "Training objective: `mnrl` (MultipleNegativesRanking: each anchor against its "
                            "positive and every other positive of the batch, plus the hard negatives when the "
                            "data has a negative column), `triplet` (anchor closer to its positive than to its "
                            "hard negative by `margin`; needs a negative column), `cosent` (CoSENT: scored pairs "
                            "ranked by their cosine), `cosine` (cosine regressed on score / score_max). `auto`: "
                            "cosent when the data has scores, else mnrl.", check=one_of(*LOSSES))
    scale: float = opt(20.0, "Inverse temperature of mnrl and cosent: cosines are multiplied by it before the "
                             "softmax (sentence-transformers' default, 20).", check=positive)
    margin: float = opt(0.3, "Margin of the triplet loss, in cosine.", check=positive)
    pooling: str = opt("auto", "Token vectors -> sentence vector: `mean` (of the non-padding tokens), `cls` (the "
                               "first token) or `max`. `auto`: the model's own sentence-transformers pooling "
                               "(1_Pooling/config.json) when it has one, else mean.", check=one_of(*POOLING))
    normalize: Optional[bool] = opt(None, "Scale sentence vectors to length 1 (then a dot product is the "
                                          "cosine). Default: as the model's sentence-transformers modules say "
                                          "(a Normalize module), else true.")
    data: EmbeddingsDataConfig = opt(
        help="Data options: pairs (anchor, positive), triplets (+ negative) or scored pairs (+ score).",
        factory=lambda: EmbeddingsDataConfig(source="bible-bbe-web", max_train_samples=3000, max_eval_samples=500))
    train: TrainConfig = opt(help="Training options.", factory=lambda: TrainConfig(
        full_lr=2e-5, lora_lr=5e-4, epochs=1.0, batch_size=32, eval_batch_size=128, metric_for_best="mrr_at_10",
        greater_is_better=True))
