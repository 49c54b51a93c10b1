"""Text generation on ONNX Runtime: a translation or generation run on PyTorch vs its ``nlpkit export`` (fp32, int8).

    python benchmarks/generator_export.py --model outputs/translation-<timestamp>
    python benchmarks/generator_export.py --model outputs/<generation run> --inputs 64 --max-new-tokens 32

Every path runs the task's own ``predict`` (what ``nlpkit.pipeline`` calls: length-sorted batches, greedy decoding,
``--max-new-tokens``) on the same inputs, in one process, with the same number of threads: the PyTorch run, then
its exports (written once into ``--export-dir`` and reused). Inputs: the run's own test split (translation:
sources, scored against their references with sacreBLEU; generation: the first words of test lines). Each path
runs once untimed on a few inputs, then ``--rounds`` timed passes rotate the order; the fastest pass counts.
An int8 export the exporter refuses (it changes the greedy outputs) is reported and left out.
Prints inputs/s, new tokens/s, the ratio to the PyTorch path, the outputs identical to PyTorch's and, for
translation, BLEU.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path


def inputs_of(task, n: int) -> tuple[list[str], list[str] | None]:
    """``n`` inputs from the run's own test split (and references for translation)."""
    splits = task.load_data().splits
    if task.name == "translation":
        rows = splits["test"].select(range(min(n, len(splits["test"]))))
        return list(rows["source"]), list(rows["target"])
    prompts = []
    for text in splits["test"]["text"]:
        for line in text.split("\n"):
            words = line.split()
            if len(words) >= 4:
                prompts.append(" ".join(words[:4]))
            if len(prompts) == n:
                return prompts, None
    return prompts, None


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A translation or generation run folder.")
    parser.add_argument("--inputs", type=int, default=256, help="How many test inputs to decode.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every path (torch and ORT).")
    parser.add_argument("--rounds", type=int, default=2, help="Timed passes of each, order rotated; best counts.")
    parser.add_argument("--export-dir", default="outputs/exports", help="Where the exports are written (reused).")
    args = parser.parse_args(argv)

    import torch

    import nlpkit
    from nlpkit.errors import UsageError
    from nlpkit.export import export_model
    from nlpkit.metrics import compute

    torch.set_num_threads(args.threads)
    name = Path(args.model).resolve().name
    exports = {}
    for precision in ("fp32", "int8"):
        out = Path(args.export_dir) / f"{name}-{precision}"
        if not (out / "nlpkit_task.json").exists():
            started = time.perf_counter()
            try:
                entry = export_model(args.model, out, quantize=None if precision == "fp32" else "int8")
            except UsageError as err:  # int8 refused: it changes what the model generates
                print(f"{precision}: {err}", flush=True)
                continue
            print(f"exported {precision} in {time.perf_counter() - started:.0f} s: {entry['check']}", flush=True)
        exports[precision] = out
    paths = {"nlpkit PyTorch": nlpkit.pipeline(args.model, device="cpu")}
    for precision, out in exports.items():
        paths[f"nlpkit ONNX {precision}"] = nlpkit.pipeline(str(out), threads=args.threads)
    task = paths["nlpkit PyTorch"].task
    texts, refs = inputs_of(task, args.inputs)
    options = {"max_new_tokens": args.max_new_tokens, "num_beams": 1, "do_sample": False}
    tok = task.tokenizer
    print(f"{len(texts)} {task.name} inputs of {args.model}, batch {args.batch_size}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}", flush=True)
    for pipe in paths.values():  # warm-up
        pipe(texts[:4], batch_size=4, **options)
    best: dict[str, float] = {}
    outputs: dict[str, list[str]] = {}
    names = list(paths)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for label in order:
            started = time.perf_counter()
            outputs[label] = paths[label](texts, batch_size=args.batch_size, **options)
            seconds = time.perf_counter() - started
            best[label] = min(best.get(label, seconds), seconds)
            print(f"  round {r + 1}: {label} {seconds:.1f} s", flush=True)
    base = outputs["nlpkit PyTorch"]
    print(f"\n{'path':20s} {'inputs/s':>9s} {'tokens/s':>9s} {'vs PyTorch':>10s} {'identical':>10s}"
          + ("  BLEU" if refs else ""))
    for label in names:
        tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs[label])
        same = sum(a == b for a, b in zip(base, outputs[label]))
        bleu = (f"  {compute('sacrebleu', predictions=outputs[label], references=refs)['score']:.2f}"
                if refs else "")
        print(f"{label:20s} {len(texts) / best[label]:9.2f} {tokens / best[label]:9.1f} "
              f"{best['nlpkit PyTorch'] / best[label]:9.2f}x {100 * same / len(texts):9.1f}%{bleu}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
