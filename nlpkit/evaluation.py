"""Evaluate a trained run or any model on a data split, with the same code the training loop uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpkit.config import load_config
from nlpkit.modeling import resolve_model, saved_task
from nlpkit.registry import get_task
from nlpkit.task import TASK_FILE


def evaluate_model(run_or_model: str, task: str | None = None, data: str | None = None, split: str = "test",
                   **overrides: Any) -> dict[str, Any]:
    """Metrics of ``run_or_model`` on ``split`` (train/validation/test) of its own data or of ``data``."""
    from accelerate import Accelerator

    from nlpkit.training import encode_splits, eval_loader, evaluate_loader

    task_name = task or saved_task(run_or_model)
    if task_name is None:
        raise ValueError(f"Cannot tell the task of {run_or_model!r}; pass task=...")
    model_path = resolve_model(run_or_model)
    saved: dict[str, Any] = {}
    descriptor = Path(model_path) / TASK_FILE
    if descriptor.exists():  # reuse the run's data config (source, columns, seed => the same split)
        saved = json.loads(descriptor.read_text())["config"]
        saved.pop("labels", None)
    cls = get_task(task_name)
    layers = {**({"data.source": data} if data else {}), **overrides, "model": model_path, "task": task_name}
    cfg = load_config(cls.Config, saved or None, layers)
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be train, validation or test, not {split!r}")
    accelerator = Accelerator()
    t = cls(cfg)
    t.build_model()  # first: the model's label set is the one to map the data onto
    own = t.evaluate_split(split)  # tasks with their own evaluation (word2vec's benchmarks) stop here
    if own is not None:
        return own
    raw = t.load_data()
    encoded = encode_splits(t, raw, accelerator)
    model, loader = accelerator.prepare(t.model, eval_loader(t, encoded[split], cfg.train.eval_batch_size))
    metrics, _ = evaluate_loader(t, model, loader, accelerator, desc=f"Evaluating {split}")
    return metrics
