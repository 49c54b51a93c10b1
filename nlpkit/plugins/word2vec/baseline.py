"""The ``word-vectors`` sentiment baseline: mean-pooled word vectors + scikit-learn logistic regression.

It answers "what does fine-tuning a transformer buy?": the same data split, cleaning and label mapping as the
sentiment task (its own ``load_data`` with the sentiment config's data settings and seed), the same metric
code (``SentimentTask.compute_metrics``: accuracy, macro precision/recall/F1, confusion matrix, loss) and the
same report writer, so ``nlpkit report <sentiment run> <baseline run>`` puts the two side by side.

Vectors: any word2vec run folder (its tokenizer settings are reused), ``glove-6b-50d`` or a vectors file.
Each text is the mean of its known tokens' vectors (zeros if none); features are standardised and the
regularisation strength ``C`` is picked on the validation split, then the test split is scored once.

    nlpkit baseline --vectors glove-6b-50d
    nlpkit baseline --vectors outputs/word2vec-<run> data.max_train_samples=2000
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlpkit.errors import DataError
from nlpkit.plugins.word2vec.text import TextConfig, tokenize

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger("nlpkit.baseline")

__all__ = ["add_baseline_command", "mean_pooled", "run_baseline"]

C_GRID = (0.01, 0.1, 1.0, 10.0)


def mean_pooled(kv: Any, texts: Sequence[str], text_cfg: TextConfig) -> tuple[np.ndarray, float]:
    """(matrix of mean vectors, one row per text; fraction of tokens not in ``kv``)."""
    out = np.zeros((len(texts), kv.vector_size), dtype=np.float32)
    tokens_total = unknown = 0
    for i, text in enumerate(texts):
        tokens = tokenize(text, text_cfg)
        known = [t for t in tokens if t in kv.key_to_index]
        tokens_total += len(tokens)
        unknown += len(tokens) - len(known)
        if known:
            out[i] = kv.get_mean_vector(known, pre_normalize=False)
    return out, unknown / max(tokens_total, 1)


def run_baseline(vectors: str = "glove-6b-50d", preset: str | Path | None = None,
                 overrides: dict[str, Any] | list[str] | None = None, output_dir: str | None = None,
                 c_grid: Sequence[float] = C_GRID, trust_pickle: bool = False) -> dict[str, Any]:
    """Train and test the baseline; write a sentiment-style run folder; return its report.

    ``preset`` (a sentiment preset name or a yaml file) / ``overrides`` are sentiment config settings
    (``data.source``, ``seed``, ...), so the split is the one ``tasks/sentiment.py`` would use with the same
    settings. ``trust_pickle`` lets ``vectors`` be a gensim pickle (``.kv`` / ``.model``, an old run's
    ``vectors.kv``): only for files you trust, since unpickling runs the code a file names.
    """
    from nlpkit.config import load_config
    from nlpkit.registry import find_preset, get_task
    from nlpkit.training import RunFolder

    sentiment = get_task("sentiment")
    if isinstance(overrides, dict):
        overrides = {**overrides}
    cfg = load_config(sentiment.Config, find_preset("sentiment", str(preset)) if preset else None, overrides)
    cfg.model.name = f"word-vectors:{vectors}"  # what the report shows as the model
    cfg.trackers = []
    # Checked before any work: a folder that holds files is refused unless overwrite=true (as for any run).
    folder = RunFolder.claim(output_dir or None, "baseline-word-vectors", overwrite=cfg.overwrite)
    try:
        report = _fit_and_report(cfg, sentiment(cfg), vectors, folder.path, c_grid, trust_pickle)
    except BaseException:
        folder.discard_if_unused()
        raise
    return report


def _fit_and_report(cfg: Any, task: Any, vectors: str, run_dir: Path, c_grid: Sequence[float],
                    trust_pickle: bool) -> dict[str, Any]:
    """:func:`run_baseline` once its run folder is claimed."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from nlpkit.config import save_config
    from nlpkit.registry import get_task
    from nlpkit.report import write_report
    from nlpkit.task import RunResults

    t0 = time.perf_counter()
    data = task.load_data()  # the sentiment task's own split, cleaning and label ids
    # No transformer is built (load_model would), but compute_metrics needs the label names.
    task.info = data.info
    # The vectors and the tokenizer settings they were trained with (defaults for GloVe or a vectors file).
    w2v = get_task("word2vec").from_pretrained(vectors, trust_pickle=trust_pickle)
    kv, text_cfg = w2v.model, w2v.cfg.text
    ds, col = data.splits, cfg.data.text_column
    feats, oov = {}, {}
    for split in ("train", "validation", "test"):
        feats[split], oov[split] = mean_pooled(kv, ds[split][col], text_cfg)
    labels = {split: np.asarray(ds[split]["labels"]) for split in ("train", "validation", "test")}
    if len(set(labels["train"].tolist())) < 2:
        raise DataError(f"{cfg.data.source}: the training split has only one label; a classifier needs two.")

    def fit(c: float) -> Any:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=cfg.seed))
        return clf.fit(feats["train"], labels["train"])

    # C is chosen on validation accuracy; the test split is scored once, with the chosen model.
    scores = {c: float((fit(c).predict(feats["validation"]) == labels["validation"]).mean()) for c in c_grid}
    best_c = max(scores, key=lambda c: (scores[c], -c))
    clf = fit(best_c)
    fit_seconds = time.perf_counter() - t0

    def outputs(split: str) -> dict[str, list]:
        proba = clf.predict_proba(feats[split])
        cols = {c: i for i, c in enumerate(clf.classes_)}
        p_true = proba[np.arange(len(proba)), [cols[y] for y in labels[split]]]
        return {"pred": clf.classes_[proba.argmax(1)].tolist(), "label": labels[split].tolist(),
                "probs": proba.tolist(),  # columns in label-id order (classes_ are the sorted ids)
                "loss": (-np.log(np.clip(p_true, 1e-12, None))).tolist()}

    results = RunResults(
        test=task.compute_metrics(outputs("test")),
        validation=task.compute_metrics(outputs("validation")),
        training={"method": "mean-pooled word vectors + logistic regression (scikit-learn)",
                  "vectors": vectors, "vector_size": kv.vector_size, "vocab_size": len(kv), "C": best_c,
                  "runtime_s": round(fit_seconds, 2)},
        data_sizes={k: len(v) for k, v in ds.items()},
        notes=dict(data.notes),
        extra={"baseline": {"kind": "word-vectors", "vectors": vectors, "validation_accuracy_by_C": scores,
                            "token_oov_rate": oov}},
    )
    save_config(cfg, run_dir / "config.yaml")
    logger.info("Baseline %s: test accuracy %.4f (C=%g)", vectors, results.test["accuracy"], best_c)
    return write_report(run_dir, task, results)


