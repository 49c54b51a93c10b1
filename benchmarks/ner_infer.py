"""Entity-span throughput: ``transformers.pipeline("token-classification", aggregation_strategy="simple")`` vs
``nlpkit.pipeline`` on PyTorch and on its ONNX exports (fp32, int8), on the same texts.

    python benchmarks/ner_infer.py --model outputs/<ner run>          # a trained run (default: the newest)
    python benchmarks/ner_infer.py --model RUN --rounds 7 --min-seconds 10 --no-onnx
    python benchmarks/ner_infer.py --model RUN --attention eager      # + nlpkit PyTorch with eager attention
    python benchmarks/ner_infer.py --model RUN --int8-keep-fp32 ""   # + an int8 export with nothing kept fp32

The texts are the run's own sentences (test, validation, then train, tokens joined by spaces; repeated when more
are needed), kept to those that fit ``--max-length`` tokens so that both pipelines see whole texts (transformers'
pipeline truncates at the tokenizer's own limit, nlpkit at ``data.max_length``). At least ``--texts`` of them, and
enough that the fastest pipeline's pass takes ``--min-seconds`` (timed on a calibration sample after the warm-up).
Every pipeline gets the same model, batch size and threads, in one process. Each round times one pass of every
pipeline, the order rotated from round to round; a pipeline's ratio to transformers.pipeline is the MEDIAN of its
per-round ratios (both passes of a ratio come from the same round, so a slow spell of a shared machine weighs on
both), its texts/s the median of its passes; every round's ratio is printed too. Columns: texts/s, the ratio,
the share of texts whose spans (type, start, end) are identical to transformers.pipeline's, the largest score
difference on those, and the test split's entity F1 (default mode) of each model (``nlpkit.evaluate`` on the run
and on each export).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import statistics
import time
from typing import Any


def newest_run() -> str | None:
    runs = sorted(glob.glob("outputs/ner-*/model"), key=os.path.getmtime)
    return os.path.dirname(runs[-1]) if runs else None


def spans_of(rows: list[Any], hf: bool) -> list[list[tuple]]:
    if hf:
        return [[(e["entity_group"], int(e["start"]), int(e["end"])) for e in row] for row in rows]
    return [[(s["type"], s["start"], s["end"]) for s in row] for row in rows]


def scores_of(rows: list[Any]) -> list[list[float]]:
    return [[float(e["score"]) for e in row] for row in rows]


def rotated(names: list[str], r: int) -> list[str]:
    """The order of round ``r``: ``names`` rotated by ``r``."""
    k = r % len(names)
    return names[k:] + names[:k]


def main(argv: list[str] | None = None) -> None:
    """Run the comparison (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="A ner run folder (default: the newest in outputs/).")
    parser.add_argument("--texts", type=int, default=2000, help="Tag at least this many texts per pass.")
    parser.add_argument("--min-seconds", type=float, default=5.0,
                        help="More texts if needed, so that the fastest pipeline's pass takes at least this long "
                             "(0: just --texts).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every pipeline (torch and ORT).")
    parser.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=5,
                        help="Timed rounds; each runs every pipeline once, in rotated order.")
    parser.add_argument("--export-dir", default="outputs/ner-exports", help="Where the exports are written.")
    parser.add_argument("--no-onnx", action="store_true", help="Only transformers.pipeline and nlpkit PyTorch.")
    parser.add_argument("--attention", default=None, metavar="IMPL",
                        help="Also nlpkit PyTorch with this attention kernel (model.attn_implementation: eager, "
                             "sdpa).")
    parser.add_argument("--int8-keep-fp32", default=None, metavar="REGEX",
                        help="Also an int8 export that keeps the nodes matching REGEX in fp32 (nlpkit export "
                             "--keep-fp32; \"\": nothing kept fp32), beside the one with the task's default.")
    args = parser.parse_args(argv)
    run = args.model or newest_run()
    if run is None:
        raise SystemExit("No ner run found: train one first (accelerate launch tasks/ner.py) or pass --model.")

    import torch
    import transformers

    import nlpkit
    from nlpkit.registry import get_task

    torch.set_num_threads(args.threads)
    task = get_task("ner").from_saved(run)
    data = task.load_data()  # the run's own splits (same source, seed and options)
    pool = [" ".join(words) for split in ("test", "validation", "train") for words in data.splits[split]["tokens"]]
    model_dir = os.path.join(run, "model")
    hf = transformers.pipeline("token-classification", model=model_dir, aggregation_strategy="simple", device=-1)
    fits = [t for t in pool if len(hf.tokenizer(t)["input_ids"]) <= args.max_length]
    if not fits:
        raise SystemExit(f"No text of {run} fits --max-length {args.max_length} tokens.")
    max_length = {"data.max_length": args.max_length}
    pipes = {"transformers.pipeline": lambda xs: hf(xs, batch_size=args.batch_size)}
    ours = nlpkit.pipeline(run, device="cpu", **max_length)
    pipes["nlpkit PyTorch"] = lambda xs: ours(xs, batch_size=args.batch_size)
    sources = {"nlpkit PyTorch": run}
    if args.attention:
        other = nlpkit.pipeline(run, device="cpu", **max_length, **{"model.attn_implementation": args.attention})
        pipes[f"nlpkit PyTorch, {args.attention} attention"] = lambda xs: other(xs, batch_size=args.batch_size)
    if not args.no_onnx:
        from nlpkit.export import export_model

        exports = [("nlpkit ONNX fp32", None, None), ("nlpkit ONNX int8", "int8", None)]
        if args.int8_keep_fp32 is not None:
            label = f"{args.int8_keep_fp32} fp32" if args.int8_keep_fp32 else "nothing kept fp32"
            exports.append((f"nlpkit ONNX int8, {label}", "int8", args.int8_keep_fp32))
        for name, quantize, keep in exports:
            out = os.path.join(args.export_dir, f"{os.path.basename(os.path.normpath(run))}-{quantize or 'fp32'}"
                                                f"{'' if keep is None else '-keep'}")
            export_model(run, out, quantize=quantize, force=True, keep_fp32=keep)
            pipe = nlpkit.pipeline(out, threads=args.threads, **max_length)
            pipes[name] = lambda xs, pipe=pipe: pipe(xs, batch_size=args.batch_size)
            sources[name] = out

    def cycle(n: int) -> list[str]:
        return (fits * (n // len(fits) + 1))[:n]

    for fn in pipes.values():  # warm-up: first calls allocate, ORT plans its kernels
        fn(cycle(128))
    count = args.texts
    if args.min_seconds > 0:  # calibration: the fastest pipeline's rate on a sample sets the pass size
        sample = cycle(min(512, max(args.texts, 64)))
        rates = []
        for fn in pipes.values():
            t0 = time.perf_counter()
            fn(sample)
            rates.append(len(sample) / (time.perf_counter() - t0))
        count = max(count, math.ceil(1.25 * args.min_seconds * max(rates)))  # a margin: a sample runs faster
    texts = cycle(count)

    names = list(pipes)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list] = {}
    for r in range(args.rounds):
        for name in rotated(names, r):
            t0 = time.perf_counter()
            outputs[name] = pipes[name](texts)
            seconds[name].append(time.perf_counter() - t0)
    base = seconds["transformers.pipeline"]
    ratios = {name: [h / s for h, s in zip(base, seconds[name])] for name in names}
    reference = spans_of(outputs["transformers.pipeline"], hf=True)
    ref_scores = scores_of(outputs["transformers.pipeline"])
    f1: dict[str, Any] = {"transformers.pipeline": None}
    for name, folder in sources.items():
        f1[name] = nlpkit.evaluate(folder).get("f1")
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    entities = sum(len(row) for row in reference)
    shortest = min(min(s) for s in seconds.values())
    print(f"\n{len(texts)} texts ({len(set(texts))} distinct, {entities} entities found by transformers.pipeline), "
          f"batch {args.batch_size}, max length {args.max_length}, {args.threads} threads, model {run} ({where}); "
          f"median of {args.rounds} rounds in rotated order (shortest pass {shortest:.1f} s)")
    print("| pipeline | texts/s | vs transformers.pipeline | identical spans | max score diff | test entity F1 |")
    print("|---|---|---|---|---|---|")
    for name in names:
        mine = spans_of(outputs[name], hf=name == "transformers.pipeline")
        same = sum(a == b for a, b in zip(mine, reference)) / len(texts)
        diffs = [abs(x - y) for a, b, sa, sb in zip(mine, reference, scores_of(outputs[name]), ref_scores)
                 if a == b for x, y in zip(sa, sb)]
        score = f"{f1[name]:.4f}" if f1.get(name) is not None else "-"
        print(f"| {name} | {len(texts) / statistics.median(seconds[name]):.0f} | "
              f"{statistics.median(ratios[name]):.2f}x | {100 * same:.2f}% | {max(diffs, default=0.0):.1e} | "
              f"{score} |")
    print("\nper-round ratios to transformers.pipeline: " + "; ".join(
        f"{name} " + ", ".join(f"{x:.2f}x" for x in ratios[name]) for name in names[1:]))
    print("per-round seconds: " + "; ".join(f"{name} " + ", ".join(f"{s:.2f}" for s in seconds[name])
                                            for name in names))


if __name__ == "__main__":
    main()
