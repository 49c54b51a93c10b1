"""Training throughput: Hugging Face ``Trainer`` vs nlpkit, same model, data, batch, max length, epochs, seed.

    python benchmarks/sentiment_train.py                      # full rotten_tomatoes, 1 epoch, batch 32, 3 seeds
    python benchmarks/sentiment_train.py --seeds 42 --max-train-samples 2000
    python benchmarks/sentiment_train.py --model <tiny model folder> --data <csv folder> --seeds 1   # a quick check

One fine-tuning epoch moves test accuracy by about a point from seed to seed (head initialisation, dropout,
batch order), so both runners are trained once per seed (each pair with the same seed) and compared on the mean.

Both runs fine-tune ``minilm-l6`` on the same rotten_tomatoes train split (nlpkit's seeded split), then score
the same test split. Prints samples/s for both, the ratio, and both test accuracies. Where nlpkit's speed
comes from: length-grouped batches (less padding), nothing else differs (same optimizer, schedule, fp32).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def main(argv: list[str] | None = None) -> None:
    """Run the comparison (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6", help="Model (catalog name, path or hub id).")
    parser.add_argument("--data", default="rotten_tomatoes", help="Data source (catalog name or path).")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4, help="Learning rate for both (nlpkit's default).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="One Trainer/nlpkit pair per seed.")
    parser.add_argument("--split-seed", type=int, default=42, help="Seed of the train/validation/test split (fixed).")
    parser.add_argument("--max-train-samples", type=int, default=None)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    import nlpkit
    from nlpkit.config import load_config
    from nlpkit.modeling import resolve_model

    common = {"data.source": args.data, "data.max_length": args.max_length, "data.split_seed": args.split_seed,
              "data.max_train_samples": args.max_train_samples}
    # The exact splits nlpkit trains on (its Data: cleaned splits with label ids), so the Trainer sees the same
    # examples with the same labels.
    cls = nlpkit.get_task("sentiment")
    task = cls(load_config(cls.Config, None, {**common, "model": args.model}))
    data = task.load_data()
    text = task.cfg.data.text_column
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    enc = data.splits.map(lambda b: tokenizer(b[text], truncation=True, max_length=args.max_length), batched=True,
                          remove_columns=[text])
    n_train = len(enc["train"])
    print(f"{n_train} training texts, {len(enc['test'])} test texts, batch {args.batch_size}, "
          f"{args.epochs} epoch(s), {torch.get_num_threads()} threads")

    labels = list(data.info.labels or [])
    rows = [_train_pair(args, {**common, "seed": seed}, labels, path, tokenizer, enc, n_train) for seed in args.seeds]

    print("\n| seed | HF Trainer samples/s | nlpkit samples/s | ratio | Trainer test acc | nlpkit test acc "
          "| diff (points) |")
    print("|---|---|---|---|---|---|---|")
    for seed, hf_sps, hf_acc, nk_sps, nk_acc in rows:
        print(f"| {seed} | {hf_sps:.1f} | {nk_sps:.1f} | {nk_sps / hf_sps:.2f}x | {hf_acc:.4f} | {nk_acc:.4f} | "
              f"{100 * (nk_acc - hf_acc):+.2f} |")
    hf_sps, hf_acc, nk_sps, nk_acc = (float(np.mean([r[k] for r in rows])) for k in (1, 2, 3, 4))
    hf_sd, nk_sd = (float(np.std([r[k] for r in rows])) for k in (2, 4))
    print(f"| mean | {hf_sps:.1f} | {nk_sps:.1f} | {nk_sps / hf_sps:.2f}x | {hf_acc:.4f} (sd {hf_sd:.4f}) | "
          f"{nk_acc:.4f} (sd {nk_sd:.4f}) | {100 * (nk_acc - hf_acc):+.2f} |")
    print(f"\nthroughput ratio nlpkit / Trainer: {nk_sps / hf_sps:.2f}x (target >= 1.3)   mean accuracy difference: "
          f"{100 * (nk_acc - hf_acc):+.2f} points (target >= -0.5) over seeds {args.seeds}   (machine: "
          f"{os.cpu_count()} CPU cores{', ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''})")


def _train_pair(args, common, labels, path, tokenizer, enc, n_train) -> tuple[int, float, float, float, float]:
    """Train the Trainer, then nlpkit, with ``common["seed"]``: (seed, Trainer samples/s, acc, nlpkit samples/s,
    acc). ``common`` holds the nlpkit data overrides (the fixed split) and the seed."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    import nlpkit

    seed = common["seed"]
    # ---------------------------------------------------------------- Hugging Face Trainer
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    with tempfile.TemporaryDirectory() as out:
        # warmup_steps < 1 is a ratio in transformers 5 (same 6% warmup as nlpkit)
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                  per_device_eval_batch_size=128, num_train_epochs=args.epochs,
                                  learning_rate=args.lr, weight_decay=0.01, warmup_steps=0.06, seed=seed,
                                  save_strategy="no", eval_strategy="no", report_to=[], logging_steps=50,
                                  disable_tqdm=False, use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=model, args=targs, train_dataset=enc["train"],
                          data_collator=DataCollatorWithPadding(tokenizer))
        out_metrics = trainer.train().metrics
        pred = trainer.predict(enc["test"])
        hf_acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    hf_sps = n_train * args.epochs / out_metrics["train_runtime"]

    # ---------------------------------------------------------------- nlpkit
    with tempfile.TemporaryDirectory() as out:
        report = nlpkit.train("sentiment", **common, model=args.model, output_dir=out, trackers=[],
                              **{"train.epochs": args.epochs, "train.batch_size": args.batch_size,
                                 "train.lr": args.lr, "train.eval_every": 10**9, "train.log_every": 50})
    nk_sps = report["training"]["samples_per_s"]
    nk_acc = report["test"]["accuracy"]

    print(f"seed {seed}: Trainer {hf_sps:.1f} samples/s, accuracy {hf_acc:.4f}; nlpkit {nk_sps:.1f} samples/s, "
          f"accuracy {nk_acc:.4f}", flush=True)
    return seed, hf_sps, hf_acc, nk_sps, nk_acc


if __name__ == "__main__":
    main()
