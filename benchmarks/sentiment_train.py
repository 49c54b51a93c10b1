"""Training throughput: Hugging Face ``Trainer`` vs nlpkit, same model, data, batch, max length, epochs, seed.

    python benchmarks/sentiment_train.py                      # full rotten_tomatoes, 1 epoch, batch 32
    python benchmarks/sentiment_train.py --max-train-samples 2000

Both runs fine-tune ``minilm-l6`` on the same rotten_tomatoes train split (nlpkit's seeded split), then score
the same test split. Prints samples/s for both, the ratio, and both test accuracies. Where nlpkit's speed
comes from: length-grouped batches (less padding), nothing else differs (same optimizer, schedule, fp32).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6", help="Model (catalog name, path or hub id).")
    parser.add_argument("--data", default="rotten_tomatoes", help="Data source (catalog name or path).")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4, help="Learning rate for both (nlpkit's default).")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train-samples", type=int, default=None)
    args = parser.parse_args()

    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    import nlpkit
    from nlpkit.config import load_config
    from nlpkit.modeling import resolve_model

    common = {"data.source": args.data, "data.max_length": args.max_length, "seed": args.seed,
              "data.max_train_samples": args.max_train_samples}
    # The exact splits nlpkit trains on, so the Trainer sees the same examples.
    task = nlpkit.get_task("sentiment")(load_config(nlpkit.get_task("sentiment").Config, None,
                                                    {**common, "model": args.model}))
    splits = task.load_data()
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    enc = splits.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length), batched=True,
                     remove_columns=["text"])
    n_train = len(enc["train"])
    print(f"{n_train} training texts, {len(enc['test'])} test texts, batch {args.batch_size}, "
          f"{args.epochs} epoch(s), {torch.get_num_threads()} threads")

    # ---------------------------------------------------------------- Hugging Face Trainer
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(task.labels))
    with tempfile.TemporaryDirectory() as out:
        # warmup_steps < 1 is a ratio in transformers 5 (same 6% warmup as nlpkit)
        targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                  per_device_eval_batch_size=128, num_train_epochs=args.epochs,
                                  learning_rate=args.lr, weight_decay=0.01, warmup_steps=0.06, seed=args.seed,
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

    print("\n| runner | train samples/s | train time (s) | test accuracy |")
    print("|---|---|---|---|")
    print(f"| HF Trainer | {hf_sps:.1f} | {out_metrics['train_runtime']:.1f} | {hf_acc:.4f} |")
    print(f"| nlpkit | {nk_sps:.1f} | {report['training']['runtime_s']:.1f} | {nk_acc:.4f} |")
    print(f"\nthroughput ratio nlpkit / Trainer: {nk_sps / hf_sps:.2f}x   "
          f"accuracy difference: {100 * (nk_acc - hf_acc):+.2f} points   (machine: {os.cpu_count()} CPU cores"
          f"{', ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''})")


if __name__ == "__main__":
    main()
