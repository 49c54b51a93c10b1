"""Inference throughput: ``transformers.pipeline("text-classification")`` vs ``nlpkit.pipeline``.

    python benchmarks/sentiment_infer.py --model outputs/<sentiment run>   # a trained run (default: newest)

Both classify the same 5,000 rotten_tomatoes texts with the same model, batch size and max length, in one
process. Prints texts/s for both, the ratio and the label agreement. nlpkit sorts texts by length so each
batch pads to similar lengths, builds the batch tensors directly and runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import glob
import os
import time


def newest_run() -> str | None:
    runs = sorted(glob.glob("outputs/sentiment-*/model"), key=os.path.getmtime)
    return os.path.dirname(runs[-1]) if runs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="A sentiment run folder (default: the newest in outputs/).")
    parser.add_argument("--texts", type=int, default=5000, help="How many texts to classify.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="Timed passes of each (the best is kept).")
    args = parser.parse_args()
    run = args.model or newest_run()
    if run is None:
        raise SystemExit("No sentiment run found: train one first (accelerate launch tasks/sentiment.py) or pass "
                         "--model.")

    import pandas as pd
    import torch
    import transformers

    import nlpkit
    from nlpkit import assets

    texts = pd.read_parquet(assets.fetch("rotten_tomatoes") / "data.parquet")["text"].tolist()
    texts = (texts * (args.texts // len(texts) + 1))[: args.texts]
    device = 0 if torch.cuda.is_available() else -1
    model_dir = os.path.join(run, "model")
    hf = transformers.pipeline("text-classification", model=model_dir, device=device)
    ours = nlpkit.pipeline(run, **{"data.max_length": args.max_length})
    hf_kwargs = {"batch_size": args.batch_size, "truncation": True, "max_length": args.max_length}

    def timed(fn):  # best of N passes, after a short warm-up
        fn(texts[:128])
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn(texts)
            best = min(best, time.perf_counter() - t0)
        return best, out

    hf_s, hf_out = timed(lambda xs: hf(xs, **hf_kwargs))
    nk_s, nk_out = timed(lambda xs: ours(xs, batch_size=args.batch_size))
    agree = sum(a["label"] == b["label"] for a, b in zip(hf_out, nk_out)) / len(texts)
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    print(f"\n{len(texts)} texts, batch {args.batch_size}, max length {args.max_length}, model {run} ({where})")
    print("| pipeline | texts/s | seconds |\n|---|---|---|")
    print(f"| transformers.pipeline | {len(texts) / hf_s:.1f} | {hf_s:.2f} |")
    print(f"| nlpkit.pipeline | {len(texts) / nk_s:.1f} | {nk_s:.2f} |")
    print(f"\nthroughput ratio nlpkit / transformers: {hf_s / nk_s:.2f}x   label agreement: {100 * agree:.2f}%")


if __name__ == "__main__":
    main()
