"""Run by tests/test_training.py under ``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo).

Trains the tiny sentiment model with the shared loop, then writes what each rank ended with, so the test can
check data parallelism really happened: identical weights everywhere and metrics over exactly N examples.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from nlpkit.config import load_config
from nlpkit.registry import get_task
from nlpkit.training import Loop

model_dir, data_dir, out_dir = sys.argv[1:4]
cls = get_task("sentiment")
cfg = load_config(cls.Config, None, {
    "model": model_dir, "data.source": data_dir, "output_dir": out_dir, "trackers": [], "train.batch_size": 8,
    "train.eval_batch_size": 7, "train.lr": 5e-3, "train.epochs": 8.0, "train.warmup_ratio": 0.0,
    "train.grad_accum": 2, "train.save_every": 20})
accelerator = Accelerator(gradient_accumulation_steps=2)
task = cls(cfg, run_dir=out_dir)
loop = Loop(task, accelerator, Path(out_dir))
results = loop.fit()
# a fingerprint of this rank's final weights, gathered so rank 0 sees every rank's
flat = torch.cat([p.detach().float().flatten() for p in task.model.parameters()])
fingerprint = torch.stack([flat.sum(), (flat * torch.arange(flat.numel())).sum() / flat.numel(), flat.abs().max()])
everyone = accelerator.gather(fingerprint.unsqueeze(0)).tolist()
if accelerator.is_main_process:
    Path(out_dir, "ddp_check.json").write_text(json.dumps({
        "processes": accelerator.num_processes, "fingerprints": everyone, "test": results.test,
        "validation": results.validation, "state": loop.state, "total_updates": loop.total_updates,
        "updates_per_epoch": loop.updates_per_epoch, "train_rows": results.data_sizes["train"],
    }))
