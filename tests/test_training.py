"""The shared training loop: real 2-process data parallelism, resume, accumulation and schedule, early stop."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sentiment_overrides
from safetensors.torch import load_file

import nlpkit

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.mark.multiproc
def test_two_process_data_parallel_on_cpu(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """2 real gloo processes: both ranks end with identical weights; metrics cover exactly the split."""
    out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           str(SCRIPTS / "ddp_sentiment.py"), str(tiny_bert), str(sentiment_data), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["processes"] == 2
    first, second = check["fingerprints"]
    assert first == pytest.approx(second, rel=1e-6, abs=1e-6), "ranks diverged: gradients were not synchronised"
    # 40 validation / 50 test rows with eval batch 7 over 2 ranks: uneven tails, yet no duplicates or drops
    assert check["validation"]["samples"] == 40
    assert check["test"]["samples"] == 50
    # 160 rows / (8 per rank x 2 ranks) = 10 batches per rank, accumulation 2 -> 5 updates per epoch, 8 epochs
    assert check["updates_per_epoch"] == 5 and check["total_updates"] == 40
    assert check["state"]["global_step"] == 40
    lrs = [h["lr"] for h in check["state"]["history"] if "lr" in h]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12), "linear decay must end at 0 after exactly total updates"
    assert check["test"]["accuracy"] >= 0.8
    assert (out / "checkpoint-40" / "trainer_state.json").exists()


@pytest.mark.parametrize("save_every", [4, 0], ids=["every-4-updates", "at-evaluations"])
def test_resume_auto_matches_an_uninterrupted_run(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                                  save_every: int) -> None:
    common = {"train.max_steps": 10, "train.save_every": save_every, "train.eval_every": 5,
              "train.keep_checkpoints": 5}
    full = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "full", **common))
    part = tmp_path / "part"
    first = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, part, **common,
                                                            **{"train.stop_after_steps": 6}))
    assert first["stop_reason"].startswith("stopped after 6")
    assert not (part / "model").exists(), "an interrupted run must not leave a final model"
    # a half-written checkpoint (no state file) must be ignored by resume=auto
    (part / "checkpoint-99").mkdir()
    resumed = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, part, **common,
                                                              resume="auto"))
    assert resumed["training"]["updates"] == 10
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(part / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-6, f"{k} differs after resume"
    assert resumed["test"]["accuracy"] == full["test"]["accuracy"]
    # the report counts the whole run, not only the part after the resume
    for key in ("samples", "tokens"):
        assert resumed["training"][key] == full["training"][key], key


def test_gradient_accumulation_schedule_and_effective_batch(tiny_bert: Path, sentiment_data: Path,
                                                            tmp_path: Path) -> None:
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "acc", **{
        "train.grad_accum": 4, "train.epochs": 2.0, "train.warmup_ratio": 0.25, "train.log_every": 1}))
    batches_per_epoch = math.ceil(160 / 8)
    assert report["training"]["updates"] == 2 * math.ceil(batches_per_epoch / 4)
    assert report["training"]["effective_batch_size"] == 32
    lrs = [h["lr"] for h in report["history"] if "lr" in h]
    peak = max(lrs)
    assert lrs.index(peak) == int(0.25 * report["training"]["updates"]) - 1  # warmup ends on schedule
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_early_stopping_and_best_model(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """With a learning rate too high to improve, patience 2 stops early and the best checkpoint is kept."""
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "es", **{
        "train.epochs": 30.0, "train.eval_every": 2, "train.early_stopping_patience": 2,
        "train.metric_for_best": "loss", "train.greater_is_better": False}))
    assert report["stop_reason"].startswith("early stopping")
    assert report["training"]["updates"] < 30 * 20
    best = report["best"]
    evals = [h for h in report["history"] if "eval_loss" in h]
    assert best["value"] == pytest.approx(min(h["eval_loss"] for h in evals))
    # the final model is the best one: its validation loss equals the best recorded
    assert report["validation"]["loss"] == pytest.approx(best["value"], rel=1e-4)


def test_unknown_metric_for_best_is_a_clear_error(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    from nlpkit.errors import ConfigError

    with pytest.raises(ConfigError, match="metric_for_best='acc'.*accuracy"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "x", **{
            "train.max_steps": 2, "train.metric_for_best": "acc"}))
