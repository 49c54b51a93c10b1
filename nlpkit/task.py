"""The task plugin contract.

A task plugin is one class, registered with :func:`nlpkit.registry.register_task`, that says how its data is
read and encoded, how its model is built, how a batch is scored and predicted, and which metrics apply.
Everything else (training loop, evaluation across processes, checkpoints, reports, pipelines, CLI) is shared.

Transformer tasks implement the methods below and inherit :meth:`Task.run`, which drives the shared
accelerate loop in :mod:`nlpkit.training`. A task that trains some other way (word2vec with gensim) overrides
:meth:`Task.run` and still uses the shared data, report and pipeline parts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from nlpkit.config import RunConfig

if TYPE_CHECKING:
    from accelerate import Accelerator
    from datasets import DatasetDict

TASK_FILE = "nlpkit_task.json"  # written next to a saved model: which task and config made it


class Task:
    """Base class for task plugins. Subclasses set ``Config`` and implement the data/model hooks."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[RunConfig]] = RunConfig
    #: Name of the metric (as returned by :meth:`compute_metrics`) reported first and used for best-model.
    main_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False
    #: Hub pipeline tag for the model card (``text-classification``, ``translation``, ...).
    hub_task_type: ClassVar[str] = ""
    #: The library that loads the saved model (the model card's ``library_name``).
    hub_library: ClassVar[str] = "transformers"
    #: An input shown in the model card's usage snippet.
    usage_example: ClassVar[Any] = "Hello world"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.model: Any = None
        self.tokenizer: Any = None
        #: Facts found while loading data (rows skipped and why); they end up in the report.
        self.data_notes: dict[str, Any] = {}

    # ------------------------------------------------------------------ data
    def load_data(self) -> DatasetDict:
        """Raw ``train``/``validation``/``test`` splits, checked and cleaned."""
        raise NotImplementedError

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        """Tokenize a batch of raw rows (``datasets.map(batched=True)``); also used by the pipeline."""
        raise NotImplementedError

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad a list of encoded examples into a batch (dynamic padding)."""
        raise NotImplementedError

    def lengths(self, encoded: Any) -> list[int]:
        """Size of every encoded example of a split, for length-grouped and length-sorted batches."""
        return [len(ids) for ids in encoded["input_ids"]]

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        """Set ``self.model`` and ``self.tokenizer`` from ``cfg.model``."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of a batch."""
        return model(**batch).loss

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-example tensors (first dim = batch) for :meth:`compute_metrics`; gathered across processes."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        """Metrics from gathered :meth:`eval_step` outputs. Scalars are logged; other values go to the report."""
        raise NotImplementedError

    def evaluate_split(self, split: str) -> dict[str, Any] | None:
        """Metrics of the loaded model on ``split``, for a task that does not evaluate through the shared loop
        (word2vec scores fixed benchmarks). ``None`` (the default): :func:`nlpkit.evaluate` uses the shared
        loop (``load_data`` -> ``eval_step`` -> ``compute_metrics``)."""
        return None

    # ------------------------------------------------------------------ inference
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[Any]:
        """Predict for raw inputs (what :func:`nlpkit.pipeline` calls)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save model + tokenizer (standard HF layout) and the task descriptor.

        ``state_dict`` is the full set of weights when they are sharded across processes (FSDP).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, state_dict=state_dict, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        from nlpkit.config import to_dict

        (directory / TASK_FILE).write_text(json.dumps({"task": self.name, "config": to_dict(self.cfg)}, indent=2))

    @classmethod
    def from_pretrained(cls, model: str, **overrides: Any) -> Task:
        """A task ready for :meth:`predict`, its model loaded from ``model`` (run folder, path or id)."""
        from nlpkit.config import load_config
        from nlpkit.modeling import resolve_model

        # A model saved by nlpkit carries its run's config (max length, decoding options, ...): start from it.
        descriptor = Path(resolve_model(model)) / TASK_FILE
        saved = json.loads(descriptor.read_text())["config"] if descriptor.exists() else None
        cfg = load_config(cls.Config, saved, {"model": model, "task": cls.name, **overrides})
        task = cls(cfg)
        task.build_model()
        task.model.eval()
        return task

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
        """Task-specific report sections as (title, markdown); may also write plots into ``run_dir``."""
        return []

    # ------------------------------------------------------------------ run
    def run(self, accelerator: Accelerator, run_dir: Path) -> dict[str, Any]:
        """Train and evaluate; return the results that go into the report."""
        from nlpkit.training import train_and_evaluate

        return train_and_evaluate(self, accelerator, run_dir)
