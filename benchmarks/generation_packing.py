"""Packing of instruction data (``data.packing``): training speed and validation perplexity, packed vs padded.

    python benchmarks/generation_packing.py               # smollm2-135m, ~8 min
    python benchmarks/generation_packing.py --model <tiny model folder> --train 256    # a quick check
    python benchmarks/generation_packing.py --model <folder> --data plays.jsonl --train 8 --rounds 1  # own plays

The catalog has no prompt/response or chat data, so the data are made from the ``shakespeare`` corpus, split
by play as the generation default does: every pair of consecutive speeches becomes one example, prompt = the
first speech with its speaker line plus the next speaker's line (``HAMLET.\\n...\\n\\nHORATIO.\\n``), response
= the reply (scored). ``--train`` pairs from the training plays, ``--validation`` pairs from the held-out
validation plays, ``data.max_length`` 256 tokens.

Both sides run in one process through the real training loop (:class:`nlpkit.training.Loop`: setup, prepare,
train), one epoch over the same training examples with the same learning rate and schedule, the order of the
sides rotating from round to round. Sides: ``packed`` (rows of up to 256 tokens, first-fit, longest first;
batches of as many rows as carry about ``--batch`` examples), ``padded`` (``--batch`` examples per update,
length-grouped batches as by default) and ``padded-random`` (``train.group_by_length=false``: random batches,
the most padding). Speed = training time only (evaluation and checkpoints
excluded) in examples/s and real (non-padding) tokens/s, and the process's CPU time for the same span (less
disturbed than wall time when other jobs share the cores); perplexity = validation perplexity after the epoch.
Prints each run, then the medians and the packed/padded ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

MAX_LENGTH = 256


def speech_pairs(texts: list[str]) -> list[dict[str, str]]:
    """(cue speech -> reply) pairs from plays in the Gutenberg layout (speaker line ``NAME.``, then the speech)."""
    pairs = []
    for text in texts:
        speeches = []
        for block in text.split("\n\n"):
            lines = [ln for ln in block.strip("\n").split("\n") if ln.strip()]
            if len(lines) < 2 or not (lines[0].isupper() and lines[0].endswith(".")):
                continue  # stage directions, titles, act headings
            speeches.append((lines[0], "\n".join(ln for ln in lines[1:] if not ln.startswith("["))))
        for (who, said), (next_who, reply) in zip(speeches, speeches[1:], strict=False):
            if said and reply:
                pairs.append({"prompt": f"{who}\n{said}\n\n{next_who}\n", "response": reply})
    return pairs


def write_data(folder: Path, n_train: int, n_validation: int, seed: int, source: str | None = None) -> Path:
    """The benchmark's prompt/response jsonl files, from the default generation config's play split (of
    ``source``, a corpus of plays in the same layout, when given)."""
    from nlpkit.config import load_config
    from nlpkit.data import load_splits
    from nlpkit.plugins.generation import GenerationConfig

    cfg = load_config(GenerationConfig, None, {"data.source": source} if source else None)
    ds, _ = load_splits(cfg.data, cfg.seed)
    rng = random.Random(seed)
    wanted = {"train": n_train, "validation": n_validation, "test": 8}
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in wanted.items():
        pairs = speech_pairs(ds[split]["text"])
        rng.shuffle(pairs)
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[:n]))
    return folder


#: side -> (data.packing, train.group_by_length)
SIDES = {"packed": (True, True), "padded": (False, True), "padded-random": (False, False)}


def run(model: str, data: Path, side: str, batch: int, lr: float, out: Path) -> dict:
    """One epoch through the real loop; training seconds, counts and the final validation perplexity."""
    from accelerate import Accelerator

    from nlpkit.config import load_config
    from nlpkit.registry import get_task
    from nlpkit.training import Loop

    packed, grouped = SIDES[side]
    cls = get_task("generation")
    cfg = load_config(cls.Config, None, {
        "model": model, "data.source": str(data), "data.format": "prompt_response", "data.split_by": None,
        "data.max_length": MAX_LENGTH, "data.packing": packed, "output_dir": str(out), "trackers": [],
        "train.epochs": 1.0, "train.max_steps": -1, "train.batch_size": batch, "train.eval_batch_size": 8,
        "train.lr": lr, "train.log_every": 1000, "train.eval_every": 0, "train.save_every": 0,
        "train.keep_checkpoints": 0, "train.group_by_length": grouped})
    task = cls(cfg, run_dir=out)
    loop = Loop(task, Accelerator(), out)
    loop.setup()
    rows = loop.loaders["train"].dataset
    labels = rows["labels"]
    loop.prepare()
    cpu = time.process_time()
    loop.train()
    cpu = time.process_time() - cpu
    # train() ends with a validation pass; one more measures its CPU time, to leave it out
    began = time.process_time()
    loop.evaluate("validation")
    cpu -= time.process_time() - began
    evals = [h for h in loop.state["history"] if "eval_perplexity" in h]
    return {"side": side, "rows": len(rows), "batch": batch, "updates": loop.state["global_step"],
            "seconds": loop.state["train_seconds"], "cpu_seconds": cpu,
            "scored_tokens": sum(sum(1 for x in row[1:] if x != -100) for row in labels),
            "real_tokens": sum(len(r) for r in rows["input_ids"]),
            "perplexity": evals[-1]["eval_perplexity"]}


def examples_per_row(model: str, data: Path) -> float:
    """How many training examples a packed row holds on average (to give both sides about the same update)."""
    from nlpkit import causal_lm

    tok = causal_lm.load_tokenizer(model)
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    enc = causal_lm.encode_prompt_response(tok, [r["prompt"] for r in rows], [r["response"] for r in rows],
                                           MAX_LENGTH)
    return len(rows) / len(causal_lm.pack_examples(enc, MAX_LENGTH)["input_ids"])


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="Catalog name, folder or hub id of a causal LM.")
    parser.add_argument("--train", type=int, default=32, help="Training examples (speech pairs).")
    parser.add_argument("--validation", type=int, default=16, help="Validation examples.")
    parser.add_argument("--batch", type=int, default=8, help="Examples per update on the padded side.")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rounds", type=int, default=2, help="Rounds over the sides, order rotating.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="Corpus of plays the pairs come from (default: the generation "
                                                     "task's, shakespeare; a jsonl of play/text rows works too).")
    args = parser.parse_args(argv)

    import torch

    from nlpkit.modeling import resolve_model

    model = resolve_model(args.model)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else \
        platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPU cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data", args.train, args.validation, args.seed, args.data)
        per_row = examples_per_row(model, data)
        packed_batch = max(1, round(args.batch / per_row))
        print(f"{args.train} training / {args.validation} validation speech pairs; {per_row:.2f} examples per "
              f"packed row of {MAX_LENGTH} tokens -> packed batch {packed_batch} rows, padded batch {args.batch}")
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for r in range(args.rounds):
            order = list(SIDES)[r % len(SIDES):] + list(SIDES)[:r % len(SIDES)]
            for side in order:
                began = time.perf_counter()
                res = run(model, data, side, packed_batch if SIDES[side][0] else args.batch, args.lr,
                          Path(tmp) / f"run-{r}-{side}")
                results[side].append(res)
                print(f"round {r + 1} {side}: {res['rows']} rows, batch {res['batch']}, {res['updates']} updates, "
                      f"train {res['seconds']:.1f} s ({args.train / res['seconds']:.2f} examples/s, "
                      f"{res['real_tokens'] / res['seconds']:.0f} tokens/s; CPU {res['cpu_seconds']:.1f} s), "
                      f"validation perplexity "
                      f"{res['perplexity']:.3f}  [wall {time.perf_counter() - began:.0f} s]", flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    print()
    packed_s, packed_cpu = median("packed", "seconds"), median("packed", "cpu_seconds")
    packed_ppl = median("packed", "perplexity")
    for side in SIDES:
        secs, cpu, ppl = median(side, "seconds"), median(side, "cpu_seconds"), median(side, "perplexity")
        print(f"{side:>14}: median training {secs:6.1f} s wall ({args.train / secs:.2f} examples/s), {cpu:6.1f} s "
              f"CPU; validation perplexity {ppl:.3f}; packed speed-up {secs / packed_s:.2f}x wall, "
              f"{cpu / packed_cpu:.2f}x CPU; packed/this perplexity {packed_ppl / ppl:.4f}")
    print(f"scored tokens per epoch, every side: {results['packed'][0]['scored_tokens']}")


if __name__ == "__main__":
    main()
