"""word2vec's config schema, its checks, and the gensim arguments it maps to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from nlpkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, opt
from nlpkit.errors import ConfigError
from nlpkit.plugins.word2vec.text import TextConfig, stable_hash

__all__ = ["W2VConfig", "W2VEvalConfig", "W2VTrainConfig", "Word2VecConfig", "check_config", "gensim_params"]


@dataclass
class W2VConfig:
    kind: str = opt("word2vec", "`word2vec` (gensim Word2Vec) or `fasttext` (gensim FastText: character "
                                "n-grams give vectors to words never seen in training).")
    sg: bool = opt(True, "Skip-gram (true) or CBOW (false).")
    hs: bool = opt(False, "Hierarchical softmax (true) instead of / besides negative sampling.")
    negative: int = opt(5, "Negative samples per word (0: none; then hs must be true).")
    window: int = opt(5, "Maximum distance between the current and a context word.")
    vector_size: int = opt(100, "Dimensions of the word vectors.")
    min_count: int = opt(5, "Ignore words seen fewer times than this.")
    max_final_vocab: Optional[int] = opt(None, "Raise min_count as needed to keep at most this many words.")
    epochs: int = opt(15, "Passes over the corpus (gensim's epochs; train.epochs is not used by word2vec).")
    sample: float = opt(1e-3, "Downsample words more frequent than this fraction (0: off).")
    alpha: float = opt(0.025, "Initial learning rate (decays linearly to min_alpha).")
    min_alpha: float = opt(1e-4, "Final learning rate.")
    workers: int = opt(0, "Training threads (0: all cores, os.cpu_count()). train.deterministic forces 1.")
    min_n: int = opt(3, "fasttext: shortest character n-gram.")
    max_n: int = opt(6, "fasttext: longest character n-gram.")
    bucket: int = opt(200_000, "fasttext: hash buckets for n-grams (memory: bucket x vector_size floats).")


@dataclass
class W2VEvalConfig:
    restrict_vocab: int = opt(300_000, "Benchmarks use only this many most frequent words "
                                       "(gensim's default).")
    probe_words: list[str] = opt(help="Words whose nearest neighbours the report lists.", factory=lambda: [
        "president", "police", "money", "war", "france", "monday", "computer", "good"])
    neighbours: int = opt(8, "Neighbours listed per probe word.")
    plot_words: int = opt(120, "Frequent words (stop words left out) in the 2-D PCA plot.")


@dataclass
class W2VTrainConfig(TrainConfig):
    deterministic: bool = opt(False, "Reproducible mode: one worker thread, fixed seed and a "
                                     "process-independent hash, so two runs give identical vectors (slower).")
    metric_for_best: str = opt("analogy_accuracy", "The benchmark metric reported first (word2vec has no "
                                                   "validation split: it picks no model).")
    greater_is_better: bool = opt(True, "Whether a larger `metric_for_best` is better.")


@dataclass
class Word2VecConfig(RunConfig):
    task: str = opt("word2vec", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="model.name: vectors to load for evaluation and prediction: a run folder, a "
                                  "catalog name (glove-6b-50d) or a word2vec .bin/.txt/.vec file (.kv/.model pickles "
                                  "need trust_pickle). Training does not "
                                  "use it (see init_from); the precision/quantization keys do not apply.",
                             factory=ModelConfig)
    init_from: Optional[str] = opt(None, "Continue training this saved model (a run folder or "
                                         "word2vec.model) on data.source; new words join its vocabulary. A "
                                         "model saved by another machine's nlpkit needs trust_pickle.")
    trust_pickle: bool = opt(False, "Load Python pickles (gensim .kv/.model files, an old run's vectors.kv, or an "
                                    "init_from model this machine's nlpkit did not save): unpickling runs any code "
                                    "the file's author put in it, so only for files you trust. Never taken from a "
                                    "saved run's config.")
    reference_vectors: Optional[str] = opt("glove-6b-50d", "Vectors evaluated beside the trained ones in the "
                                                           "report (same forms as `model`; empty: none).")
    trackers: list[str] = opt(help="Experiment trackers (tensorboard, mlflow, wandb, ...): they get the config, "
                                   "the benchmark metrics (test/*) and, where they store files, the report.",
                              factory=list)
    w2v: W2VConfig = opt(help="gensim model options.", factory=W2VConfig)
    text: TextConfig = opt(help="Text preprocessing (see nlpkit/plugins/word2vec/text.py).",
                           factory=TextConfig)
    eval: W2VEvalConfig = opt(help="Benchmarks and report.", factory=W2VEvalConfig)
    data: DataConfig = opt(help="Data options (every row of every split is training text).",
                           factory=lambda: DataConfig(source="news-articles"))
    train: W2VTrainConfig = opt(help="Training options (word2vec uses deterministic; the rest is for the "
                                     "transformer loop).", factory=W2VTrainConfig)


def check_config(cfg: Word2VecConfig) -> None:
    """Reject option combinations gensim would fail on late or silently ignore."""
    w = cfg.w2v
    if w.kind not in ("word2vec", "fasttext"):
        raise ConfigError(f"w2v.kind must be `word2vec` or `fasttext`, not {w.kind!r}.")
    if not w.hs and w.negative <= 0:
        raise ConfigError("w2v.negative=0 with w2v.hs=false leaves no training objective: set w2v.negative>0 "
                          "(negative sampling) or w2v.hs=true (hierarchical softmax).")
    for key in ("vector_size", "window", "min_count", "epochs"):
        if getattr(w, key) < 1:
            raise ConfigError(f"w2v.{key} must be at least 1, not {getattr(w, key)}.")
    if cfg.train.epochs != TrainConfig.epochs:
        raise ConfigError(f"train.epochs={cfg.train.epochs} is not used by word2vec: set w2v.epochs instead.")


def gensim_params(cfg: Word2VecConfig) -> dict[str, Any]:
    """The keyword arguments of ``gensim.models.Word2Vec`` / ``FastText`` for ``cfg`` (no corpus)."""
    w = cfg.w2v
    params: dict[str, Any] = dict(
        vector_size=w.vector_size, window=w.window, min_count=w.min_count, max_final_vocab=w.max_final_vocab,
        sg=int(w.sg), hs=int(w.hs), negative=w.negative, sample=w.sample, alpha=w.alpha,
        min_alpha=w.min_alpha, epochs=w.epochs, seed=cfg.seed, workers=w.workers or os.cpu_count() or 1)
    if w.kind == "fasttext":
        params.update(min_n=w.min_n, max_n=w.max_n, bucket=w.bucket)
    if cfg.train.deterministic:
        # One thread: with several, the order in which threads update shared weights varies run to run.
        # gensim's hashfxn defaults to Python's hash(), which changes per process unless PYTHONHASHSEED
        # is set.
        params.update(workers=1, hashfxn=stable_hash)
    return params
