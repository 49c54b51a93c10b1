"""Translation inference: nlpkit's length-batched generation vs one-sentence-at-a-time ``model.generate``.

    python benchmarks/translation_infer.py --model outputs/translation-<timestamp>
    python benchmarks/translation_infer.py        # newest translation run in outputs/, else trains a small one

Both translate the same 1,000 sentences of the run's own test split (the split is rebuilt from the run's
saved config: same source, seed and chapter grouping) with the same model and the same greedy decoding (the
run's other decoding options, such as n-gram blocking, apply to both), in one process. Prints sentences/s for
both, the ratio, and how many outputs are identical. nlpkit sorts sources by length so each batch pads little
(``Task.predict``, what ``nlpkit.pipeline`` calls); the baseline is the plain loop a user writes first:
tokenize one sentence, ``generate``, decode.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time


def newest_run() -> str | None:
    runs = sorted(glob.glob("outputs/translation-*/model"), key=os.path.getmtime)
    return os.path.dirname(runs[-1]) if runs else None


def train_small(out: str) -> str:
    """A small from-scratch model (a few minutes on 2 cores) when no trained run is at hand."""
    import nlpkit

    print(f"No translation run given or found: training a small one into {out} ...", flush=True)
    nlpkit.train(
        "translation",
        output_dir=out,
        trackers=[],
        **{
            "data.max_train_samples": 8000,
            "train.epochs": 1.0,
            "translation.scratch.d_model": 128,
            "translation.scratch.ffn_dim": 512,
            "translation.scratch.encoder_layers": 2,
            "translation.scratch.decoder_layers": 1,
            "translation.scratch.vocab_size": 4000,
        },
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=None,
        help="A translation run folder (default: the newest in outputs/; trains a small one if there is none).",
    )
    parser.add_argument("--sentences", type=int, default=1000, help="How many test sentences to translate.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)
    run = args.model or newest_run() or train_small("outputs/translation-bench-small")

    import torch
    from tqdm.auto import tqdm

    import nlpkit
    from nlpkit.plugins.translation.seq2seq import Seq2SeqBackend

    pipe = nlpkit.pipeline(run)
    task = pipe.task
    if not isinstance(task.backend, Seq2SeqBackend):
        raise SystemExit("This benchmark compares encoder-decoder generation; give a seq2seq translation run.")
    splits = task.load_data().splits  # the run's own split, rebuilt from its saved data config and seed
    sources = list(splits["test"]["source"])
    if len(sources) < args.sentences:
        sources += list(splits["validation"]["source"])
    sources = sources[: args.sentences]
    gen = {"num_beams": 1, "do_sample": False, "max_new_tokens": args.max_new_tokens}
    model, tok = task.model, task.tokenizer
    device = next(model.parameters()).device
    prefix = task.backend.prefix
    n = len(sources)
    single_kwargs = task.generate_kwargs(task.cfg.generate.replace(**gen))  # the same decoding
    print(
        f"{n} sentences from {task.cfg.data.source} (test split), model {run}, device {device}, "
        f"{torch.get_num_threads()} threads, decoding {single_kwargs}",
        flush=True,
    )

    # warm-up (allocator, kernels) so neither side pays first-call costs
    task.predict(sources[:8], batch_size=8, **gen)

    start = time.perf_counter()
    batched = task.predict(sources, batch_size=args.batch_size, **gen)
    t_batched = time.perf_counter() - start
    print(f"nlpkit length-batched (batch {args.batch_size}): {t_batched:.1f} s", flush=True)

    singles = []
    start = time.perf_counter()
    with torch.inference_mode():
        for s in tqdm(sources, desc="one at a time", leave=False):
            enc = tok(prefix + s, return_tensors="pt", truncation=True, max_length=task.cfg.data.max_length)
            out = model.generate(**{k: v.to(device) for k, v in enc.items()}, **single_kwargs)
            singles.append(tok.decode(out[0], skip_special_tokens=True).strip())
    t_single = time.perf_counter() - start

    same = sum(a == b for a, b in zip(batched, singles, strict=True))
    result = {
        "sentences": n,
        "model": run,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "batched_s": round(t_batched, 2),
        "single_s": round(t_single, 2),
        "batched_sentences_per_s": round(n / t_batched, 2),
        "single_sentences_per_s": round(n / t_single, 2),
        "speedup": round(t_single / t_batched, 2),
        "identical_outputs": same,
        "decoding": single_kwargs,
    }
    print(f"one sentence at a time:           {t_single:.1f} s")
    print(
        f"throughput: nlpkit {result['batched_sentences_per_s']} sent/s vs one-at-a-time "
        f"{result['single_sentences_per_s']} sent/s -> {result['speedup']}x"
    )
    print(f"identical greedy outputs: {same}/{n}")
    for a, b, s in [(a, b, s) for a, b, s in zip(batched, singles, sources, strict=True) if a != b][:3]:
        print(f"  differs: {s!r}\n    batched: {a!r}\n    single:  {b!r}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
