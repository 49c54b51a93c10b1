"""Evaluate a trained run or any model on a data split, with the same code the training loop uses."""

from __future__ import annotations

from typing import Any

from nlpkit.artifacts import saved_task
from nlpkit.errors import UsageError
from nlpkit.registry import get_task
from nlpkit.training import trainer_for

__all__ = ["evaluate_model"]


def evaluate_model(run_or_model: str, task: str | None = None, data: str | None = None, split: str = "test",
                   **overrides: Any) -> dict[str, Any]:
    """Metrics of ``run_or_model`` on ``split`` (train/validation/test) of its own data or of ``data``.

    The task is configured as the run was (its saved config: data source, columns, seed => the same split)
    with ``data`` and ``overrides`` on top; the saved model's labels are kept.
    """
    from accelerate import Accelerator

    task_name = task or saved_task(run_or_model)
    if task_name is None:
        raise UsageError(f"Cannot tell the task of {run_or_model!r}; pass task=...")
    cls = get_task(task_name)
    t = cls.from_saved(run_or_model, **{**({"data.source": data} if data else {}), **overrides})
    return trainer_for(cls).evaluate_split(t, split, Accelerator())
