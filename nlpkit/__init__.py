"""nlpkit: fine-tune, evaluate, report and serve NLP models on Hugging Face libraries.

Python entry points::

    import nlpkit
    report = nlpkit.train("sentiment", **{"train.epochs": 1, "data.max_train_samples": 2000})
    clf = nlpkit.pipeline(report["run_dir"])
    clf(["great film", "dull"], batch_size=64)
"""

from __future__ import annotations

from typing import Any

from nlpkit.pipeline import Pipeline, pipeline
from nlpkit.registry import available_tasks, get_task, register_task
from nlpkit.task import Task

__version__ = "0.1.0"
__all__ = ["Pipeline", "Task", "available_tasks", "evaluate", "get_task", "pipeline", "register_task", "train"]


def train(task: str, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Train and evaluate ``task``; returns the report (also written to the run folder).

    ``preset`` is one of the task's preset names (``nlpkit presets``) or a yaml file. ``overrides`` use dotted
    keys: ``nlpkit.train("sentiment", "quick", **{"train.lr": 3e-5}, output_dir="runs/a")``.
    """
    from nlpkit.config import load_config
    from nlpkit.registry import find_preset
    from nlpkit.runner import run

    path = find_preset(task, preset) if preset is not None else None
    cfg = load_config(get_task(task).Config, path, {**overrides, "task": task})
    return run(cfg)


def evaluate(run_or_model: str, task: str | None = None, data: str | None = None, split: str = "test",
             out_dir: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Evaluate a trained run or model; returns the metrics.

    With no ``data``, ``split`` of the run's own data (same source, columns and seed, so the same split). With
    ``data`` (a catalog name, file, folder or hub id), ``split`` of that source scored whole: a single file is
    scored entirely. ``out_dir`` also writes a report folder (report.json, report.md, plots).
    """
    from nlpkit.evaluation import evaluate_model

    return evaluate_model(run_or_model, task=task, data=data, split=split, out_dir=out_dir, **overrides)
