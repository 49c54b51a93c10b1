"""Typed run configuration: dataclass defaults <- optional YAML preset <- ``key=value`` overrides.

Every option is a dataclass field declared with :func:`opt`, whose ``help`` text is what ``--help`` prints,
so the documentation lives next to the default. Merging and type checking are done by OmegaConf's structured
configs; this module only turns OmegaConf's errors into messages that name the key and suggest a fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from nlpkit.errors import ConfigError, UsageError

__all__ = [
    "ConfigError",
    "DataConfig",
    "RunConfig",
    "TrackerConfig",
    "TrainConfig",
    "GenerateConfig",
    "SCHEDULERS",
    "at_least",
    "between",
    "check_values",
    "fraction_or_count",
    "one_of",
    "positive",
    "LoraOptions",
    "ModelConfig",
    "config_help",
    "flat_keys",
    "load_config",
    "model_name",
    "opt",
    "save_config",
    "to_dict",
]

T = TypeVar("T")


def opt(default: Any = MISSING, help: str = "", factory: Any = None,  # noqa: A002 - mirrors argparse
        check: Check | None = None) -> Any:
    """Declare a config field with its help text (shown by ``--help``) and, optionally, the ``check`` its value
    must pass (:func:`positive`, :func:`between`, :func:`one_of`, ...), applied by :func:`load_config` to every
    config it builds (:func:`check_values`)."""
    metadata = {"help": help, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------------------------------- value checks
# A check takes a field's value and returns None when it is allowed, else what is allowed ("must be > 0"):
# load_config turns that into one ConfigError line naming the key, the value and the allowed range.

Check = Callable[[Any], Optional[str]]


def _real(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(value: Any) -> str | None:
    """A finite number > 0 (None allowed: the option's "not set")."""
    return None if value is None or (_real(value) and value > 0) else "must be a finite number > 0"


def at_least(low: int) -> Check:
    """A number >= ``low`` (None allowed)."""
    def check(value: Any) -> str | None:
        return None if value is None or (_real(value) and value >= low) else f"must be >= {low}"
    return check


def between(low: float, high: float) -> Check:
    """A number in the closed range [``low``, ``high``]."""
    def check(value: Any) -> str | None:
        return None if _real(value) and low <= value <= high else f"must be between {low} and {high}"
    return check


def one_of(*choices: str) -> Check:
    """One of ``choices``."""
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def fraction_or_count(value: Any) -> str | None:
    """A fraction of the rows (0 < x < 1) or a number of rows (a whole number >= 1): 1.5 is neither."""
    if _real(value) and (0 < value < 1 or (value >= 1 and float(value).is_integer())):
        return None
    return "must be a fraction between 0 and 1 (exclusive), or a whole number of rows >= 1"


#: ``train.scheduler`` names: transformers' schedules that need nothing but the warmup and total update counts.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")


@dataclass
class DataConfig:
    source: str = opt("", "Dataset: a catalog name (`nlpkit assets list`), a hub id, or a local "
                          ".csv/.json/.jsonl/.parquet/.txt file or folder of such files.")
    text_column: str = opt("text", "Column holding the input text.")
    label_column: str = opt("label", "Column holding the label (strings or ints).")
    train_split: str = opt("train", "Name of the training split.")
    validation_split: str = opt("validation", "Name of the validation split (made from train if absent).")
    test_split: str = opt("test", "Name of the test split (made from train if absent).")
    validation_size: float = opt(0.1, "Held out for validation when the source has no validation split: a "
                                      "fraction of the examples (0 < x < 1) or a number of rows (a whole number "
                                      ">= 1).", check=fraction_or_count)
    test_size: float = opt(0.1, "Held out for test when the source has no test split: a fraction (0 < x < 1) or "
                                "a number of rows (a whole number >= 1).", check=fraction_or_count)
    split_seed: Optional[int] = opt(None, "Seed of the splits made here and of max_train_samples' subset "
                                          "(default: the run's seed). Fix it to compare seeds on one split.")
    split_by: Optional[str] = opt(None, "Column whose values are kept together when splitting "
                                        "(e.g. a book or document id), so near-duplicates don't leak.")
    max_train_samples: Optional[int] = opt(None, "Use at most this many training examples (after shuffling).",
                                           check=at_least(1))
    max_eval_samples: Optional[int] = opt(None, "Use at most this many validation/test examples each.",
                                          check=at_least(1))
    max_length: int = opt(128, "Truncate inputs to this many tokens.", check=at_least(1))
    empty_texts: str = opt("skip", "What to do with empty/blank texts: `skip` (dropped and counted in the "
                                   "report) or `error`.", check=one_of("skip", "error"))
    config: Optional[str] = opt(None, "Subset (configuration) of a hub dataset, or of a dataset folder whose "
                                      "README declares `configs`: e.g. source=glue config=sst2.")
    revision: Optional[str] = opt(None, "Version of a hub dataset: a branch, tag or commit.")
    data_files: Any = opt(None, "Files of a hub dataset or dataset folder to read (load_dataset's data_files): a "
                                "path or glob, a list of them, or {split: path(s)}.")
    num_proc: Optional[int] = opt(None, "Processes that tokenize in parallel (datasets' num_proc; default: one, "
                                        "which a fast tokenizer already runs on every core).", check=at_least(1))
    stratify: str = opt("auto", "Keep class proportions in the validation/test splits made here: `auto` (on for "
                                "a classification task's label column), `true`, `false`, or a column name.")
    streaming: bool = opt(False, "Read the training data as a stream (datasets.IterableDataset: local shards such "
                                 "as 'data/train-*.parquet' or a hub dataset), tokenized on the fly and split "
                                 "across processes; for data that does not fit. Needs train.max_steps; validation "
                                 "and test are their first data.max_eval_samples rows (default 1000). See "
                                 "docs/scaling-out.md.")
    shuffle_buffer: int = opt(10_000, "data.streaming: rows in the shuffle buffer (memory grows with it; a larger "
                                      "buffer mixes the stream better).", check=at_least(1))


@dataclass
class TrainConfig:
    epochs: float = opt(1.0, "Number of passes over the training data (fractions allowed).", check=positive)
    max_steps: int = opt(-1, "If > 0, train for exactly this many optimizer updates (overrides epochs).")
    batch_size: int = opt(32, "Examples per process per forward pass.", check=at_least(1))
    eval_batch_size: int = opt(128, "Examples per process per evaluation/prediction batch.", check=at_least(1))
    grad_accum: int = opt(1, "Gradient accumulation steps: effective batch = batch_size x grad_accum x "
                             "processes.", check=at_least(1))
    lr: Optional[float] = opt(None, "Peak learning rate for AdamW (default: train.full_lr, or train.lora_lr with "
                                    "train.lora=true; the run's config.yaml and report show the rate used).",
                              check=positive)
    full_lr: float = opt(5e-5, "The task's default peak learning rate when every weight trains (used when "
                               "train.lr is not given).", check=positive)
    lora_lr: float = opt(1e-3, "The default peak learning rate with train.lora=true (used when train.lr is not "
                               "given): adapters need a higher rate than a full fine-tune.", check=positive)
    weight_decay: float = opt(0.01, "AdamW weight decay (not applied to biases and norms).", check=at_least(0))
    warmup_ratio: float = opt(0.06, "Fraction of updates spent warming the learning rate up from 0.",
                              check=between(0, 1))
    scheduler: str = opt("linear", f"Learning-rate decay after warmup: {', '.join(SCHEDULERS)}.",
                         check=one_of(*SCHEDULERS))
    max_grad_norm: float = opt(1.0, "Clip the global gradient norm to this (0 disables).", check=at_least(0))
    group_by_length: bool = opt(True, "Batch examples of similar length together (less padding, faster).")
    log_every: int = opt(20, "Log training loss and learning rate every N updates.", check=at_least(1))
    eval_every: int = opt(0, "Evaluate on validation every N updates (0: at the end of each epoch).",
                          check=at_least(0))
    save_every: int = opt(0, "Save a resumable checkpoint every N updates (0: only at evaluation points).",
                          check=at_least(0))
    keep_checkpoints: int = opt(2, "How many recent checkpoints to keep on disk.", check=at_least(0))
    early_stopping_patience: int = opt(0, "Stop after this many evaluations without improvement (0: off).",
                                       check=at_least(0))
    metric_for_best: str = opt("loss", "Validation metric that picks the best model and drives early "
                                       "stopping.")
    greater_is_better: bool = opt(False, "Whether a larger `metric_for_best` is better.")
    stop_after_steps: Optional[int] = opt(None, "Stop (as if interrupted) after this many updates without "
                                                "changing the schedule; resume later with resume=auto.",
                                          check=at_least(1))
    gradient_checkpointing: bool = opt(False, "Trade compute for memory by recomputing activations.")
    num_workers: int = opt(0, "DataLoader worker processes.", check=at_least(0))
    compile: bool = opt(False, "Wrap the model with torch.compile.")
    lora: bool = opt(False, "Train LoRA adapters (peft) instead of all weights (transformer tasks; see the "
                            "lora.* options).")
    def complete(self) -> None:
        """Fill what depends on other options once the whole config is known (:func:`load_config` calls it): an
        unset ``lr`` becomes ``lora_lr`` under ``lora``, else ``full_lr``."""
        if self.lr is None:
            self.lr = self.lora_lr if self.lora else self.full_lr


@dataclass
class GenerateConfig:
    """Decoding options of every task that generates. Checks itself when built, and turns itself into the
    arguments of ``model.generate`` (:meth:`generate_kwargs`)."""

    max_new_tokens: int = opt(64, "Maximum number of tokens to generate.")
    num_beams: int = opt(1, "Beam search width (1: greedy or sampling).")
    do_sample: bool = opt(False, "Sample instead of greedy/beam decoding.")
    temperature: float = opt(1.0, "Sampling temperature.")
    top_k: int = opt(50, "Sample only from the k most likely tokens (0: off).")
    top_p: float = opt(1.0, "Nucleus sampling: smallest set of tokens with this total probability.")
    repetition_penalty: float = opt(1.0, "Penalty > 1 discourages repeating tokens.")
    no_repeat_ngram_size: int = opt(0, "Never repeat an n-gram of this many tokens within one output (0: off). "
                                       "3 stops the loops greedy decoding falls into with a weak model.")
    num_return_sequences: int = opt(1, "Outputs per input.")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a :class:`ConfigError` naming the option that is out of range."""
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"generate.{key}={getattr(self, key)!r}: {why}")

        if self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be at least 1.")
        if self.num_beams < 1:
            raise bad("num_beams", "must be at least 1.")
        if self.num_return_sequences < 1:
            raise bad("num_return_sequences", "must be at least 1.")
        if self.num_return_sequences > 1 and not self.do_sample and self.num_beams < self.num_return_sequences:
            raise bad("num_return_sequences", f"needs do_sample=true (or num_beams >= {self.num_return_sequences}):"
                                              f" greedy decoding has only one answer.")
        if self.no_repeat_ngram_size < 0:
            raise bad("no_repeat_ngram_size", "must be 0 (off) or a positive n-gram size.")
        if self.repetition_penalty <= 0:
            raise bad("repetition_penalty", "must be > 0 (1: off).")
        if self.do_sample and self.temperature <= 0:
            raise bad("temperature", "must be > 0 when sampling.")
        if self.do_sample and not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1].")
        if self.top_k < 0:
            raise bad("top_k", "must be >= 0 (0: off).")

    def replace(self, **options: Any) -> GenerateConfig:
        """A copy with ``options`` changed (checked); an unknown option raises a :class:`UsageError`."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"Unknown decoding option(s) {unknown}; known: {', '.join(sorted(known))}.")
        return dataclasses.replace(self, **options)

    def generate_kwargs(self) -> dict[str, Any]:
        """The ``model.generate`` arguments: sampling knobs only when sampling (transformers warns otherwise),
        penalties only when on."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams,
                              "do_sample": self.do_sample, "num_return_sequences": self.num_return_sequences}
        if self.repetition_penalty != 1.0:
            kw["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k or None, top_p=self.top_p)
        return kw


@dataclass
class TrackerConfig:
    """How a run appears in the experiment trackers named in ``trackers`` (see ``docs/trackers.md``)."""

    project: Optional[str] = opt(None, "Project the run is filed under: the W&B/Comet/ClearML/SwanLab/trackio "
                                       "project, the MLflow/Aim experiment (default: the task name). "
                                       "MLFLOW_EXPERIMENT_NAME, when set, wins for MLflow.")
    run_name: Optional[str] = opt(None, "Name of the run in every tracker (default: the run folder's name).")
    tags: dict[str, str] = opt(help="Tags on the run, key: value (`tracker.tags.team=nlp`, or "
                                    "`'tracker.tags={team: nlp, data: sst2}'`). MLflow keeps them as key/value "
                                    "tags; W&B, ClearML, Comet and SwanLab get `key=value` strings.", factory=dict)


@dataclass
class ModelConfig:
    """Which weights a task starts from and how they are loaded (precision, quantization, remote code).

    ``model=<name>`` (command line, preset, ``nlpkit.train(task, model=...)``, older runs' config.yaml) is
    shorthand for ``model.name=<name>``; :func:`load_config` rewrites it.
    """

    name: str = opt("", "Model: a catalog name, a hub id, or a local folder (e.g. a previous run's `model/`).")
    dtype: str = opt("auto", "Precision the weights are loaded in (training, evaluation and the pipeline): "
                             "`auto` (float32: exact, and what training needs - mixed precision comes from the "
                             "accelerate config), `bfloat16`, `float16` or `float32`.")
    quantization: str = opt("none", "Load the base weights quantized through bitsandbytes (QLoRA): `none`, "
                                    "`4bit` (NF4, bfloat16 compute) or `8bit`. Needs a CUDA GPU, "
                                    "`pip install nlpkit-hf[qlora]` and train.lora=true to train.")
    trust_remote_code: bool = opt(False, "Run the modelling code a hub checkpoint ships with (only for models "
                                         "you trust).")
    revision: Optional[str] = opt(None, "Version of a hub model: a branch, tag or commit.")
    attn_implementation: Optional[str] = opt(None, "Attention kernel (sdpa, eager, flash_attention_2; default: "
                                                   "transformers' choice).")

    def __post_init__(self) -> None:
        dtype = str(self.dtype).strip().lower()
        self.dtype = DTYPE_ALIASES.get(dtype, dtype)
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype={self.dtype!r}: expected one of {', '.join(DTYPES)} "
                              f"(e.g. model.dtype=bfloat16).")
        quant = str(self.quantization).strip().lower()
        self.quantization = {"false": "none", "null": "none", "no": "none", "off": "none", "4": "4bit",
                             "8": "8bit", "nf4": "4bit", "int8": "8bit"}.get(quant, quant)
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"model.quantization={self.quantization!r}: expected one of "
                              f"{', '.join(QUANTIZATIONS)} (e.g. model.quantization=4bit).")
        check_quantization(self)  # here, so that a run fails before it reads data or downloads weights


DTYPES = ("auto", "bfloat16", "float16", "float32")
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
QUANTIZATIONS = ("none", "4bit", "8bit")


@dataclass
class LoraOptions:
    """LoRA adapters (peft), used with ``train.lora=true`` by every transformer task (see ``nlpkit.lora``)."""

    r: int = opt(16, "LoRA rank.")
    alpha: int = opt(32, "LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = opt(0.05, "Dropout on the LoRA branch.")
    target_modules: list[str] = opt(help="Layers that get adapters: module names (q_proj, v_proj, query, value, "
                                         "...) or [all-linear] (every linear layer but the output head).",
                                    factory=lambda: ["all-linear"])
    modules_to_save: Optional[list[str]] = opt(None, "Modules trained in full and saved beside the adapters "
                                                     "(default: a classifier's newly initialised head; none for "
                                                     "language models).")
    merge: bool = opt(False, "Fold the adapters into the base weights and save a plain model (else the run "
                             "saves only the adapter, loaded on top of the base model).")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r={self.r!r}: the rank must be at least 1 (e.g. lora.r=16).")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout={self.dropout!r}: must be in [0, 1).")
        if not self.target_modules:
            raise ConfigError("lora.target_modules is empty: name layers (e.g. [q_proj,v_proj]) or [all-linear].")


def check_quantization(model: ModelConfig) -> None:
    """Raise a :class:`ConfigError` when ``model.quantization`` asks for bitsandbytes where it cannot run: it
    needs a CUDA GPU and the ``bitsandbytes`` package."""
    if model.quantization == "none":
        return
    import importlib.util

    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible here)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (`pip install 'nlpkit-hf[qlora]'`)")
    if missing:
        raise ConfigError(f"model.quantization={model.quantization} loads the weights through bitsandbytes, which "
                          f"needs {' and '.join(missing)}. Use model.quantization=none here (train.lora=true "
                          f"with model.dtype=bfloat16 is a lighter run without quantization).")


def model_name(cfg: Any) -> str:
    """The model name of a config object or dict, whether its ``model`` is a section or (older runs, plugins
    that declare ``model: str``) a plain string."""
    model = cfg.get("model") if isinstance(cfg, dict) else getattr(cfg, "model", None)
    if isinstance(model, dict):
        return str(model.get("name") or "")
    if dataclasses.is_dataclass(model):
        return str(getattr(model, "name", "") or "")
    return "" if model is None else str(model)


@dataclass
class RunConfig:
    """Options shared by every task. Each task subclasses it to add its own and change defaults."""

    task: str = opt("", "Task name (set by the launch script).")
    model: ModelConfig = opt(help="The model: `model=<name>` is short for `model.name=<name>`.",
                             factory=ModelConfig)
    output_dir: Optional[str] = opt(None, "Run folder (default: outputs/<task>-<timestamp>).")
    seed: int = opt(42, "Random seed for data splits, shuffling and initialisation.")
    resume: str = opt("none", "`auto`: continue from the newest complete checkpoint in output_dir; a path: "
                              "from that checkpoint; `none`: start fresh.")
    overwrite: bool = opt(False, "Let the run write into an output_dir that already holds files or another run "
                                 "(its model, reports and checkpoints are replaced; other files are left alone). "
                                 "Without it (or resume) such a folder is refused.")
    trackers: list[str] = opt(help="Experiment trackers passed to accelerate (tensorboard, mlflow, wandb, "
                                   "comet_ml, aim, clearml, dvclive, swanlab, trackio).",
                              factory=lambda: ["tensorboard"])
    tracker: TrackerConfig = opt(help="Project, run name and tags of the run in the trackers.",
                                 factory=TrackerConfig)
    data: DataConfig = opt(help="Data options.", factory=DataConfig)
    train: TrainConfig = opt(help="Training options.", factory=TrainConfig)
    lora: LoraOptions = opt(help="LoRA options (with train.lora=true).", factory=LoraOptions)


# --------------------------------------------------------------------------------------------- loading


def flat_keys(schema: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass (``train.lr``, ``data.source``, ...)."""
    keys: list[str] = []
    for f in dataclasses.fields(schema):
        name = prefix + f.name
        ftype = _field_type(schema, f)
        if dataclasses.is_dataclass(ftype):
            keys.extend(flat_keys(ftype, name + "."))
        else:
            keys.append(name)
    return keys


def _field_type(schema: Any, f: dataclasses.Field) -> Any:
    import typing

    hints = typing.get_type_hints(schema if isinstance(schema, type) else type(schema))
    return hints.get(f.name, f.type)


def _suggest(key: str, schema: Any) -> str:
    keys = flat_keys(schema)
    leaf = key.split(".")[-1]
    close = difflib.get_close_matches(key, keys, n=2, cutoff=0.75)
    close += [k for k in keys if k.split(".")[-1] == leaf and k not in close]
    leaves = difflib.get_close_matches(leaf, [k.split(".")[-1] for k in keys], n=3, cutoff=0.7)
    close += [k for k in keys if k.split(".")[-1] in leaves]
    if close:
        return " Did you mean " + " or ".join(f"`{c}`" for c in dict.fromkeys(close)) + "?"
    return " Run with --help to list every option."


def _wrap_error(err: OmegaConfBaseException, schema: Any, origin: str) -> ConfigError:
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        return ConfigError(f"Unknown config key `{key}` in {origin}.{_suggest(str(key), schema)}")
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"Bad value for `{key}` in {origin}: {msg}. Run with --help for the expected type.")
    return ConfigError(f"Invalid config in {origin}: {str(err).splitlines()[0]}")


def load_config(schema: type[T], preset: str | Path | dict | None = None,
                overrides: list[str] | dict | None = None, *, origin: str | None = None) -> T:
    """Build a config object: ``schema`` defaults, then ``preset`` (a YAML path or dict), then overrides.

    ``overrides`` are ``key=value`` strings (``train.lr=3e-5``) or a nested/dotted dict. Unknown keys and
    wrong types raise :class:`ConfigError` with a suggestion. ``origin`` names a dict ``preset`` in those
    errors (e.g. the descriptor file a saved config comes from; default "the preset dict").
    """
    cfg: DictConfig = OmegaConf.structured(schema)
    sectioned = _has_model_section(schema)
    layers: list[tuple[str, Any]] = []
    if preset is not None:
        if isinstance(preset, dict):
            layers.append((origin or "the preset dict", OmegaConf.create(preset)))
        else:
            path = Path(preset)
            if not path.is_file():
                raise ConfigError(f"Preset file {path} does not exist.")
            try:
                layers.append((f"preset {path}", OmegaConf.load(path)))
            except Exception as err:  # yaml.YAMLError and friends
                raise ConfigError(f"Preset {path} is not valid YAML: {err}") from err
    if overrides:
        if isinstance(overrides, dict):
            layer = OmegaConf.create({})
            for k, v in overrides.items():
                if sectioned:
                    k = _shorthand_key(k, v)
                OmegaConf.update(layer, k, v, force_add=True)
            layers.append(("the overrides", layer))
        else:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"Override {bad[0]!r} is not of the form key=value (e.g. train.lr=3e-5).")
            if sectioned:
                overrides = [_shorthand_key(o.split("=", 1)[0], None) + "=" + o.split("=", 1)[1] for o in overrides]
            try:
                layers.append(("the command line", OmegaConf.from_dotlist(list(overrides))))
            except OmegaConfBaseException as err:
                raise ConfigError(f"Could not parse overrides {overrides}: {err}") from err
    for origin, layer in layers:
        if sectioned:
            _normalise_model(layer)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as err:
            raise _wrap_error(err, schema, origin) from err
    try:
        built = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        missing = getattr(err, "full_key", "?")
        raise ConfigError(f"Config key `{missing}` has no value; set it with {missing}=...") from err
    check_values(built)
    return built  # type: ignore[return-value]


