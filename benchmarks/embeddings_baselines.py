"""An embeddings run against its baselines on the very same test split and corpus: BM25 (rank-bm25's Okapi BM25
over lowercased word tokens) and the pretrained encoder before fine-tuning; optionally the run's ONNX exports too
(their retrieval metric against the PyTorch run's). Encode speed: ``benchmarks/embeddings_infer.py``.

    python benchmarks/embeddings_baselines.py outputs/embeddings-<time>            # pretrained: the run's base model
    python benchmarks/embeddings_baselines.py RUN --pretrained minilm-l6 --json baselines.json
    python benchmarks/embeddings_baselines.py RUN --export exports/int8            # + an export of RUN, same split

Every system ranks the same corpus (the test split's distinct passages: positives and hard negatives) for the
same queries (the test anchors; for scored pairs, those at or over ``data.relevant_score``), and the ranks go
through the same ``retrieval`` metric as the run's own evaluation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nlpkit
from nlpkit.artifacts import read_descriptor
from nlpkit.metrics import compute
from nlpkit.onnx_runtime import onnx_export_info
from nlpkit.plugins.embeddings.retrieval import ranks
from nlpkit.plugins.embeddings.task import EmbeddingsTask

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """BM25's tokens: lowercased word characters."""
    return _WORD.findall(text.lower())


def test_split(run: str) -> tuple[list[str], list[str], list[int], dict[str, Any]]:
    """``(queries, corpus, relevant passage index per query, config facts)`` of the run's test split."""
    task = EmbeddingsTask.from_saved(run)
    data = task.load_data()
    split = data.splits["test"]
    anchors, positives = split["anchor"], split["positive"]
    passages = list(positives) + (list(split["negative"]) if "negative" in split.column_names else [])
    corpus = list(dict.fromkeys(passages))
    index = {p: i for i, p in enumerate(corpus)}
    keep = range(len(anchors))
    if "score" in split.column_names:
        scale = getattr(data.info, "score_max", None) or 1.0
        keep = [i for i, s in enumerate(split["score"]) if s / scale >= task.cfg.data.relevant_score]
    # the model the run started from (its saved config), not the run itself (from_saved points model at the run)
    found = read_descriptor(task.resolve(run))
    base = ((found.config or {}).get("model") or {}).get("name") if found is not None else None
    facts = {"source": task.cfg.data.source, "queries": len(keep), "corpus": len(corpus),
             "base_model": base or task.cfg.model.name}
    return [anchors[i] for i in keep], corpus, [index[positives[i]] for i in keep], facts


def bm25_ranks(queries: list[str], corpus: list[str], relevant: list[int]) -> np.ndarray:
    """The rank of each query's passage by Okapi BM25 score: the passages scored at least as high as its own (ties
    count against the query, as for the models: a query sharing no word with any passage ranks last)."""
    from rank_bm25 import BM25Okapi

    bm25 = BM25Okapi([words(p) for p in corpus])
    out = np.empty(len(queries), dtype=np.int64)
    for i, (q, rel) in enumerate(zip(queries, relevant)):
        scores = bm25.get_scores(words(q))
        out[i] = int((scores >= scores[rel]).sum())
    return out


def model_ranks(pipe: Any, queries: list[str], corpus: list[str], relevant: list[int],
                batch_size: int) -> np.ndarray:
    """The rank of each query's passage by the cosine of ``pipe``'s vectors."""
    q = torch.from_numpy(pipe.task.vectors(queries, batch_size))
    c = torch.from_numpy(pipe.task.vectors(corpus, batch_size))
    found, _ = ranks(q, relevant, c, list(range(len(corpus))))
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="An embeddings run folder (or its export).")
    parser.add_argument("--pretrained", help="The encoder before fine-tuning (default: the run's base model).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--export", action="append", default=[], metavar="FOLDER",
                        help="Also rank with this ONNX export of the run (nlpkit export); may be repeated.")
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args(argv)

    queries, corpus, relevant, facts = test_split(args.run)
    results: dict[str, Any] = {"data": facts, "systems": {}}
    systems: list[tuple[str, Any]] = [("BM25 (rank-bm25 Okapi)", None)]
    pretrained = args.pretrained or facts["base_model"]
    systems.append((f"pretrained {pretrained}", lambda: nlpkit.pipeline("embeddings", model=pretrained,
                                                                         device="cpu")))
    systems.append(("fine-tuned (this run)", lambda: nlpkit.pipeline(args.run, device="cpu")))
    for folder in args.export:
        precision = (onnx_export_info(folder) or {}).get("precision", "?")
        systems.append((f"fine-tuned, ONNX {precision} ({Path(folder).name})",
                        lambda folder=folder: nlpkit.pipeline(folder, device="cpu")))
    for name, make in systems:
        start = time.perf_counter()
        if make is None:
            found = bm25_ranks(queries, corpus, relevant)
        else:
            pipe = make()
            found = model_ranks(pipe, queries, corpus, relevant, args.batch_size)
        metrics = compute("retrieval", predictions=found.tolist())
        metrics["seconds"] = round(time.perf_counter() - start, 1)
        results["systems"][name] = metrics
    print(f"{facts['source']}: {facts['queries']:,} test queries, {facts['corpus']:,} passages")
    print("| system | MRR@10 | NDCG@10 | recall@1 | recall@10 | seconds |")
    print("|---|---|---|---|---|---|")
    for name, m in results["systems"].items():
        print(f"| {name} | {m['mrr_at_10']:.4f} | {m['ndcg_at_10']:.4f} | {m['recall_at_1']:.4f} | "
              f"{m['recall_at_10']:.4f} | {m['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
