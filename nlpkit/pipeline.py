"""``nlpkit.pipeline(...)``: batched inference from a trained run, a model folder or a model id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpkit.artifacts import saved_task
from nlpkit.config import model_name
from nlpkit.errors import UsageError
from nlpkit.loader import place
from nlpkit.registry import available_tasks, get_task
from nlpkit.task import Task

__all__ = ["Pipeline", "guess_task", "pipeline"]


class Pipeline:
    """A callable predictor: ``pipe(inputs, batch_size=None, **options)``.

    A single input gives a single result; a list gives a list, in the input order.
    """

    def __init__(self, task: Task):
        self.task = task

    @property
    def model(self) -> Any:
        return self.task.model

    def __call__(self, inputs: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        """Predict ``inputs`` (one input, or a list of them) in length-sorted batches of ``batch_size``
        (default: the task's, 64; generation's is its ``generate.batch_size``, 16).

        ``kwargs`` are the task's own options (an unknown one is a :class:`~nlpkit.errors.UsageError`), e.g.
        sentiment's ``top_k``, the ``generate.*`` decoding options of the tasks that generate, word2vec's ``mode``;
        each task's ``predict`` (in the task guides) lists its options and says what a result holds.
        """
        single = not isinstance(inputs, (list, tuple))
        if batch_size is not None:  # else each task's own default (generation's differs)
            kwargs["batch_size"] = batch_size
        outputs = self.task.predict([inputs] if single else list(inputs), **kwargs)
        return outputs[0] if single else outputs

    def __repr__(self) -> str:
        return f"nlpkit.Pipeline(task={self.task.name!r}, model={model_name(self.task.cfg)!r})"


def guess_task(model: str) -> str | None:
    """The task of a model folder: its nlpkit descriptor, else what the tasks declare they recognise
    (``Task.architectures`` in ``config.json``, ``Task.saved_files`` markers)."""
    task = saved_task(model)
    if task:
        return task
    folder = Path(model).expanduser()
    config = folder / "config.json"
    archs = (json.loads(config.read_text()).get("architectures") or []) if config.is_file() else []
    for name in available_tasks():
        cls = get_task(name)
        if any(arch.endswith(suffix) for arch in archs for suffix in cls.architectures):
            return name
        if any((folder / marker).exists() or (folder / "model" / marker).exists() for marker in cls.saved_files):
            return name
    return None


def pipeline(task_or_model: str, model: str | None = None, device: str | None = None, dtype: str | None = None,
             threads: int | None = None, **overrides: Any) -> Pipeline:
    """Load a predictor.

    ``pipeline("outputs/<run>")`` loads a trained run (its task is recorded in the run);
    ``pipeline("sentiment", model="<path or hub id>")`` names the task for any compatible model.
    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) defaults to the first GPU if there is one.
    ``dtype`` (``"bfloat16"``, ``"float16"``, ``"float32"``, ``"auto"``) is the precision the weights are loaded
    in (``model.dtype``; default: the run's, float32 unless it was trained otherwise).
    A LoRA run's ``model/`` (an adapter) loads its base model, then the adapter.
    A folder written by ``nlpkit export`` runs on ONNX Runtime (CPU), ``threads`` intra-op threads (default:
    torch's), through the same ``predict`` as the PyTorch model.
    ``overrides`` are config keys (e.g. ``**{"data.max_length": 256}``).
    """
    if model is None:
        if task_or_model in available_tasks():
            model = model_name(get_task(task_or_model).Config())  # the task's default model
            task_name = task_or_model
        else:
            model = task_or_model
            task_name = guess_task(model)
            if task_name is None:
                raise UsageError(f"Cannot tell which task {model!r} is for; name it: "
                                 f"nlpkit.pipeline(<task>, model={model!r}) with a task from {available_tasks()}.")
    else:
        task_name = task_or_model
    if dtype is not None:
        overrides["model.dtype"] = dtype
    # the task's build_model opens whatever the folder holds (nlpkit.loader.load: weights, an adapter on its
    # base, an ONNX export); place() puts it on its device, an export with its threads
    task = get_task(task_name).from_pretrained(model, **overrides)
    place(task.model, device, threads)
    return Pipeline(task)