def check_values(cfg: Any, prefix: str = "") -> None:
    """Complete and check a built config, section by section: each section's ``complete()`` (values that depend
    on other options), then every field's declared ``check`` (:func:`opt`). A value out of range raises one
    :class:`ConfigError` line: the dotted key, the value and what is allowed."""
    complete = getattr(cfg, "complete", None)
    if callable(complete):
        complete()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_values(value, f"{prefix}{f.name}.")
            continue
        check = f.metadata.get("check")
        why = check(value) if check is not None else None
        if why:
            raise ConfigError(f"{prefix}{f.name}={value!r}: {why} (set it with {prefix}{f.name}=...).")


def _has_model_section(schema: Any) -> bool:
    """Whether ``schema`` declares ``model`` as a section (every built-in task) rather than a plain string (a
    plugin written before the section existed): only then is ``model=<name>`` rewritten."""
    found = [f for f in dataclasses.fields(schema) if f.name == "model"]
    return bool(found) and dataclasses.is_dataclass(_field_type(schema, found[0]))


# Old spellings kept working, each rewritten once here so that the rest of nlpkit sees one form.
_LEGACY_KEYS = {"model": "model.name", "attn_implementation": "model.attn_implementation"}


def _shorthand_key(key: str, value: Any) -> str:
    """``model`` -> ``model.name`` (unless the value is a whole section), ``attn_implementation`` ->
    ``model.attn_implementation``."""
    if key in _LEGACY_KEYS and not isinstance(value, (dict, DictConfig)):
        return _LEGACY_KEYS[key]
    return key


