"""The task contract: what a task plugin implements, and the typed values that flow between its hooks.

A task plugin is one :class:`Task` subclass. Every caller (training, :func:`nlpkit.evaluate`, the pipeline)
drives its hooks in the same order::

    data = task.load_data()          # -> Data: raw train/validation/test splits + DataInfo (labels, ...)
    task.load_model(data.info)       # -> build_model(info): model + tokenizer, from what the data said
    task.encode / task.collate       # tokenize and pad (same code for training and inference)
    task.loss / task.eval_step       # a training loss; per-example evaluation outputs
    task.compute_metrics(outputs)    # metrics from the gathered outputs
    task.predict(inputs)             # what nlpkit.pipeline(...) calls
    task.save(directory)             # standard Hugging Face layout + the nlpkit_task.json descriptor

The pipeline skips ``load_data``: a saved model's :class:`DataInfo` comes back from its descriptor.

Which hooks a plugin must implement depends on its trainer: the shared accelerate loop
(:class:`nlpkit.training.Loop`, the default) needs the data, model and evaluation hooks; a task that trains
some other way (word2vec with gensim) names its own trainer class in :attr:`Task.trainer`, and the registry
checks the hooks that trainer requires when the plugin is registered, naming any that are missing.

Extra behaviour around training (before/after measurements, LoRA adapters, early stopping, trackers) plugs
into the loop's named events through :meth:`Task.callbacks` (see :mod:`nlpkit.callbacks`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from nlpkit.artifacts import TASK_FILE, Descriptor, read_descriptor, write_descriptor
from nlpkit.config import RunConfig, literal, load_config, to_dict
from nlpkit.errors import ConfigError, ModelNotFoundError, UnsafeFileError, UsageError

if TYPE_CHECKING:
    import argparse

    import fastapi
    import gradio
    import pyarrow as pa
    from accelerate import Accelerator
    from datasets import DatasetDict

    from nlpkit.callbacks import Callback
    from nlpkit.onnx_runtime import ExportSpec
    from nlpkit.pipeline import Pipeline
    from nlpkit.serve.app import Server

__all__ = ["Data", "DataInfo", "RunResults", "Task", "Trainer"]


# --------------------------------------------------------------------------------------------- typed values


@dataclass
class DataInfo:
    """What :meth:`Task.load_data` learned that :meth:`Task.build_model` needs.

    Saved in the model descriptor, so a reloaded model gets the same values back. Tasks subclass it to add
    their own fields (e.g. translation's languages and the texts its tokenizer is trained on); fields named in
    :attr:`transient` are not saved.
    """

    #: Label names in id order (classification tasks), else None.
    labels: list[str] | None = None
    #: Fields not written to the descriptor (large or only useful while training).
    transient: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The saved form (JSON-able), without the transient fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.transient}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DataInfo:
        """Rebuild from :meth:`to_dict` output; unknown keys (from another version) are ignored. A value of the
        wrong kind (``labels`` as a string, not a list) raises a ``TypeError`` naming the key."""
        import typing

        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in (values or {}).items() if k in names}
        for key, value in kept.items():
            if not _fits(value, hints.get(key, Any)):
                raise TypeError(f"`info.{key}` is {value!r}, expected {_describe(hints.get(key, Any))}")
        return cls(**kept)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a simple annotation (None, str, int, float, bool, list[X], dict, Optional, Union,
    Any); anything else is not checked."""
    import types
    import typing

    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, int, bool):
        return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list) and (not args or all(_fits(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _describe(hint: Any) -> str:
    """An annotation in words, for the error of :meth:`DataInfo.from_dict`."""
    return str(hint).replace("typing.", "").replace("NoneType", "None")


@dataclass
class Data:
    """What :meth:`Task.load_data` returns."""

    #: ``train``/``validation``/``test`` splits, checked and cleaned, with the columns ``encode`` reads.
    splits: DatasetDict
    #: What the model needs to know about the data.
    info: DataInfo = field(default_factory=DataInfo)
    #: Facts for the report (rows skipped and why, the detected format, ...).
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResults:
    """Everything a run produced, shared by the trainer, the callbacks, the report and the plugins."""

    #: Examples per split (or the trainer's own sizes: texts, sentences, words).
    data_sizes: dict[str, Any] = field(default_factory=dict)
    #: Facts for the report: the data's notes plus what callbacks add (e.g. trainable parameters).
    notes: dict[str, Any] = field(default_factory=dict)
    #: Updates, samples, tokens, seconds, throughput, processes, device, precision.
    training: dict[str, Any] = field(default_factory=dict)
    #: Training-loss and validation entries over updates (the learning curve).
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The best validation value of ``train.metric_for_best`` and its update.
    best_value: float | None = None
    best_step: int | None = None
    #: ``completed``, ``early stopping: ...`` or ``stopped after N updates ...``.
    stop_reason: str = "completed"
    #: Final metrics (None when the run stopped before its end).
    validation: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    #: Per-example outputs of the test evaluation (for the task's report sections).
    test_outputs: dict[str, list] = field(default_factory=dict)
    #: Task and callback results that go into report.json as top-level keys (e.g. ``baseline``, ``samples``).
    extra: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float | None = None

    @property
    def finished(self) -> bool:
        """Whether the run reached its end (final evaluation done, model saved)."""
        return self.test is not None


class Trainer(Protocol):
    """How a task is trained and evaluated. :class:`nlpkit.training.Loop` is the default implementation."""

    #: Task hooks this trainer calls; a plugin missing one fails at registration.
    required_hooks: ClassVar[tuple[str, ...]]

    def __init__(self, task: Task, accelerator: Accelerator, run_dir: Path) -> None: ...

    def fit(self) -> RunResults:
        """Train, evaluate on validation and test, save the model into ``run_dir/model``."""
        ...

    @classmethod
    def evaluate_split(cls, task: Task, split: str, accelerator: Accelerator) -> tuple[dict[str, Any], dict[str, list]]:
        """Metrics and per-example outputs of the task's model (built from its config) on ``split`` (what
        ``nlpkit.evaluate`` runs)."""
        ...


def _unsafe_pickle(name: str | None, err: Exception) -> UnsafeFileError:
    """The one-line refusal of a model folder whose pickled weights (``pytorch_model.bin``, ``*.pt``) hold more
    than tensors: torch's weights-only loader refused them, and nlpkit never unpickles them any other way."""
    folder = Path(str(name)).expanduser() if name else None
    files = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")) \
        if folder is not None and folder.is_dir() else []
    where = f"{folder}/{files[0]}" if len(files) == 1 else f"{folder} ({', '.join(files)})" if files else str(name)
    reason = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln),
                  str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    return UnsafeFileError(f"Refusing to load {where}: a Python pickle that holds more than tensors, and unpickling "
                           f"it could run code its author put in it (torch's weights-only loader: {reason}). Load "
                           f"only models you trust, saved as safetensors (model.safetensors).")


# --------------------------------------------------------------------------------------------- the contract


class Task:
    """Base class for task plugins. Subclasses set :attr:`Config` and implement the hooks.

    Required hooks (checked at registration; the trainer may require more): :meth:`load_data`,
    :meth:`build_model`, :meth:`predict`. The shared loop also needs :meth:`encode`, :meth:`collate`,
    :meth:`eval_step` and :meth:`compute_metrics`.
    """

    #: The registered name (set by the registry).
    name: ClassVar[str] = ""
    #: The config schema: a :class:`~nlpkit.config.RunConfig` subclass with the task's defaults.
    Config: ClassVar[type[RunConfig]] = RunConfig
    #: The :class:`DataInfo` subclass the task's ``load_data`` returns (rebuilt from saved descriptors).
    Info: ClassVar[type[DataInfo]] = DataInfo
    #: The trainer class (None: the shared accelerate loop, :class:`nlpkit.training.Loop`).
    trainer: ClassVar[type[Trainer] | None] = None
    #: Hooks every task must implement, whatever its trainer.
    required_hooks: ClassVar[tuple[str, ...]] = ("load_data", "build_model", "predict")
    #: Hub pipeline tag for the model card (``text-classification``, ``translation``, ...).
    hub_task_type: ClassVar[str] = ""
    #: The library that loads the saved model (the model card's ``library_name``).
    hub_library: ClassVar[str] = "transformers"
    #: An input shown in the model card's usage snippet.
    usage_example: ClassVar[Any] = "Hello world"
    #: Name of the output column of ``nlpkit predict`` when a prediction is not a dict (``translation``, ...).
    prediction_name: ClassVar[str] = "prediction"
    #: Endings of transformers architecture names this task serves (``ForSequenceClassification``), so
    #: ``nlpkit.pipeline(folder)`` can tell the task of a plain model folder.
    architectures: ClassVar[tuple[str, ...]] = ()
    #: File names whose presence in a folder marks a model of this task (for folders without config.json).
    saved_files: ClassVar[tuple[str, ...]] = ()
    #: The scalar validation metrics :meth:`compute_metrics` returns: ``train.metric_for_best`` must name one
    #: (checked by :meth:`check_config` before a run starts). Empty: not checked (metrics known only later).
    metric_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: RunConfig, *, run_dir: str | Path | None = None, saved: DataInfo | None = None):
        """``run_dir``: the run folder while training (None otherwise). ``saved``: the :class:`DataInfo` of a
        model being reloaded (from its descriptor), which ``load_data`` must honour (e.g. its label ids)."""
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.saved_info = saved
        self.info: DataInfo | None = None
        self.model: Any = None
        self.tokenizer: Any = None

    # ------------------------------------------------------------------ config
    @property
    def main_metric(self) -> str:
        """The metric that picks the best model and is reported first (``train.metric_for_best``)."""
        return self.cfg.train.metric_for_best

    @property
    def greater_is_better(self) -> bool:
        return self.cfg.train.greater_is_better

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Options only the task can judge, checked before a run writes or loads anything: by default that
        ``train.metric_for_best`` is one of :attr:`metric_names` (a :class:`~nlpkit.errors.ConfigError` listing
        them), instead of failing at the first evaluation after training."""
        name = cfg.train.metric_for_best if hasattr(cfg, "train") else None
        if cls.metric_names and name not in cls.metric_names:
            import difflib

            close = difflib.get_close_matches(str(name), cls.metric_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"train.metric_for_best={name!r} is not a validation metric of the "
                              f"{cls.name or cls.__name__} task.{hint} Choose one of {', '.join(cls.metric_names)}.")

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        """Raw ``train``/``validation``/``test`` splits, checked and cleaned, with what they tell the model."""
        raise NotImplementedError

    def stream_rows(self, batch: dict[str, list], info: DataInfo) -> dict[str, list]:
        """``data.streaming=true`` (:mod:`nlpkit.streaming`): clean a batch of raw streamed training rows as
        :meth:`load_data` cleans a split (the same columns out as its ``train`` split), given what it learned
        (``info``) from the first rows. Tasks that do not override it cannot stream their data."""
        raise ConfigError(f"The {self.name or type(self).__name__} task cannot stream its data yet "
                          f"(data.streaming=true); use data.max_train_samples to train on part of it.")

    def encode(self, batch: dict[str, list]) -> dict[str, list] | pa.Table:
        """Tokenize a batch of raw rows (``datasets.map(batched=True)``): columns as lists, or a ``pyarrow.Table``
        (no Python list per row: see :func:`nlpkit.tokenizing.token_ids`)."""
        raise NotImplementedError

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad a list of encoded examples into a batch (dynamic padding)."""
        raise NotImplementedError

    def lengths(self, encoded: Any) -> list[int]:
        """Size of every encoded example of a split, for length-grouped and length-sorted batches."""
        from datasets import Dataset

        if not isinstance(encoded, Dataset):
            return [len(ids) for ids in encoded["input_ids"]]
        import pyarrow.compute as pc

        # One Arrow kernel over the list column: a million rows in milliseconds, no Python list per row.
        ids = encoded.with_format("arrow", columns=["input_ids"])["input_ids"]
        return pc.list_value_length(ids).to_numpy().tolist()

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """Set ``self.model`` and ``self.tokenizer`` from ``cfg.model.name`` and what the data said (``info``)."""
        raise NotImplementedError

    def load_model(self, info: DataInfo | None = None) -> None:
        """Remember ``info`` as :attr:`info` and call :meth:`build_model` (what every caller uses)."""
        self.info = info if info is not None else (self.saved_info or self.Info())
        model = getattr(self.cfg, "model", None)
        if model is not None and hasattr(model, "trust_remote_code"):
            from nlpkit.modeling import check_remote_code

            # a clear error before transformers would import a folder's own modules (see check_remote_code)
            check_remote_code(model.name, model.trust_remote_code)
        try:
            self.build_model(self.info)
        except pickle.UnpicklingError as err:  # torch.load(weights_only=True) refused a pickle's contents
            raise _unsafe_pickle(getattr(model, "name", None) if model is not None else None, err) from err

    def loss_items(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """How many items (target tokens) the loss of ``batch`` sums over, for token-level tasks; None otherwise.

        A token-level task (causal LM, seq2seq) returns the number of scored targets (``labels != -100``, after
        the causal shift). The loop then adds these counts over all micro-batches of an optimizer update and over
        all processes, and passes the total to :meth:`loss` as ``num_items_in_batch``: every target token weighs
        the same whatever the accumulation, the batch split and the padding (as transformers' Trainer does with
        ``num_items_in_batch``). None (the default, classification) keeps the mean loss of each micro-batch.
        """
        return None

    def loss(self, model: torch.nn.Module, batch: dict[str, Any],
             num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss of a batch: its mean, or, when :meth:`loss_items` counts items and the loop passes
        ``num_items_in_batch``, the summed loss of the batch's items divided by ``num_items_in_batch``."""
        if num_items_in_batch is None:
            return model(**batch).loss
        return model(**batch, num_items_in_batch=num_items_in_batch).loss  # transformers: sum / num_items

    def callbacks(self) -> list[Callback]:
        """Callbacks this task plugs into the training loop's events (see :mod:`nlpkit.callbacks`)."""
        return []

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        """Per-example outputs of a batch for :meth:`compute_metrics`, gathered across processes.

        Values are tensors whose first dimension is the batch (padded with -100 across processes when they
        differ in width) or lists of any picklable per-example values (strings, dicts, ...).
        """
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        """Metrics from the gathered outputs. Scalars are logged; other values go to the report."""
        raise NotImplementedError

    # ------------------------------------------------------------------ inference
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[Any]:
        """One result per input, in input order (what :func:`nlpkit.pipeline` calls)."""
        raise NotImplementedError

    def prediction_input_column(self) -> str:
        """The column of a file that ``nlpkit predict`` feeds to :meth:`predict` (default ``data.text_column``)."""
        return self.cfg.data.text_column

    def prediction_columns(self, inputs: list[Any], outputs: list[Any]) -> dict[str, list]:
        """Flat output columns of ``nlpkit predict`` for one chunk: a dict result gives one column per key
        (sentiment: ``label``, ``score``), anything else one column named :attr:`prediction_name`; lists and
        dicts inside a cell are written as JSON."""
        def cell(value: Any) -> Any:
            return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict, tuple)) else value

        if outputs and all(isinstance(o, dict) or o is None for o in outputs):
            keys = dict.fromkeys(k for o in outputs if o for k in o)
            return {k: [cell(o.get(k)) if o else None for o in outputs] for k in keys}
        return {self.prediction_name: [cell(o) for o in outputs]}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save model + tokenizer (standard Hugging Face layout) and the descriptor into ``directory``.

        ``state_dict`` is the full set of weights when they are sharded across processes (FSDP).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, state_dict=state_dict, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        self.write_descriptor(directory)

    def write_descriptor(self, directory: str | Path, **extra: Any) -> None:
        """Write ``nlpkit_task.json``: this task's name, config and :attr:`info` (plus ``extra`` facts)."""
        info = self.info.to_dict() if self.info is not None else {}
        write_descriptor(directory, self.name, to_dict(self.cfg), info, **extra)

    @classmethod
    def resolve(cls, model: str) -> str:
        """Where ``model`` (a catalog name, run folder, model folder or hub id) is; override for other forms."""
        from nlpkit.modeling import resolve_model

        return resolve_model(model)

    @classmethod
    def from_saved(cls, model: str, **overrides: Any) -> Task:
        """A task configured as the model at ``model`` was trained (its descriptor), without loading weights.

        ``overrides`` are config keys on top. A folder without a descriptor (a plain Hugging Face model or a
        hub id) starts from the task's defaults.
        """
        path = cls.resolve(model)
        found: Descriptor | None = read_descriptor(path) if Path(path).exists() else None
        saved_cfg = found.config if found else None
        if saved_cfg and isinstance(saved_cfg.get("model"), dict):
            # Trust is the caller's to give: a folder's own descriptor must not opt in to running its code.
            saved_cfg = {**saved_cfg, "model": {k: v for k, v in saved_cfg["model"].items()
                                                if k != "trust_remote_code"}}
        # the saved config is data: its values as written, no interpolation resolved (literal)
        cfg = load_config(cls.Config, literal(saved_cfg) if saved_cfg else None,
                          {**overrides, "model": path, "task": cls.name},
                          origin=f"{Path(found.folder or path) / TASK_FILE}" if found else None)
        try:
            saved = cls.Info.from_dict(found.info) if found else None
        except TypeError as err:
            raise ModelNotFoundError(f"{Path(found.folder or path) / TASK_FILE} is not a valid nlpkit model "
                                     f"descriptor: {err}.") from err
        return cls(cfg, saved=saved)

    @classmethod
    def from_pretrained(cls, model: str, **overrides: Any) -> Task:
        """A task ready for :meth:`predict`, its model loaded from ``model`` (run folder, path or id)."""
        task = cls.from_saved(model, **overrides)
        task.load_model()
        if hasattr(task.model, "eval"):
            task.model.eval()
        return task

    # ------------------------------------------------------------------ report and command line
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        """Task-specific report sections as (title, markdown); may also write plots into ``run_dir``."""
        return []

    @classmethod
    def presets_dir(cls) -> Path | None:
        """The folder of this task's preset yaml files: ``presets/`` beside the task's module, if any."""
        module = inspect.getmodule(cls)
        if module is None or not getattr(module, "__file__", None):
            return None
        folder = Path(module.__file__).parent / "presets"
        return folder if folder.is_dir() else None

    @classmethod
    def metrics_dir(cls) -> Path | None:
        """The folder of this task's own ``evaluate`` modules (``metrics/<name>/<name>.py`` beside the task's
        module or its package), if any: registered tasks' metrics load by name through :mod:`nlpkit.metrics`."""
        module = inspect.getmodule(cls)
        if module is None or not getattr(module, "__file__", None):
            return None
        here = Path(module.__file__).parent
        folder = next((f / "metrics" for f in (here, here.parent) if (f / "metrics").is_dir()
                       and f.name != "nlpkit"), None)
        return folder

    @classmethod
    def presets(cls) -> dict[str, Path]:
        """Preset name -> yaml file (``accelerate launch tasks/<task>.py NAME`` picks one)."""
        folder = cls.presets_dir()
        return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder else {}

    @classmethod
    def add_commands(cls, subparsers: argparse._SubParsersAction) -> None:
        """Add task-specific ``nlpkit`` subcommands (e.g. ``nlpkit generate``); each sets ``fn`` to run."""

    def build_demo(self, pipe: Pipeline) -> gradio.Blocks:
        """The app of ``nlpkit demo``: a ``gradio.Blocks`` whose events call ``pipe`` (a pipeline around this
        task, with its model loaded). Plugins implement it in their ``demo.py``, importing gradio inside the call
        so that nlpkit runs without it; :mod:`nlpkit.demo` adds the run's header and serves it."""
        raise UsageError(f"The {self.name or type(self).__name__} task has no demo (its plugin does not implement "
                         f"Task.build_demo).")

    def serve_routes(self, server: Server) -> fastapi.APIRouter:
        """The HTTP routes of ``nlpkit serve``: a ``fastapi.APIRouter`` whose endpoints answer through ``server``
        (a :class:`nlpkit.serve.Server`: ``await server.predict(inputs, options)`` runs the task's batched
        :meth:`predict`, merged with concurrent requests; ``server.batched(call, items, key=...)`` merges any other
        call; ``server.error(...)`` answers 4xx). Request and response schemas are pydantic models that refuse
        unknown fields. Plugins implement it in their ``serve.py``, imported inside the call so that nlpkit runs
        without FastAPI; :mod:`nlpkit.serve` adds /health, /ready, /metrics, /v1/models, the limits and the
        metrics."""
        raise UsageError(f"The {self.name or type(self).__name__} task cannot be served (its plugin does not "
                         f"implement Task.serve_routes).")

    def export_spec(self) -> ExportSpec | None:
        """How ``nlpkit export`` exports this task's model (its model loaded): an
        :class:`~nlpkit.onnx_runtime.ExportSpec` naming the export kind (a classifier's fused encoder, a generator's
        decoding graphs, or a kind the plugin defines: :class:`~nlpkit.onnx_runtime.ExportKind`), the task's own
        check inputs and how the predictions of the PyTorch model and of the export are compared. None (the
        default): the task does not export; a task that overrides this hook is listed as exportable."""
        return None
