"""The one accelerate training/evaluation loop shared by every transformer task.

Processes, devices and precision come only from the accelerate launch config. The loop is written out
(nanoGPT-style) rather than hidden behind callbacks so each step can be read top to bottom.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.trainer_pt_utils import LengthGroupedSampler

from nlpkit.task import Task

logger = logging.getLogger("nlpkit.training")

STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks the checkpoint complete
_CKPT = re.compile(r"^checkpoint-(\d+)$")


# --------------------------------------------------------------------------------------------- batches


class EpochSampler(Sampler[int]):
    """Shuffled (optionally length-grouped) indices, re-seeded from ``seed + epoch``.

    Being a pure function of (seed, epoch), every rank draws the same order and a resumed run replays the
    interrupted epoch exactly, so ``skip_first_batches`` lands on the right batch.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group_by_length
        self.epoch = 0

    # Not named set_epoch: accelerate calls set_epoch with its own per-process iteration count.
    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self.group:
            return iter(torch.randperm(len(self.lengths), generator=g).tolist())
        # transformers' sampler: random mega-batches of 50 batches, each sorted by length.
        return iter(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=g))


def encode_splits(task: Task, raw: DatasetDict, accelerator: Accelerator) -> DatasetDict:
    """Tokenize every split once (main process first, so the others reuse datasets' cache)."""
    with accelerator.main_process_first():
        return raw.map(task.encode, batched=True, remove_columns=raw["train"].column_names,
                       desc="Tokenizing")