def _normalise_model(layer: Any) -> None:
    """Rewrite a preset's or saved run's ``model: <name>`` and top-level ``attn_implementation`` in place."""
    if not isinstance(layer, DictConfig):
        return
    with open_dict(layer):
        if "model" in layer and not isinstance(layer.get("model"), DictConfig):
            layer["model"] = {"name": layer.get("model")}
        if "attn_implementation" in layer:
            attn = layer.pop("attn_implementation")
            if attn is not None:
                if "model" not in layer:
                    layer["model"] = {}
                layer["model"]["attn_implementation"] = attn


def to_dict(cfg: Any) -> dict:
    """A plain nested dict of a config object (for reports and JSON), its values as they are: a built config
    has no interpolations left (:func:`load_config` resolved them), so a string that still reads ``${...}`` is a
    literal value (from a saved run, :func:`literal`) and must not be resolved now."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=False)  # type: ignore[return-value]


def literal(data: Any) -> Any:
    """``data`` (a saved config: a descriptor's, a run's config.yaml) with every OmegaConf interpolation escaped
    (``${x}`` -> ``\\${x}``, backslashes before it doubled), so :func:`load_config` reads it as the values it
    holds. Saved configs are data: a ``${oc.env:SECRET}`` in someone's run must not become this machine's
    environment variable (in the config, a report or a log)."""
    if isinstance(data, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", data)
    if isinstance(data, dict):
        return {k: literal(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [literal(v) for v in data]
    return data


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the config as YAML (re-loadable as a preset, its values read back as they were: :func:`literal`)."""
    Path(path).write_text(OmegaConf.to_yaml(OmegaConf.create(literal(to_dict(cfg)))))


def config_help(schema: Any) -> str:
    """A table of every option: dotted key, type, default and meaning."""
    lines: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        inst = obj() if isinstance(obj, type) else obj
        for f in dataclasses.fields(inst):
            value = getattr(inst, f.name)
            if dataclasses.is_dataclass(value):
                lines.append(f"\n  {prefix}{f.name}.*  — {f.metadata.get('help', '')}")
                walk(value, prefix + f.name + ".")
                continue
            ftype = _field_type(obj, f)
            tname = getattr(ftype, "__name__", None) or str(ftype).replace("typing.", "")
            lines.append(f"  {prefix}{f.name}={value!r}  ({tname})\n      {f.metadata.get('help', '')}")

    walk(schema, "")
    return "\n".join(lines)
