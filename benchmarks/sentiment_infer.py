"""Inference throughput: ``transformers.pipeline`` vs ``nlpkit.pipeline`` on PyTorch and on ONNX Runtime.

    python benchmarks/sentiment_infer.py --model outputs/<sentiment run>   # a trained run (default: newest)
    python benchmarks/sentiment_infer.py --model RUN --keep-fp32 '' --keep-fp32 'layer\\.\\d/output/dense'

Every pipeline classifies the same texts of the run's own data source (rotten_tomatoes for the default run: its
test, validation and train texts, 5,000 by default, repeated if the data has fewer) with the same model, batch size,
max length and number of threads, in one process; the timed passes rotate the order of the pipelines and the
best pass of each counts. Rows: ``transformers.pipeline("text-classification")``; ``nlpkit.pipeline`` on the
PyTorch run; on its ``nlpkit export`` in fp32 and in int8: the export's default (per-channel int8 weights and
dynamic activations in every MatMul, close calls re-scored by the kept fp32 graph) and without a fallback
(attention and feed-forward output projections kept in fp32); one more int8 row per ``--keep-fp32`` pattern;
one more per ``--fallback-margin`` gap and int8 variant (close calls re-scored in fp32). Columns: texts/s, the
ratio to transformers.pipeline, label agreement with the PyTorch model, and accuracy on the run's test split.
Exports are written once into ``--export-dir`` and reused.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import time


def newest_run() -> str | None:
    runs = sorted(glob.glob("outputs/sentiment-*/model"), key=os.path.getmtime)
    return os.path.dirname(runs[-1]) if runs else None


def main(argv: list[str] | None = None) -> None:
    """Run the comparison (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="A sentiment run folder (default: the newest in outputs/).")
    parser.add_argument("--texts", type=int, default=5000, help="How many texts to classify.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every pipeline (torch and ORT).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes of each, in rotating order (the "
                                                               "best is kept).")
    parser.add_argument("--export-dir", default="outputs/exports", help="Where the ONNX exports are written "
                                                                        "(reused when present).")
    parser.add_argument("--keep-fp32", action="append", default=[], metavar="REGEX",
                        help="Also measure an int8 export keeping these nodes fp32 ('' = quantize every MatMul); "
                             "repeatable.")
    parser.add_argument("--fallback-margin", action="append", type=float, default=[], metavar="GAP",
                        help="Also measure int8 exports (default and --keep-fp32 ones) that re-score in fp32 the "
                             "rows whose two best probabilities are within GAP (nlpkit export --fallback-margin); "
                             "repeatable.")
    parser.add_argument("--no-onnx", action="store_true", help="Only transformers.pipeline and nlpkit PyTorch.")
    parser.add_argument("--only", default=None, metavar="REGEX", help="Time only the ONNX rows whose name matches "
                                                                      "(the two PyTorch rows always run).")
    args = parser.parse_args(argv)
    run = args.model or newest_run()
    if run is None:
        raise SystemExit("No sentiment run found: train one first (accelerate launch tasks/sentiment.py) or pass "
                         "--model.")

    import torch
    import transformers

    import nlpkit
    from nlpkit.registry import get_task

    torch.set_num_threads(args.threads)
    task = get_task("sentiment").from_saved(run)
    data = task.load_data()  # the run's own splits (same source, seed and options)
    column = task.cfg.data.text_column
    pool = [t for split in ("test", "validation", "train") for t in data.splits[split][column]]
    texts = (pool * (args.texts // len(pool) + 1))[: args.texts]
    test = data.splits["test"]
    test_texts = list(test[column])
    test_labels = [data.info.labels[i] for i in list(test["labels"])]
    device = 0 if torch.cuda.is_available() else -1
    model_dir = os.path.join(run, "model")
    hf = transformers.pipeline("text-classification", model=model_dir, device=device)
    hf_kwargs = {"batch_size": args.batch_size, "truncation": True, "max_length": args.max_length}
    max_length = {"data.max_length": args.max_length}
    pipes = {"transformers.pipeline": lambda xs: hf(xs, **hf_kwargs)}
    ours = nlpkit.pipeline(run, **max_length)
    pipes["nlpkit PyTorch"] = lambda xs: ours(xs, batch_size=args.batch_size)
    if not args.no_onnx:
        from nlpkit.export import export_model
        from nlpkit.onnx_runtime import onnx_export_info
        from nlpkit.plugins.sentiment.export import DEFAULT_FALLBACK_MARGIN, KEEP_FP32

        variants = [("nlpkit ONNX fp32", None, "", 0.0),
                    (f"nlpkit ONNX int8 (default: every MatMul, fp32 fallback under gap {DEFAULT_FALLBACK_MARGIN})",
                     "int8", "", DEFAULT_FALLBACK_MARGIN),
                    ("nlpkit ONNX int8, fp32 kept: projections, no fallback", "int8", KEEP_FP32, 0.0)]
        variants += [(f"nlpkit ONNX int8, fp32 kept: {p or 'none'}", "int8", p, 0.0) for p in args.keep_fp32]
        variants += [(f"nlpkit ONNX int8, fp32 kept: {p or 'none'}, fp32 fallback under gap {g}", "int8", p, g)
                     for g in args.fallback_margin for p in [KEEP_FP32, *args.keep_fp32]]
        for i, (name, quantize, keep, gap) in enumerate(variants):
            out = os.path.join(args.export_dir, f"{os.path.basename(os.path.normpath(run))}-{quantize or 'fp32'}-{i}")
            info = onnx_export_info(out)
            if info is None or info.get("source") != os.path.abspath(run) or (
                    quantize and info.get("quantization", {}).get("kept_fp32") != keep) or (
                    ((info.get("fallback") or {}).get("margin") or 0.0) != gap):
                export_model(run, out, quantize=quantize, keep_fp32=keep, force=True, fallback_margin=gap)
            if args.only is not None and not re.search(args.only, name):
                continue
            pipe = nlpkit.pipeline(out, threads=args.threads, **max_length)
            pipes[name] = lambda xs, pipe=pipe: pipe(xs, batch_size=args.batch_size)

    for fn in pipes.values():  # warm-up: first calls allocate, ORT plans its kernels
        fn(texts[:128])
    seconds: dict[str, list[float]] = {name: [] for name in pipes}
    outputs: dict[str, list] = {}
    names = list(pipes)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate: no pipeline always runs first
            t0 = time.perf_counter()
            outputs[name] = pipes[name](texts)
            seconds[name].append(time.perf_counter() - t0)
    best = {name: min(s) for name, s in seconds.items()}
    reference = [o["label"] for o in outputs["nlpkit PyTorch"]]
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    print(f"\n{len(texts)} texts, batch {args.batch_size}, max length {args.max_length}, {args.threads} threads, "
          f"model {run} ({where}); best of {args.repeats} rotating passes")
    print("| pipeline | texts/s | vs transformers.pipeline | label agreement with PyTorch | test accuracy |")
    print("|---|---|---|---|---|")
    base = best["transformers.pipeline"]
    for name, fn in pipes.items():
        agree = sum(o["label"] == r for o, r in zip(outputs[name], reference)) / len(texts)
        predicted = [o["label"] for o in fn(test_texts)]
        acc = sum(p == g for p, g in zip(predicted, test_labels)) / len(test_labels)
        print(f"| {name} | {len(texts) / best[name]:.0f} | {base / best[name]:.2f}x | {100 * agree:.2f}% | "
              f"{acc:.4f} |")
    # each pass against transformers.pipeline's pass of the same round: how much the ratio moves between rounds
    print("\nper-round ratios to transformers.pipeline: " + "; ".join(
        f"{name} " + ", ".join(f"{h / s:.2f}x" for h, s in zip(seconds["transformers.pipeline"], times))
        for name, times in seconds.items() if name != "transformers.pipeline"))


if __name__ == "__main__":
    main()
