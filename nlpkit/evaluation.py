"""Evaluate a trained run or any model on a data split, with the same code the training loop uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nlpkit.artifacts import saved_task
from nlpkit.errors import UsageError
from nlpkit.registry import get_task
from nlpkit.report import write_report
from nlpkit.task import RunResults, Task
from nlpkit.training import trainer_for

__all__ = ["evaluate_model", "evaluate_run", "write_evaluation_report"]


def _whole_source(source: str, split: str) -> dict[str, Any]:
    """Overrides that score ``split`` of ``source`` whole: the named split when the source has it, else the
    only split of a single file or folder (never a seeded slice of it)."""
    from nlpkit.data import load_source

    raw = {"train": None} if "," in source else load_source(source)[0]  # "a.en,a.fr": aligned text files
    if split in raw:
        name = split
    elif len(raw) == 1:
        name = next(iter(raw))
    else:
        raise UsageError(f"{source} has no split {split!r} (it has {', '.join(raw)}): pass --split NAME.")
    # every split name points at the scored one, so nothing is held out or sampled
    return {"data.source": source, "data.train_split": name, "data.validation_split": name,
            "data.test_split": name, "data.max_train_samples": None, "data.max_eval_samples": None}


def evaluate_run(run_or_model: str, task: str | None = None, data: str | None = None, split: str = "test",
                 **overrides: Any) -> tuple[Task, RunResults]:
    """The task (configured as the run was) and a :class:`RunResults` holding the metrics of ``split``.

    With ``data``, ``split`` of that source is scored whole (a single file: all of it); without, ``split`` of
    the run's own data (same source, columns and seed, so the same split). The saved model's labels are kept:
    labels it does not know are an error naming them.
    """
    from accelerate import Accelerator

    task_name = task or saved_task(run_or_model)
    if task_name is None:
        raise UsageError(f"Cannot tell the task of {run_or_model!r}; pass task=...")
    cls = get_task(task_name)
    layers = {**(_whole_source(data, split) if data else {}), **overrides}
    t = cls.from_saved(run_or_model, **layers)
    metrics, outputs = trainer_for(cls).evaluate_split(t, "test" if data else split, Accelerator())
    sizes = {split: metrics.get("samples")}
    return t, RunResults(test=metrics, test_outputs=outputs, data_sizes=sizes, stop_reason="evaluation only")


def write_evaluation_report(run_or_model: str | Path, task: Task, results: RunResults,
                            out_dir: str | Path | None = None, data: str | None = None, split: str = "test") -> Path:
    """Write the report of :func:`evaluate_run`'s results into ``out_dir`` (default
    ``RUN/eval-<data>-<split>``, inside the run); returns the folder.

    A report folder inside the run is written as part of the run (``root``), so a link planted there (the folder
    itself, a ``model/`` or a report file in it) is refused rather than written through: the run may be
    someone else's.
    """
    run = Path(run_or_model)
    out = Path(out_dir) if out_dir is not None else run / f"eval-{Path(data or 'own').stem}-{split}"
    root = run if Path(os.path.abspath(out)).is_relative_to(os.path.abspath(run)) else out
    write_report(out, task, results, root=root)
    return out


def evaluate_model(run_or_model: str, task: str | None = None, data: str | None = None, split: str = "test",
                   out_dir: str | Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Metrics of ``run_or_model`` on ``split`` of its own data or of ``data`` (see :func:`evaluate_run`).

    With ``out_dir``, a report folder is written there too (report.json, report.md, the task's plots).
    """
    t, results = evaluate_run(run_or_model, task=task, data=data, split=split, **overrides)
    if out_dir is not None:
        from accelerate import PartialState

        if PartialState().is_main_process:
            write_evaluation_report(run_or_model, t, results, out_dir)
    return results.test or {}