# --------------------------------------------------------------------------------------------- nlpkit baseline


def _cmd_baseline(args: argparse.Namespace) -> None:
    first = args.overrides[0] if args.overrides else None
    preset = first if first and "=" not in first else None  # a sentiment preset name or .yaml file
    overrides = args.overrides[1:] if preset else args.overrides
    report = run_baseline(args.vectors, preset, overrides, args.output_dir, trust_pickle=args.trust_pickle)
    test = report["test"]
    print(f"\nword-vectors baseline ({args.vectors}): test accuracy={test['accuracy']:.4f}, "
          f"macro_f1={test['macro_f1']:.4f}\nReport: {report['run_dir']}/report.md")


def add_baseline_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nlpkit baseline`` (what :meth:`Word2VecTask.add_commands` contributes to the command line)."""
    import argparse

    p = subparsers.add_parser("baseline", help="Sentiment baseline: mean-pooled word vectors + logistic "
                                               "regression, on the sentiment task's split and metrics.")
    p.add_argument("--vectors", default="glove-6b-50d",
                   help="A word2vec run folder, a catalog name (glove-6b-50d) or a word2vec .bin/.txt/.vec file.")
    p.add_argument("--trust-pickle", action="store_true",
                   help="Also load gensim pickles (.kv/.model files, an old run's vectors.kv). Unpickling runs "
                        "any code the file names: only for files you trust.")
    p.add_argument("--output-dir", help="Run folder (default: outputs/baseline-word-vectors-<timestamp>).")
    p.add_argument("overrides", nargs=argparse.REMAINDER,
                   help="[preset.yaml] [key=value ...] of the sentiment config (data.source, seed, ...)")
    p.set_defaults(fn=_cmd_baseline)
