"""2-process check of the loss normalisation: 2 processes x 2 micro-batches of 2 == one process, batch 8.

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/scripts/ddp_accumulation.py \\
        MODEL DATA OUT

Each rank builds the generation task's loop on the same prompt/response data, takes its 4 of 8 examples
(variable lengths) as one update of 2 micro-batches and runs :meth:`Loop.backward_window` on the DDP-wrapped
model. Rank 0 then computes the gradients of all 8 examples as one batch on a fresh copy of the model in this
process alone and writes the largest relative difference (per parameter) to ``OUT/ddp_accumulation.json``,
with the same for the per-micro-batch mean of the old loop.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from nlpkit import causal_lm
from nlpkit.config import load_config
from nlpkit.registry import get_task
from nlpkit.training import Loop


def relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    floor = 1e-3 * max(g.norm() for g in b.values())
    return max(((a[k] - b[k]).norm() / torch.maximum(b[k].norm(), floor)).item() for k in b)


def main() -> None:
    model_dir, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    acc = Accelerator(gradient_accumulation_steps=2)
    cls = get_task("generation")
    cfg = load_config(cls.Config, None, {"model": model_dir, "data.source": str(data), "data.split_by": None,
                                         "output_dir": str(out), "trackers": [], "train.batch_size": 2,
                                         "train.grad_accum": 2, "sample_prompts": []})
    loop = Loop(cls(cfg, run_dir=out), acc, out)
    loop.setup()
    ds = loop.loaders["train"].dataset
    feats = sorted((ds[i] for i in range(len(ds))), key=lambda f: -len(f["input_ids"]))
    eight = feats[:2] + feats[-6:]  # two long examples, six short: the ranks' token counts differ a lot
    mine = eight[4 * acc.process_index: 4 * acc.process_index + 4]
    window = [{k: v.to(acc.device) for k, v in loop.task.collate(mine[i:i + 2]).items()} for i in (0, 2)]
    loop.model.eval()  # no dropout: the same function on every side
    loop.model = acc.prepare(loop.model)
    loop.backward_window(window)
    grads = {n: p.grad.detach().clone() for n, p in acc.unwrap_model(loop.model).named_parameters()
             if p.grad is not None}
    local_tokens = int(sum(loop.task.loss_items(b) for b in window))
    # the old loop: each micro-batch's own mean, averaged over the window (and over processes by DDP)
    loop.model.zero_grad(set_to_none=True)
    for i, batch in enumerate(window):
        with acc.no_sync(loop.model) if i == 0 else contextlib.nullcontext():
            (loop.task.loss(loop.model, batch) / len(window)).backward()
    old = {n: p.grad.detach().clone() for n, p in acc.unwrap_model(loop.model).named_parameters()
           if p.grad is not None}
    counts = acc.gather(torch.tensor([local_tokens], device=acc.device)).tolist()
    if acc.is_main_process:
        reference_model, _ = causal_lm.load_causal_lm(model_dir)
        reference_model.eval()
        causal_lm.causal_lm_loss(reference_model, loop.task.collate(eight)).backward()
        reference = {n: p.grad for n, p in reference_model.named_parameters() if p.grad is not None}
        result = {"processes": acc.num_processes, "tokens_per_rank": counts,
                  "relative_difference": relative(grads, reference),
                  "old_relative_difference": relative(old, reference)}
        out.mkdir(parents=True, exist_ok=True)
        (out / "ddp_accumulation.json").write_text(json.dumps(result, indent=2))
        print(result)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
