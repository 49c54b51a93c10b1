"""Encode throughput: ``SentenceTransformer(folder).encode`` vs ``nlpkit.pipeline`` on PyTorch and on its ONNX
exports (fp32, int8), on the same texts, with the vectors compared by cosine.

    python benchmarks/embeddings_infer.py outputs/embeddings-<time>               # texts: the run's test split
    python benchmarks/embeddings_infer.py RUN --texts 2000 --rounds 5 --threads 2 --json infer.json
    python benchmarks/embeddings_infer.py RUN --no-onnx                          # PyTorch only
    python benchmarks/embeddings_infer.py RUN --bf16                 # also both libraries with bfloat16 weights

The texts are the run's test split (its anchors, then its distinct passages; repeated when ``--texts`` asks for
more). Every side gets the same model, batch size and threads, in one process, after one untimed warm-up pass on
a sample. Each round times one pass of every side, the order rotated from round to round; a side's ratio to
``SentenceTransformer.encode`` is the MEDIAN of its per-round ratios (both passes of a ratio come from the same
round, so a slow spell of a shared machine weighs on both), its texts/s the median of its passes; every round's
ratio is printed too. ``--bf16`` adds ``nlpkit.pipeline(run, dtype="bfloat16")`` and, for a fair view of it,
``SentenceTransformer.encode`` on the same model cast to bfloat16 (on a CPU with bf16 instructions, AVX512-BF16 or
AMX, the matrix products run natively in bf16; elsewhere bf16 is slower than fp32). The ONNX sides are made by
``nlpkit export`` into ``--export-dir`` (an int8 export that the export's own check refuses is reported as
refused, with its reason). Columns: texts/s, the ratio, and the smallest and mean cosine of each text's vector to
sentence-transformers' fp32 vector of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nlpkit
from nlpkit.errors import UsageError
from nlpkit.onnx_runtime import onnx_export_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings_baselines import test_split  # noqa: E402  (the sibling script: the same test split)

REFERENCE = "SentenceTransformer.encode"


def rotated(names: list[str], r: int) -> list[str]:
    """The order of round ``r``: ``names`` rotated by ``r``."""
    k = r % len(names)
    return names[k:] + names[:k]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)).clip(1e-12)


def model_folder(run: str) -> str:
    """The sentence-transformers folder of ``run`` (its ``model/``, or the folder itself)."""
    return str(Path(run) / "model") if (Path(run) / "model").is_dir() else run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="An embeddings run folder.")
    parser.add_argument("--texts", type=int, default=0,
                        help="Encode this many texts per pass (0: every test text once).")
    parser.add_argument("--rounds", type=int, default=5, help="Timed rounds; each runs every side once, rotated.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every side (default: torch's).")
    parser.add_argument("--no-onnx", action="store_true", help="Leave out the ONNX exports.")
    parser.add_argument("--export-dir", type=Path, default=None,
                        help="Where the exports go (default: a temporary folder, removed afterwards).")
    parser.add_argument("--also", action="append", default=[], metavar="FOLDER",
                        help="Also time this existing ONNX export of the run (nlpkit export); may be repeated.")
    parser.add_argument("--bf16", action="store_true",
                        help="Also time nlpkit.pipeline(run, dtype='bfloat16') and SentenceTransformer.encode on the "
                             "model cast to bfloat16 (cosines stay against the fp32 reference).")
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    from sentence_transformers import SentenceTransformer

    queries, corpus, _, facts = test_split(args.run)
    pool = queries + corpus
    n = args.texts or len(pool)
    texts = (pool * (n // len(pool) + 1))[:n]
    bs = args.batch_size
    st = SentenceTransformer(model_folder(args.run), device="cpu")
    pipe = nlpkit.pipeline(args.run, device="cpu", threads=threads)
    sides: dict[str, Callable[[list[str]], np.ndarray]] = {
        REFERENCE: lambda xs: st.encode(xs, batch_size=bs, convert_to_numpy=True, show_progress_bar=False),
        "nlpkit.pipeline (PyTorch)": lambda xs: pipe.task.vectors(xs, bs),
    }
    if args.bf16:
        st16 = SentenceTransformer(model_folder(args.run), device="cpu").to(torch.bfloat16)
        pipe16 = nlpkit.pipeline(args.run, device="cpu", threads=threads, dtype="bfloat16")
        sides[f"{REFERENCE} (bf16)"] = lambda xs: np.asarray(
            st16.encode(xs, batch_size=bs, convert_to_tensor=True, show_progress_bar=False).float().numpy())
        sides["nlpkit.pipeline (PyTorch bf16)"] = lambda xs: pipe16.task.vectors(xs, bs)
    refused: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_onnx:
            from nlpkit.export import export_model

            where = args.export_dir or Path(tmp)
            for precision in ("fp32", "int8"):
                name = f"nlpkit.pipeline (ONNX {precision})"
                out = where / f"{Path(args.run).resolve().name}-{precision}"
                try:
                    export_model(args.run, out, quantize=None if precision == "fp32" else precision, force=True)
                except UsageError as err:
                    refused[name] = str(err)
                    continue
                onnx = nlpkit.pipeline(str(out), device="cpu", threads=threads)
                sides[name] = lambda xs, onnx=onnx: onnx.task.vectors(xs, bs)
        for folder in args.also:
            precision = (onnx_export_info(folder) or {}).get("precision", "?")
            onnx = nlpkit.pipeline(folder, device="cpu", threads=threads)
            sides[f"nlpkit.pipeline (ONNX {precision}, {Path(folder).name})"] = (
                lambda xs, onnx=onnx: onnx.task.vectors(xs, bs))
        for fn in sides.values():  # warm-up: first calls allocate, ONNX Runtime plans its kernels
            fn(texts[: 2 * bs])
        names = list(sides)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        vectors: dict[str, np.ndarray] = {}
        for r in range(args.rounds):
            for name in rotated(names, r):
                start = time.perf_counter()
                vectors[name] = np.asarray(sides[name](texts))
                seconds[name].append(time.perf_counter() - start)
    base = seconds[REFERENCE]
    results: dict[str, Any] = {
        "texts": len(texts), "distinct": len(set(texts)), "batch_size": bs, "threads": threads,
        "rounds": args.rounds, "source": facts["source"], "refused": refused, "sides": {}}
    for name in names:
        cos = cosines(vectors[name], vectors[REFERENCE])
        ratios = [b / s for b, s in zip(base, seconds[name])]
        results["sides"][name] = {"texts_per_s": round(len(texts) / statistics.median(seconds[name]), 1),
                                  "ratio": round(statistics.median(ratios), 3),
                                  "round_ratios": [round(x, 3) for x in ratios],
                                  "seconds": [round(s, 3) for s in seconds[name]],
                                  "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    print(f"\n{len(texts)} texts ({results['distinct']} distinct) of {facts['source']}'s test split, batch {bs}, "
          f"{threads} threads; median of {args.rounds} rounds in rotated order")
    print(f"| side | texts/s | vs {REFERENCE} | min cosine | mean cosine |")
    print("|---|---|---|---|---|")
    for name, m in results["sides"].items():
        print(f"| {name} | {m['texts_per_s']:.1f} | {m['ratio']:.2f}x | {m['min_cosine']:.6f} | "
              f"{m['mean_cosine']:.6f} |")
    for name, why in refused.items():
        print(f"{name}: refused by the export check: {why}")
    print("per-round ratios: " + "; ".join(f"{name} " + ", ".join(f"{x:.2f}x" for x in m["round_ratios"])
                                           for name, m in results["sides"].items() if name != REFERENCE))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
