"""A ner run next to the baseline people reach for first, on the very same split: a CRF over word features
(sklearn-crfsuite, L-BFGS with L1 + L2 regularisation).

    python benchmarks/ner_baseline.py outputs/<run>               # e.g. a run of the default preset
    python benchmarks/ner_baseline.py outputs/<run> --c1 0.1 --c2 0.05 --iterations 200

The run's saved config rebuilds its splits (same source, seed, scheme, repairs), so the CRF trains on the same
sentences and is scored on the same test sentences, with the same ``seqeval_entities`` module (default and strict
mode). Features are the classic ones of the sklearn-crfsuite tutorial (the word lowercased, its last 2-3 characters,
shape flags, the same for the neighbouring words) plus Twitter cues (@mention, #hashtag, URL). Prints one table:
entity F1 (default and strict), precision and recall of both models, and the CRF's fitting time; ``--json`` writes
the figures too.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any


def word_features(words: list[str], i: int) -> dict[str, Any]:
    """The features of word ``i`` of a sentence."""
    w = words[i]
    f: dict[str, Any] = {"bias": 1.0, "lower": w.lower(), "suffix3": w[-3:].lower(), "suffix2": w[-2:].lower(),
                         "prefix3": w[:3].lower(), "is_upper": w.isupper(), "is_title": w.istitle(),
                         "is_digit": w.isdigit(), "has_digit": any(c.isdigit() for c in w),
                         "shape": re.sub(r"(.)\1+", r"\1", re.sub("[A-Z]", "X", re.sub("[a-z]", "x",
                                                                                         re.sub("[0-9]", "d", w)))),
                         "mention": w.startswith("@"), "hashtag": w.startswith("#"),
                         "url": w.lower().startswith(("http", "www."))}
    for offset in (-1, 1):
        j = i + offset
        if 0 <= j < len(words):
            v = words[j]
            f.update({f"{offset}:lower": v.lower(), f"{offset}:is_title": v.istitle(),
                      f"{offset}:is_upper": v.isupper(), f"{offset}:suffix3": v[-3:].lower()})
        else:
            f["BOS" if offset < 0 else "EOS"] = True
    return f


def sentence_features(words: list[str]) -> list[dict[str, Any]]:
    return [word_features(words, i) for i in range(len(words))]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="A ner run folder (its config.yaml; its report.json, when the run has finished, "
                                    "gives the run's own row).")
    parser.add_argument("--c1", type=float, default=0.1, help="L1 regularisation of the CRF.")
    parser.add_argument("--c2", type=float, default=0.1, help="L2 regularisation of the CRF.")
    parser.add_argument("--iterations", type=int, default=100, help="L-BFGS iterations.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)

    import sklearn_crfsuite

    import nlpkit
    from nlpkit.config import load_config
    from nlpkit.metrics import compute

    run = Path(args.run)
    report = json.loads((run / "report.json").read_text()) if (run / "report.json").exists() else {}
    cls = nlpkit.get_task("ner")
    cfg = load_config(cls.Config, run / "config.yaml")
    data = cls(cfg).load_data()
    labels = data.info.labels

    def split(name: str) -> tuple[list[list[str]], list[list[str]]]:
        d = data.splits[name]
        return d["tokens"], [[labels[t] for t in row] for row in d["tags"]]

    (train_x, train_y), (test_x, test_y) = split("train"), split("test")
    start = time.perf_counter()
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=args.c1, c2=args.c2, max_iterations=args.iterations,
                               all_possible_transitions=True)
    crf.fit([sentence_features(s) for s in train_x], train_y)
    seconds = time.perf_counter() - start
    predicted = crf.predict([sentence_features(s) for s in test_x])
    default = compute("seqeval_entities", predictions=predicted, references=test_y)
    strict = compute("seqeval_entities", predictions=predicted, references=test_y, mode="strict", scheme="IOB2")
    crf_row = {"f1": default["f1"], "strict_f1": strict["f1"], "precision": default["precision"],
               "recall": default["recall"], "per_type": {k: v["f1"] for k, v in default["per_type"].items()}}
    test = report.get("test") or {}
    run_row = {"f1": test.get("f1"), "strict_f1": test.get("strict_f1"), "precision": test.get("precision"),
               "recall": test.get("recall"),
               "per_type": {k: v["f1"] for k, v in (test.get("per_type") or {}).items()}}
    sizes = {name: len(data.splits[name]) for name in ("train", "validation", "test")}
    name = cfg.model.name
    print(f"Same split: {sizes} sentences of {cfg.data.source} (seed {cfg.seed}); test entities: "
          f"{sum(v['support'] for v in default['per_type'].values())}")
    print()
    print("| model | entity F1 | strict F1 | precision | recall |")
    print("|---|---|---|---|---|")
    for label, row in ((f"nlpkit, {name}", run_row), (f"CRF (sklearn-crfsuite, c1={args.c1}, c2={args.c2})",
                                                      crf_row)):
        cells = [f"{row[k]:.4f}" if isinstance(row[k], float) else "-" for k in ("f1", "strict_f1", "precision",
                                                                                  "recall")]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    kinds = sorted(set(run_row["per_type"]) | set(crf_row["per_type"]),
                   key=lambda k: -(default["per_type"].get(k) or {}).get("support", 0))
    print("| type | nlpkit F1 | CRF F1 | test entities |")
    print("|---|---|---|---|")
    for k in kinds:
        a, b = run_row["per_type"].get(k), crf_row["per_type"].get(k)
        support = (default["per_type"].get(k) or {}).get("support", 0)
        print(f"| {k} | {a if a is None else f'{a:.4f}'} | {b if b is None else f'{b:.4f}'} | {support} |")
    print()
    print(f"CRF baseline fit: {seconds:.1f} s on {sizes['train']} sentences")
    if args.json:
        args.json.write_text(json.dumps({"split": sizes, "nlpkit": run_row, "crf": crf_row,
                                         "crf_fit_seconds": round(seconds, 2)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