def eval_loader(task: Task, ds: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Evaluation batches sorted by length (longest first): least padding, and OOM shows up at once."""
    lengths = task.lengths(ds)
    order = sorted(range(len(ds)), key=lambda i: -lengths[i])
    return DataLoader(ds.select(order), batch_size=batch_size, shuffle=False, collate_fn=task.collate,
                      num_workers=num_workers)


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_loader(task: Task, model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator,
                    desc: str = "Evaluating") -> tuple[dict[str, Any], dict[str, list]]:
    """Run :meth:`Task.eval_step` over a prepared loader; gather across processes; compute metrics.

    ``gather_for_metrics`` drops the samples duplicated to even out the last batch across processes, so
    metrics are over exactly the split's examples. Variable-length outputs are padded with -100 first.
    """
    was_training = model.training
    model.eval()
    collected: dict[str, list] = defaultdict(list)
    start = time.perf_counter()
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        out = task.eval_step(model, batch)
        out = {k: accelerator.pad_across_processes(v, dim=1, pad_index=-100) if v.ndim > 1 else v
               for k, v in out.items()}
        out = accelerator.gather_for_metrics(out)
        for k, v in out.items():
            collected[k].extend(v.cpu().tolist())
    seconds = time.perf_counter() - start
    metrics = task.compute_metrics(dict(collected))
    n = len(next(iter(collected.values()))) if collected else 0
    metrics.update(samples=n, runtime_s=round(seconds, 3), samples_per_s=round(n / max(seconds, 1e-9), 2))
    model.train(was_training)
    return metrics, dict(collected)


# --------------------------------------------------------------------------------------------- checkpoints


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (those with a state file), oldest first."""
    found = []
    for p in Path(run_dir).glob("checkpoint-*"):
        m = _CKPT.match(p.name)
        if m and (p / STATE_FILE).exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` -> newest complete one in ``run_dir``, a path, or None."""
    if resume in ("", "none", "no", "false", "False"):
        return None
    if resume == "auto":
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            logger.info("resume=auto: no complete checkpoint in %s, starting fresh", run_dir)
            return None
        return ckpts[-1]
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"resume={resume}: not a complete nlpkit checkpoint (no {STATE_FILE}). "
                                f"Use resume=auto to pick the newest complete one in output_dir.")
    return path


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict[str, Any], keep: int) -> None:
    """``save_state`` into checkpoint-N, then write the state file last (marks it complete); prune old."""
    ckpt = run_dir / f"checkpoint-{state['global_step']}"
    accelerator.save_state(str(ckpt))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (ckpt / STATE_FILE).write_text(json.dumps(state, indent=2))
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------------------------- training


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # biases and norm weights are not decayed (the standard BERT/GPT recipe)
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is ~10x faster per step (CPU and CUDA); the HF Trainer defaults to it too
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def _better(value: float, best: float | None, greater: bool) -> bool:
    return best is None or (value > best if greater else value < best)


def _hparams(cfg_dict: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten the config into scalars that TensorBoard's hparams accept."""
    flat: dict[str, Any] = {}
    for k, v in cfg_dict.items():
        if isinstance(v, dict):
            flat.update(_hparams(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


def train_and_evaluate(task: Task, accelerator: Accelerator, run_dir: Path) -> dict[str, Any]:
    """Build, train, pick the best model, evaluate on test, save. Returns the report's results."""
    from nlpkit.config import to_dict

    cfg, tcfg = task.cfg, task.cfg.train
    set_seed(cfg.seed)
    with accelerator.main_process_first():  # the main process fetches/converts catalog assets once
        raw = task.load_data()  # first: the model may need what the data says (e.g. the label set)
        task.build_model()
    data_sizes = {k: len(v) for k, v in raw.items()}
    encoded = encode_splits(task, raw, accelerator)
    model = task.model
    if tcfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()

    sampler = EpochSampler(task.lengths(encoded["train"]), tcfg.batch_size * accelerator.num_processes,
                           cfg.seed, tcfg.group_by_length)
    # Its own generator: creating a DataLoader iterator otherwise draws from the global RNG, so a resumed
    # run (new iterator after load_state) would get different dropout masks than an uninterrupted one.
    train_dl = DataLoader(encoded["train"], batch_size=tcfg.batch_size, sampler=sampler,
                          collate_fn=task.collate, num_workers=tcfg.num_workers, drop_last=False,
                          generator=torch.Generator().manual_seed(cfg.seed))
    val_dl = eval_loader(task, encoded["validation"], tcfg.eval_batch_size, tcfg.num_workers)
    test_dl = eval_loader(task, encoded["test"], tcfg.eval_batch_size, tcfg.num_workers)
    optimizer = _optimizer(model, tcfg.lr, tcfg.weight_decay)
    model, optimizer, train_dl, val_dl, test_dl = accelerator.prepare(model, optimizer, train_dl, val_dl, test_dl)
    if tcfg.compile:
        model = torch.compile(model)

    updates_per_epoch = max(1, math.ceil(len(train_dl) / tcfg.grad_accum))
    total_updates = tcfg.max_steps if tcfg.max_steps > 0 else max(1, math.ceil(tcfg.epochs * updates_per_epoch))
    # The scheduler is stepped by hand once per real optimizer update (not prepared: a prepared scheduler
    # steps once per process), so warmup/decay lengths hold for any process count and accumulation.
    scheduler = get_scheduler(tcfg.scheduler, optimizer, num_warmup_steps=int(tcfg.warmup_ratio * total_updates),
                              num_training_steps=total_updates)
    accelerator.register_for_checkpointing(scheduler)

    state: dict[str, Any] = {"global_step": 0, "epoch": 0, "batches_in_epoch": 0, "best_metric": None,
                             "best_step": None, "evals_without_improvement": 0, "history": [],
                             "samples_seen": 0, "train_seconds": 0.0}
    ckpt = resolve_resume(cfg.resume, run_dir)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        saved = json.loads((ckpt / STATE_FILE).read_text())
        # Samples consumed this epoch are what carries over when the number of processes changes.
        saved_world = saved.get("global_batch", tcfg.batch_size * accelerator.num_processes)
        saved["batches_in_epoch"] = (saved["batches_in_epoch"] * saved_world
                                     // (tcfg.batch_size * accelerator.num_processes))
        state.update(saved)
        accelerator.print(f"Resumed from {ckpt} at update {state['global_step']} (epoch {state['epoch']})")
    state["global_batch"] = tcfg.batch_size * accelerator.num_processes

    accelerator.init_trackers(run_dir.name, config=_hparams(to_dict(cfg)))
    eval_every = tcfg.eval_every if tcfg.eval_every > 0 else updates_per_epoch
    best_dir = run_dir / "best_model"
    metric_name = tcfg.metric_for_best
    stop_reason = "completed"
    bar = tqdm(total=total_updates, initial=state["global_step"], desc="Training", unit="step",
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    start = time.perf_counter()
    run_loss, run_count = torch.zeros((), device=accelerator.device), 0

    paused = 0.0  # seconds spent evaluating/checkpointing inside the loop, left out of training throughput

    def do_eval() -> bool:
        """Evaluate, keep the best weights, checkpoint; returns True when early stopping triggers."""
        nonlocal paused
        began = time.perf_counter()
        try:
            return _do_eval()
        finally:
            paused += time.perf_counter() - began

    def _do_eval() -> bool:
        metrics, _ = evaluate_loader(task, model, val_dl, accelerator, desc="Validating")
        entry = {"step": state["global_step"], "epoch": round(state["global_step"] / updates_per_epoch, 3),
                 **{f"eval_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
        state["history"].append(entry)
        accelerator.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                        step=state["global_step"])
        if metric_name not in metrics:
            raise KeyError(f"train.metric_for_best={metric_name!r} is not a validation metric; choose one of "
                           f"{sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))}.")
        value = metrics[metric_name]
        accelerator.print(f"step {state['global_step']}: validation {metric_name}={value:.4f}")
        if _better(value, state["best_metric"], tcfg.greater_is_better):
            state.update(best_metric=value, best_step=state["global_step"], evals_without_improvement=0)
            unwrapped = accelerator.unwrap_model(model)
            weights = accelerator.get_state_dict(model)
            if accelerator.is_main_process:
                unwrapped.save_pretrained(best_dir, state_dict=weights, safe_serialization=True)
        else:
            state["evals_without_improvement"] += 1
        if tcfg.save_every <= 0:
            save_checkpoint(accelerator, run_dir, state, tcfg.keep_checkpoints)
        patience = tcfg.early_stopping_patience
        return patience > 0 and state["evals_without_improvement"] >= patience

    model.train()
    done = state["global_step"] >= total_updates
    while not done:
        sampler.use_epoch(state["epoch"])
        loader = train_dl
        if state["batches_in_epoch"]:
            loader = accelerator.skip_first_batches(train_dl, state["batches_in_epoch"])
        for batch in loader:
            with accelerator.accumulate(model):
                loss = task.loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and tcfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), tcfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            state["batches_in_epoch"] += 1
            state["samples_seen"] += len(batch["input_ids"]) * accelerator.num_processes
            run_loss += loss.detach()
            run_count += 1
            if not accelerator.sync_gradients:
                continue
            # ---- one optimizer update happened
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            state["global_step"] += 1
            bar.update(1)
            step = state["global_step"]
            if step % tcfg.log_every == 0 or step == total_updates:
                mean_loss = accelerator.reduce(run_loss, reduction="mean").item() / max(run_count, 1)
                state["history"].append({"step": step, "loss": round(mean_loss, 5),
                                         "lr": scheduler.get_last_lr()[0]})
                accelerator.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}, step=step)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                run_loss.zero_()
                run_count = 0
            stop = False
            if step % eval_every == 0 or step == total_updates:
                stop = do_eval()
                if stop:
                    stop_reason = (f"early stopping: no {metric_name} improvement in "
                                   f"{tcfg.early_stopping_patience} evaluations")
            if tcfg.save_every > 0 and step % tcfg.save_every == 0:
                began = time.perf_counter()
                state["train_seconds"] += began - start - paused
                save_checkpoint(accelerator, run_dir, state, tcfg.keep_checkpoints)
                start, paused = time.perf_counter(), 0.0
            if tcfg.stop_after_steps is not None and step >= tcfg.stop_after_steps and step < total_updates:
                stop, stop_reason = True, f"stopped after {step} updates (train.stop_after_steps)"
            if stop or step >= total_updates:
                done = True
                break
        else:
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    bar.close()
    state["train_seconds"] += time.perf_counter() - start - paused
    accelerator.wait_for_everyone()

    # Keep the best weights for the final model (load_best_model_at_end), when an evaluation chose them.
    if best_dir.exists() and state["best_step"] not in (None, state["global_step"]):
        from safetensors.torch import load_file

        shards = sorted(best_dir.glob("*.safetensors"))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_file(str(shard)))
        unwrapped = accelerator.unwrap_model(model)
        if hasattr(unwrapped, "peft_config"):  # a PEFT model saved only its adapter, under PEFT's key names
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(unwrapped, weights)
        else:
            unwrapped.load_state_dict(weights, strict=False)
        accelerator.print(f"Loaded the best model (update {state['best_step']}, "
                          f"{metric_name}={state['best_metric']:.4f})")

    finished = stop_reason == "completed" or stop_reason.startswith("early")
    results: dict[str, Any] = {"data_sizes": data_sizes, "stop_reason": stop_reason, "state": state,
                               "total_updates": total_updates, "updates_per_epoch": updates_per_epoch}
    train_seconds = state["train_seconds"]
    results["training"] = {
        "updates": state["global_step"], "samples": state["samples_seen"], "runtime_s": round(train_seconds, 2),
        "samples_per_s": round(state["samples_seen"] / max(train_seconds, 1e-9), 2),
        "processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device), "effective_batch_size": state["global_batch"] * tcfg.grad_accum,
    }
    if not finished:
        return results

    results["validation"], _ = evaluate_loader(task, model, val_dl, accelerator, desc="Validating")
    results["test"], test_outputs = evaluate_loader(task, model, test_dl, accelerator, desc="Testing")
    results["test_outputs"] = test_outputs
    save_model(task, accelerator, model, run_dir / "model")
    if accelerator.is_main_process:
        shutil.rmtree(best_dir, ignore_errors=True)
    return results


def save_model(task: Task, accelerator: Accelerator, model: torch.nn.Module, target: Path) -> None:
    """Save the final model atomically: write ``target.tmp``, then rename (no half-written model)."""
    weights = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        task.save(tmp, state_dict=weights)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    accelerator.wait_for_everyone()
