"""A multi-label run next to a simple baseline on the very same split: TF-IDF + one-vs-rest logistic regression.

    python benchmarks/multilabel_baseline.py outputs/<run>        # e.g. a run of the `multilabel` preset
    python benchmarks/multilabel_baseline.py outputs/<run> --c 4 --ngrams 2

The run's saved config rebuilds its splits (same source, seed, grouping), so both models see the same training
texts and are scored on the same test texts with the same ``multilabel`` evaluate module. The baseline gets the
same decision-threshold treatment as the run (thresholds tuned on validation with nlpkit's own tuner, per label
if the run used per-label thresholds), so the comparison is model against model, not threshold against 0.5.
Prints one table: micro/macro/samples F1, subset accuracy, Hamming loss, and the fitting time of the baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="A finished multi-label sentiment run folder (has config.yaml, report.json).")
    parser.add_argument("--c", type=float, default=4.0, help="Inverse regularisation strength of each classifier.")
    parser.add_argument("--ngrams", type=int, default=2, help="Word n-grams up to this length.")
    args = parser.parse_args(argv)

    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    import nlpkit
    from nlpkit.config import load_config
    from nlpkit.metrics import compute
    from nlpkit.plugins.sentiment.thresholds import tune_thresholds

    run = Path(args.run)
    report = json.loads((run / "report.json").read_text())
    cls = nlpkit.get_task("sentiment")
    cfg = load_config(cls.Config, run / "config.yaml")
    data = cls(cfg).load_data()
    if data.info.problem_type != "multi_label":
        raise SystemExit(f"{run} is not a multi-label run (problem type {data.info.problem_type}).")
    text = cfg.data.text_column
    splits = {name: (data.splits[name][text], np.asarray(data.splits[name]["labels"], dtype=int))
              for name in ("train", "validation", "test")}

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, args.ngrams), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(splits["train"][0])
    model = OneVsRestClassifier(LogisticRegression(C=args.c, max_iter=2000), n_jobs=1)
    model.fit(features, splits["train"][1])
    seconds = time.perf_counter() - start

    def scores(split: str) -> np.ndarray:
        return model.predict_proba(vectorizer.transform(splits[split][0]))

    per_label = cfg.thresholds == "per_label"
    thresholds = np.asarray(tune_thresholds(scores("validation"), splits["validation"][1], per_label=per_label))
    predicted = (scores("test") >= thresholds).astype(int)
    baseline = compute("multilabel", predictions=predicted.tolist(), references=splits["test"][1].tolist())

    ours = report["test"]
    keys = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")
    print(f"{run}: {len(splits['train'][0])} train / {len(splits['validation'][0])} validation / "
          f"{len(splits['test'][0])} test texts, {len(data.info.labels)} labels, "
          f"thresholds {'per label' if per_label else 'global'} tuned on validation for both")
    print(f"\n| model | {' | '.join(keys)} |")
    print("|---|" + "---:|" * len(keys))
    name = cfg.model if isinstance(cfg.model, str) else getattr(cfg.model, "name", cfg.model)
    print(f"| nlpkit, {name} fine-tuned | " + " | ".join(f"{ours[k]:.4f}" for k in keys) + " |")
    print(f"| TF-IDF (1-{args.ngrams}-grams) + one-vs-rest logistic regression (C={args.c}) | "
          + " | ".join(f"{baseline[k]:.4f}" for k in keys) + " |")
    print(f"\nbaseline fit: {seconds:.1f} s on {features.shape[1]} features")


if __name__ == "__main__":
    main()
