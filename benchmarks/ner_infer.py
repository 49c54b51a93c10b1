"""Entity-span throughput: ``transformers.pipeline("token-classification", aggregation_strategy="simple")`` vs
``nlpkit.pipeline`` on PyTorch and on its ONNX exports (fp32, int8), on the same texts.

    python benchmarks/ner_infer.py --model outputs/<ner run>          # a trained run (default: the newest)
    python benchmarks/ner_infer.py --model RUN --texts 1000 --no-onnx

The texts are the run's own sentences (test, validation, then train, tokens joined by spaces; repeated if there
are fewer than ``--texts``), kept to those that fit ``--max-length`` tokens so that both pipelines see whole texts
(transformers' pipeline truncates at the tokenizer's own limit, nlpkit at ``data.max_length``). Every pipeline gets
the same model, batch size and threads, in one process; the timed passes rotate the order of the pipelines and the
best pass of each counts. Columns: texts/s, the ratio to transformers.pipeline, the share of texts whose spans
(type, start, end) are identical to transformers.pipeline's, the largest score difference on those, and the test
split's entity F1 (default mode) of each model (``nlpkit.evaluate`` on the run and on each export).
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from typing import Any


def newest_run() -> str | None:
    runs = sorted(glob.glob("outputs/ner-*/model"), key=os.path.getmtime)
    return os.path.dirname(runs[-1]) if runs else None


def spans_of(rows: list[Any], hf: bool) -> list[list[tuple]]:
    if hf:
        return [[(e["entity_group"], int(e["start"]), int(e["end"])) for e in row] for row in rows]
    return [[(s["type"], s["start"], s["end"]) for s in row] for row in rows]


def scores_of(rows: list[Any], hf: bool) -> list[list[float]]:
    return [[float(e["score"]) for e in row] for row in rows]


def main(argv: list[str] | None = None) -> None:
    """Run the comparison (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="A ner run folder (default: the newest in outputs/).")
    parser.add_argument("--texts", type=int, default=2000, help="How many texts to tag.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every pipeline (torch and ORT).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes of each, in rotating order.")
    parser.add_argument("--export-dir", default="outputs/ner-exports", help="Where the exports are written.")
    parser.add_argument("--no-onnx", action="store_true", help="Only transformers.pipeline and nlpkit PyTorch.")
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
    texts = (fits * (args.texts // max(len(fits), 1) + 1))[: args.texts]
    max_length = {"data.max_length": args.max_length}
    pipes = {"transformers.pipeline": lambda xs: hf(xs, batch_size=args.batch_size)}
    ours = nlpkit.pipeline(run, device="cpu", **max_length)
    pipes["nlpkit PyTorch"] = lambda xs: ours(xs, batch_size=args.batch_size)
    sources = {"nlpkit PyTorch": run}
    if not args.no_onnx:
        from nlpkit.export import export_model

        for name, quantize in (("nlpkit ONNX fp32", None), ("nlpkit ONNX int8", "int8")):
            out = os.path.join(args.export_dir, f"{os.path.basename(os.path.normpath(run))}-{quantize or 'fp32'}")
            export_model(run, out, quantize=quantize, force=True)
            pipe = nlpkit.pipeline(out, threads=args.threads, **max_length)
            pipes[name] = lambda xs, pipe=pipe: pipe(xs, batch_size=args.batch_size)
            sources[name] = out

    for fn in pipes.values():  # warm-up: first calls allocate, ORT plans its kernels
        fn(texts[:128])
    seconds: dict[str, list[float]] = {name: [] for name in pipes}
    outputs: dict[str, list] = {}
    names = list(pipes)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            outputs[name] = pipes[name](texts)
            seconds[name].append(time.perf_counter() - t0)
    best = {name: min(s) for name, s in seconds.items()}
    reference = spans_of(outputs["transformers.pipeline"], hf=True)
    ref_scores = scores_of(outputs["transformers.pipeline"], hf=True)
    f1 = {"transformers.pipeline": None}
    for name, folder in sources.items():
        f1[name] = nlpkit.evaluate(folder).get("f1")
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    entities = sum(len(row) for row in reference)
    print(f"\n{len(texts)} texts ({len(set(texts))} distinct, {entities} entities found by transformers.pipeline), "
          f"batch {args.batch_size}, max length {args.max_length}, {args.threads} threads, model {run} ({where}); "
          f"best of {args.repeats} rotating passes")
    print("| pipeline | texts/s | vs transformers.pipeline | identical spans | max score diff | test entity F1 |")
    print("|---|---|---|---|---|---|")
    base = best["transformers.pipeline"]
    for name in pipes:
        mine = spans_of(outputs[name], hf=name == "transformers.pipeline")
        same = sum(a == b for a, b in zip(mine, reference)) / len(texts)
        diffs = [abs(x - y) for a, b, sa, sb in zip(mine, reference, scores_of(outputs[name], hf=False), ref_scores)
                 if a == b for x, y in zip(sa, sb)]
        score = f"{f1[name]:.4f}" if f1.get(name) is not None else "-"
        print(f"| {name} | {len(texts) / best[name]:.0f} | {base / best[name]:.2f}x | {100 * same:.2f}% | "
              f"{max(diffs, default=0.0):.1e} | {score} |")
    print("\nper-round ratios to transformers.pipeline: " + "; ".join(
        f"{name} " + ", ".join(f"{h / s:.2f}x" for h, s in zip(seconds["transformers.pipeline"], times))
        for name, times in seconds.items() if name != "transformers.pipeline"))


if __name__ == "__main__":
    main()
