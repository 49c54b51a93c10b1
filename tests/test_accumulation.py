"""Gradient accumulation weighs every target token the same: 4 micro-batches of 2 give the gradients of one batch
of 8, on variable-length data, for a causal LM (prompt/response) and a seq2seq model (translation).

The loop counts the target tokens of a whole update first (over its micro-batches and processes) and divides every
micro-batch's summed loss by that count (:meth:`nlpkit.training.Loop.backward_window`). Each test also computes
the gradients the old way (the mean loss of each micro-batch, averaged over the window, what
``accelerator.accumulate`` + ``model(**batch).loss`` gives) and checks that they do *not* match batch 8 on the
same data, so the test can fail: on the variable-length fixtures below that old way is off by several percent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from tiny_generation import generation_overrides, tiny_llama
from tiny_translation import pairs, translation_overrides, write_folder

from nlpkit.config import load_config
from nlpkit.registry import get_task
from nlpkit.training import Loop

TOLERANCE = 1e-5  # relative gradient difference allowed for "equal" (float32, sums in another order)


def _loop(task_name: str, overrides: dict, run_dir: Path) -> Loop:
    """A set-up loop (data encoded, model built) whose model has dropout off, so both ways see one function."""
    cls = get_task(task_name)
    task = cls(load_config(cls.Config, None, overrides), run_dir=run_dir)
    # The runner's accelerator for train.grad_accum=4: accelerate divides by 4 in backward, the loop undoes it.
    loop = Loop(task, Accelerator(cpu=True, gradient_accumulation_steps=4), run_dir)
    loop.setup()
    loop.model.eval()
    return loop


def _micro_batches(loop: Loop) -> tuple[list[dict], dict]:
    """Eight training examples as 4 micro-batches of 2 (the two longest together, then shorter pairs, so their
    target counts differ a lot), and the same eight as one batch."""
    ds = loop.loaders["train"].dataset
    feats = sorted((ds[i] for i in range(len(ds))), key=lambda f: -len(f["input_ids"]))
    eight = feats[:2] + feats[-6:]
    return [loop.task.collate(eight[i:i + 2]) for i in range(0, 8, 2)], loop.task.collate(eight)


def _grads(loop: Loop, window: list[dict], old_way: bool = False) -> dict[str, torch.Tensor]:
    loop.model.zero_grad(set_to_none=True)
    if old_way:  # per-micro-batch mean, averaged over the window
        for batch in window:
            (loop.task.loss(loop.model, batch) / len(window)).backward()
    else:
        loop.backward_window(window)
    return {n: p.grad.detach().clone() for n, p in loop.model.named_parameters() if p.grad is not None}


def _relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest ``|a - b| / |b|`` over the parameters (norms per parameter tensor).

    Gradients that are zero in exact arithmetic (attention key biases: softmax ignores a constant shift) hold
    rounding noise of ~1e-9; a gradient is measured against at least a thousandth of the largest one.
    """
    assert a.keys() == b.keys() and a
    floor = 1e-3 * max(g.norm() for g in b.values())
    return max(((a[k] - b[k]).norm() / torch.maximum(b[k].norm(), floor)).item() for k in a)


def _check(loop: Loop) -> None:
    window, batch8 = _micro_batches(loop)
    counts = [int(loop.task.loss_items(b)) for b in window]
    assert max(counts) > 2 * min(counts), counts  # variable-length: the micro-batches carry different token counts
    assert sum(counts) == int(loop.task.loss_items(batch8))
    reference = _grads(loop, [batch8])
    accumulated = _grads(loop, window)
    assert _relative_difference(accumulated, reference) < TOLERANCE
    # The old per-micro-batch mean gives other gradients on the same data: this test fails on the old code.
    assert _relative_difference(_grads(loop, window, old_way=True), reference) > 100 * TOLERANCE
    # ... and with batch 8 in one window the loss is the per-token mean, as model(**batch).loss is
    loss8 = loop.task.loss(loop.model, batch8, num_items_in_batch=loop.task.loss_items(batch8))
    assert torch.allclose(loss8, loop.task.loss(loop.model, batch8), rtol=1e-6)


def _prompt_response_data(folder: Path) -> Path:
    """Prompt/response pairs whose responses run from 1 to 36 words."""
    words = ["my", "lord", "the", "good", "night", "sweet", "love", "thou", "art", "a", "fair", "day"]
    rows = [{"prompt": f"Q: {words[i % 12]}\nA:", "response": " " + " ".join(words[: 1 + (i * 5) % 12] * (1 + i % 3))}
            for i in range(24)]
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_causal_lm_accumulation_matches_one_large_batch(tmp_path: Path,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    _prompt_response_data(tmp_path / "pr")
    overrides = generation_overrides(tiny_llama(tmp_path_factory), tmp_path / "pr", tmp_path / "run",
                                     **{"data.split_by": None, "train.grad_accum": 4, "train.batch_size": 2})
    _check(_loop("generation", overrides, tmp_path / "run"))


def test_seq2seq_accumulation_matches_one_large_batch(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", pairs(32, 1), pairs(8, 2), pairs(8, 3))
    overrides = translation_overrides(data, tmp_path / "run", **{"train.grad_accum": 4, "train.batch_size": 2})
    _check(_loop("translation", overrides, tmp_path / "run"))


@pytest.mark.multiproc
def test_two_processes_weigh_every_token_the_same(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """2 gloo processes x 2 micro-batches of 2 (one rank with far more tokens) == 1 process with batch 8."""
    model, data, out = tiny_llama(tmp_path_factory), _prompt_response_data(tmp_path / "pr"), tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29519",
           str(Path(__file__).parent / "scripts" / "ddp_accumulation.py"), str(model), str(data), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads((out / "ddp_accumulation.json").read_text())
    assert check["processes"] == 2
    low, high = sorted(check["tokens_per_rank"])
    assert high > 2 * low
    assert check["relative_difference"] < TOLERANCE
    assert check["old_relative_difference"] > 100 * TOLERANCE  # the old loop's per-micro-batch mean differs
