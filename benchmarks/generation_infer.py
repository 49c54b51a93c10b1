"""Batched generation: nlpkit vs ``transformers.pipeline("text-generation")``, side by side in one process.

    python benchmarks/generation_infer.py            # smollm2-135m, 256 prompts
    python benchmarks/generation_infer.py --model outputs/<generation run> --max-new-tokens 32

The same model object, the same 256 prompts (opening lines of speeches from the held-out Shakespeare test
plays) and the same greedy settings for every contender. Prints generated tokens/s for each, nlpkit's speed-up,
and whether every greedy output is identical to nlpkit's. Every contender first runs once untimed on a few
prompts (warm-up), then on all prompts timed; rows print as they finish.

Contenders:
* nlpkit: ``nlpkit.causal_lm.generate`` - prompts sorted by token length, left-padded batches.
* transformers pipeline as usually called (``pipe(prompts)``: its default batch_size=1).
* transformers pipeline with the same batch size as nlpkit (left padding; prompts in the given order).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch


def shakespeare_prompts(n: int, seed: int = 42, source: str | None = None) -> list[str]:
    """The first few words of speech lines from the default config's held-out test plays (``source``: another
    corpus of plays in the same layout, split as the default config splits ``shakespeare``)."""
    from nlpkit.config import load_config
    from nlpkit.data import load_splits
    from nlpkit.plugins.generation import GenerationConfig

    cfg = load_config(GenerationConfig, None, {"data.source": source} if source else None)
    ds, _ = load_splits(cfg.data, cfg.seed)
    prompts: list[str] = []
    import random

    rng = random.Random(seed)
    for text in ds["test"]["text"]:
        lines = text.split("\n")
        for prev, line in zip(lines, lines[1:], strict=False):
            # a speech starts after a speaker line ("HAMLET."): keep "SPEAKER.\n" + a few words of the speech
            if prev.isupper() and prev.endswith(".") and line.strip() and not line.isupper():
                words = line.split()
                prompts.append(prev + "\n" + " ".join(words[: rng.randint(1, min(8, len(words)))]))
    rng.shuffle(prompts)
    if len(prompts) < n:
        raise SystemExit(f"only {len(prompts)} prompts found")
    return prompts[:n]


def count_tokens(tok, texts: list[str]) -> int:
    return sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="Catalog name, run folder, folder or hub id.")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--data", default=None, help="Corpus of plays the prompts come from (default: the generation "
                                                     "task's, shakespeare; a jsonl of play/text rows works too).")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-hf-single", action="store_true", help="Skip the (slow) batch_size=1 pipeline.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Timed rounds of the batched contenders, order rotated each round; the fastest round "
                             "of each is reported (this VM runs the first heavy minute slowly, whoever goes first). "
                             "The batch_size=1 pass runs once.")
    args = parser.parse_args(argv)

    import transformers

    from nlpkit.causal_lm import generate, load_causal_lm

    transformers.logging.set_verbosity_error()
    model, tok = load_causal_lm(args.model)
    model.eval()
    prompts = shakespeare_prompts(args.prompts, source=args.data)
    n_new = args.max_new_tokens
    print(f"model={args.model}  prompts={len(prompts)}  greedy  max_new_tokens={n_new}  batch_size={args.batch_size}"
          f"  torch threads={torch.get_num_threads()}  cpus={os.cpu_count()}  {platform.processor() or ''}")
    lengths = sorted(len(ids) for ids in tok(prompts)["input_ids"])
    print(f"prompt tokens: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}, "
          f"total {sum(lengths)}")

    pipe = transformers.pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
    hf_kwargs = {"max_new_tokens": n_new, "do_sample": False, "return_full_text": False}
    tok.padding_side = "left"  # required for batched decoder-only generation (nlpkit pads by itself)

    def run_nlpkit(texts: list[str], bs: int) -> list[str]:
        return [o[0] for o in generate(model, tok, texts, batch_size=bs, max_new_tokens=n_new)]

    def run_pipe(texts: list[str], bs: int) -> list[str]:
        return [o[0]["generated_text"] for o in pipe(texts, batch_size=bs, **hf_kwargs)]

    contenders = [("nlpkit (sorted, left-padded batches)", run_nlpkit, args.batch_size)]
    if not args.skip_hf_single:
        contenders.append(("transformers pipeline (default batch_size=1)", run_pipe, 1))
    contenders.append((f"transformers pipeline (batch_size={args.batch_size}, left padding)", run_pipe,
                       args.batch_size))
    # untimed warm-up of every path, so one-time costs (first kernels, allocator) are charged to nobody
    for _name, fn, bs in contenders:
        fn(prompts[:min(bs, 4)], bs)

    timings: dict[str, list[float]] = {name: [] for name, _fn, _bs in contenders}
    outputs: dict[str, list[str]] = {}
    for r in range(max(1, args.rounds)):
        shift = r % len(contenders)
        for name, fn, bs in contenders[shift:] + contenders[:shift]:
            if bs == 1 and timings[name]:
                continue  # minutes long and far from the others: once is enough
            start = time.perf_counter()
            texts = fn(prompts, bs)
            timings[name].append(time.perf_counter() - start)
            outputs.setdefault(name, texts)
            print(f"  round {r + 1}: {name}: {timings[name][-1]:.1f} s", flush=True)

    header = f"{'contender':52s} {'seconds':>8s} {'new tokens':>10s} {'tokens/s':>9s} {'nlpkit x':>9s} identical"
    print("\n" + header + "   (fastest round; all rounds in seconds)", flush=True)
    rows = []
    for name, _fn, _bs in contenders:
        texts, seconds = outputs[name], min(timings[name])
        rows.append((name, seconds, count_tokens(tok, texts), texts))
        base = rows[0]
        tps = rows[-1][2] / seconds
        same = sum(a == b for a, b in zip(texts, base[3], strict=True))
        rounds = ", ".join(f"{t:.1f}" for t in timings[name])
        print(f"{name:52s} {seconds:8.1f} {rows[-1][2]:10d} {tps:9.1f} {base[2] / base[1] / tps:9.2f} "
              f"{same}/{len(prompts)}   [{rounds}]", flush=True)
    print("\n(nlpkit x = nlpkit tokens/s divided by this row's; identical = greedy outputs equal to nlpkit's)")
    ours = rows[0][3]
    for name, _s, _n, texts in rows[1:]:
        diffs = [(p, a, b) for p, a, b in zip(prompts, ours, texts, strict=True) if a != b]
        for p, a, b in diffs[:5]:
            print(f"\nDIFFERS ({name}): {p!r}\n  nlpkit: {a!r}\n  other:  {b!r}")
    for p, o in list(zip(prompts, ours, strict=True))[:3]:
        print(f"\n--- {p!r} -> {o!r}")


if __name__ == "__main__":
    main()
