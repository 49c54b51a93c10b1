"""Hyperparameter sweeps on Optuna: ``nlpkit tune TASK [PRESET] [key=value ...] --space SPACE.yaml --trials N``.

A sweep is an Optuna study whose trials are ordinary runs: each trial takes the task's config (defaults <- preset
<- ``key=value``), sets the searched keys to the values Optuna suggests and trains into
``<study folder>/trial-<number>`` with :func:`nlpkit.runner.run`. The value of a trial is the task's main
validation metric (``train.metric_for_best``, direction from ``train.greater_is_better``) unless ``--metric`` /
``--direction`` name another. After every validation during training the :class:`OptunaPruning` callback reports
the metric to Optuna; a trial the pruner gives up on stops like an interrupted run (no final model) and is marked
pruned.

The search space is a yaml file over any dotted config key::

    train.lr: {type: float, low: 1.0e-5, high: 3.0e-4, log: true}
    train.warmup_ratio: {type: float, low: 0.0, high: 0.2}
    train.batch_size: {type: categorical, choices: [16, 32]}
    train.epochs: {type: int, low: 1, high: 3}

Workers share a study through Optuna's storage (a SQLite file in the study folder by default, any RDB URL, or a
journal file for many machines): ``--trials N`` is the number of trials this command runs, so two commands with
``--trials 6`` on one storage and study finish 12 distinct trials. The study folder gets ``best.yaml`` (the best
trial's config as a preset), ``trials.md`` / ``trials.json`` and Optuna's plots. Under ``accelerate launch`` every
trial is a multi-process run: only the main process talks to Optuna and broadcasts each trial's values and each
pruning decision to the other processes.

Optuna is an optional extra: ``pip install "nlpkit-hf[tune]"``.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nlpkit.callbacks import Callback
from nlpkit.config import load_config, to_dict
from nlpkit.errors import ConfigError, NlpkitError, UsageError
from nlpkit.registry import find_preset, get_task

if TYPE_CHECKING:
    import optuna

    from nlpkit.training import Loop

__all__ = ["INSTALL_HINT", "OptunaPruning", "Param", "add_tune_command", "load_space", "open_storage", "tune",
           "write_study_report"]

logger = logging.getLogger("nlpkit.tune")

INSTALL_HINT = 'pip install "nlpkit-hf[tune]"'
#: Keys a space cannot search: each trial's folder and task are set by the sweep.
RESERVED_KEYS = ("task", "output_dir", "resume")
_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}


def require_optuna() -> Any:
    """The ``optuna`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import optuna
    except ImportError as err:
        raise ConfigError(f"nlpkit tune needs Optuna, which is not installed: {INSTALL_HINT}") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # nlpkit logs one line per trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# --------------------------------------------------------------------------------------------- search space


@dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range (``log``, ``step``) or categorical ``choices``."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask ``trial`` for a value (the Optuna parameter is named by the dotted key)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def values_to_check(self) -> list[Any]:
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)


def _param(key: str, spec: Any, where: str) -> Param:
    """Check one entry of a space file (its form only; the key and values are checked against the schema later)."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"Search space {where}: `{key}` {why}")

    if not isinstance(spec, dict) or spec.get("type") not in _FIELDS:
        raise bad("needs a mapping with `type: float`, `type: int` or `type: categorical`, e.g. "
                  "{type: float, low: 1.0e-5, high: 3.0e-4, log: true}.")
    kind = spec["type"]
    unknown = sorted(set(spec) - _FIELDS[kind] - {"type"})
    if unknown:
        raise bad(f"has unknown field(s) {', '.join(unknown)}; a {kind} takes {', '.join(sorted(_FIELDS[kind]))}.")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad("needs a non-empty list of `choices`.")
        if any(c is not None and not isinstance(c, (bool, int, float, str)) for c in choices):
            raise bad("choices must be numbers, strings, booleans or null (Optuna's categorical values).")
        if len({json.dumps(c) for c in choices}) < len(choices):
            raise bad(f"has repeated choices: {choices}.")
        return Param(key, kind, choices=tuple(choices))
    integer = kind == "int"
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    if not (_number(low, integer) and _number(high, integer)):
        raise bad(f"needs {'integer' if integer else 'numeric'} `low` and `high` (got low={low!r}, high={high!r}).")
    if low >= high:
        raise bad(f"needs low < high (got low={low}, high={high}); fix a value with a key=value override instead.")
    if not isinstance(log, bool):
        raise bad(f"`log` must be true or false (got {log!r}).")
    if log and low <= 0:
        raise bad(f"has log: true, which needs low > 0 (got low={low}).")
    if step is not None:
        if not _number(step, integer) or step <= 0:
            raise bad(f"`step` must be a positive {'integer' if integer else 'number'} (got {step!r}).")
        if log:
            raise bad("cannot have both `step` and `log: true` (Optuna samples a log range continuously).")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def find_space(task_cls: Any, name_or_path: str | Path) -> Path:
    """A search space by path, or by name among the spaces the task's plugin ships (``spaces/NAME.yaml`` beside
    its task module or its package, as presets are found): a new task brings its own without a core edit."""
    path = Path(name_or_path)
    if path.is_file() or str(name_or_path).endswith((".yaml", ".yml")):
        return path
    import inspect

    module = inspect.getmodule(task_cls)
    here = Path(module.__file__).parent if module is not None and getattr(module, "__file__", None) else None
    folders = [f / "spaces" for f in ((here, here.parent) if here is not None else ()) if (f / "spaces").is_dir()]
    for folder in folders:
        if (folder / f"{name_or_path}.yaml").is_file():
            return folder / f"{name_or_path}.yaml"
    known = sorted(p.stem for f in folders for p in f.glob("*.yaml"))
    raise ConfigError(f"--space {name_or_path}: no such file, and the {getattr(task_cls, 'name', '') or 'task'} "
                      f"task ships no space of that name ({', '.join(known) or 'it ships none'}). Give a yaml path.")


def load_space(path: str | Path, schema: Any) -> dict[str, Param]:
    """Read and check a search-space yaml against the task's config ``schema``.

    Every key must be a config key of the task (an unknown key fails with a suggestion, as in a preset) and every
    bound or choice a valid value for it; a malformed entry fails naming the key and the expected form.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Search space file {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"Search space {path} is not text (byte {err.start} is not UTF-8): give a YAML file of "
                          f"ranges, e.g. `train.lr: {{type: float, low: 1.0e-5, high: 3.0e-4, log: true}}`.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"Search space {path} is not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"Search space {path} must map dotted config keys to ranges, e.g. "
                          f"`train.lr: {{type: float, low: 1.0e-5, high: 3.0e-4, log: true}}`.")
    space: dict[str, Param] = {}
    for key, spec in raw.items():
        key = str(key)
        if key in RESERVED_KEYS:
            raise ConfigError(f"Search space {path}: `{key}` cannot be searched (the sweep sets it for each trial).")
        param = _param(key, spec, str(path))
        for value in param.values_to_check():  # the schema decides: unknown keys, wrong types
            try:
                load_config(schema, None, {key: value})
            except ConfigError as err:
                raise ConfigError(f"Search space {path}: {str(err).replace(' in the overrides', '')}") from err
        space[key] = param
    return space


# --------------------------------------------------------------------------------------------- storage


def open_storage(storage: str | None, study_dir: Path) -> tuple[Any, str]:
    """An Optuna storage and how to name it in reports.

    ``None``: ``study_dir/study.db`` (SQLite). A URL (``sqlite:///path.db``, ``postgresql://...``,
    ``mysql://...``): that database. ``journal:PATH`` or a path ending in ``.log`` / ``.journal``: an append-only
    journal file (``optuna.storages.JournalStorage``), the way to share a study between machines over a network
    file system. A path ending in ``.db`` / ``.sqlite`` / ``.sqlite3``: a SQLite file.
    """
    optuna = require_optuna()
    if storage is None:
        storage = str(study_dir / "study.db")
    if storage.startswith("journal:") or (("://" not in storage) and storage.endswith((".log", ".journal"))):
        from optuna.storages.journal import JournalFileBackend

        path = Path(storage.removeprefix("journal:")).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path))), f"journal:{path}"
    if "://" not in storage:
        if not storage.endswith((".db", ".sqlite", ".sqlite3")):
            raise UsageError(f"--storage {storage!r}: give a database URL (sqlite:///study.db, "
                             f"postgresql://...), a SQLite file (*.db) or a journal file (journal:PATH or *.log).")
        path = Path(storage).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{path}"
    if not storage.startswith("sqlite:"):
        return _rdb_storage(optuna, storage), storage
    # Workers on one machine write to one SQLite file: wait for its lock instead of failing at once, and create
    # the tables under a file lock (two workers starting together would both try to).
    from filelock import FileLock

    db = storage.split(":///", 1)[-1]
    if not Path(db).parent.is_dir():
        raise ConfigError(f"--storage {storage}: the folder {Path(db).parent} does not exist; create it, or give a "
                          f"SQLite file in an existing folder (e.g. --storage study.db).")
    with FileLock(f"{db}.lock"):
        return _rdb_storage(optuna, storage, engine_kwargs={"connect_args": {"timeout": 600}}), storage


#: The package that gives SQLAlchemy a driver for each database URL scheme (``postgresql://``, ``mysql://``).
_DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "PyMySQL (and write the URL as mysql+pymysql://...)"}


def _rdb_storage(optuna: Any, url: str, **kwargs: Any) -> Any:
    """``optuna.storages.RDBStorage(url)``, its failures as one :class:`ConfigError` line naming the storage: a
    missing database driver (what to install), a file that is not a database, a connection refused."""
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as err:
        scheme = url.split(":", 1)[0].split("+")[0]
        install = _DRIVERS.get(scheme, f"the SQLAlchemy driver for {scheme}")
        raise ConfigError(f"--storage {url}: the Python driver for {scheme} is not installed: pip install {install} "
                          f"(or keep the study in a SQLite file: --storage study.db).") from err
    except Exception as err:  # SQLAlchemy's: not a database, no such file or server, refused login
        if not type(err).__module__.startswith(("sqlalchemy", "optuna")):
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage {url} cannot be opened as an Optuna study database: {reason}. Give an "
                          f"Optuna database URL, a SQLite file (*.db) or a journal file (journal:PATH).") from err


# --------------------------------------------------------------------------------------------- pruning


def _share(value: Any) -> Any:
    """``value`` of the main process, on every process (a no-op on one process)."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if PartialState().num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


class OptunaPruning(Callback):
    """Reports the validation ``metric`` to an Optuna trial after every evaluation and stops the run when the
    study's pruner says so (:meth:`~nlpkit.training.Loop.request_stop`: the run ends unfinished, with no final
    model). ``trial`` is given on the main process only; the decision is broadcast to the others."""

    def __init__(self, trial: optuna.Trial | None, metric: str):
        self.trial, self.metric = trial, metric
        #: The update at which the run was pruned (None while it runs on).
        self.pruned_at: int | None = None

    def after_evaluation(self, loop: Loop, metrics: dict[str, Any]) -> None:
        value = metrics.get(self.metric)
        if not _scalar(value):  # NaN is a value: the median pruner prunes it
            choices = sorted(k for k, v in metrics.items() if _scalar(v))
            raise ConfigError(f"--metric {self.metric!r} is not a numeric validation metric; choose one of {choices}.")
        step = loop.state["global_step"]
        prune = False
        if self.trial is not None:
            self.trial.report(float(value), step)
            prune = self.trial.should_prune()
        if _share(prune):
            self.pruned_at = step
            loop.request_stop(f"pruned by Optuna at update {step} ({self.metric}={value:.4f})")


# --------------------------------------------------------------------------------------------- trials


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class _Sweep:
    """What every process needs to run a trial."""

    task: str
    schema: Any
    base: dict  # the resolved config (defaults <- preset <- overrides) as a nested dict
    defaults: dict  # the task's defaults, flattened: best.yaml keeps only what differs from them
    space: dict[str, Param]
    metric: str
    study_dir: Path
    prune: bool  # the task's trainer fires evaluation events (the shared Loop)
    #: A run is in progress (after an error in one, the other processes are not waiting for a message).
    running: bool = False

    def config_changes(self, params: dict[str, Any]) -> dict[str, Any]:
        """The trial's config as dotted keys that differ from the task defaults (searched keys always)."""
        flat = _flatten(to_dict(load_config(self.schema, self.base, params)))
        return {k: v for k, v in flat.items() if k not in ("output_dir", "task", "resume", "overwrite")
                and (k in params or v != self.defaults.get(k))}

    def run_trial(self, number: int, params: dict[str, Any], trial: optuna.Trial | None) -> float | None:
        """Train trial ``number`` with ``params`` into its run folder; its validation metric (main process).

        Raises ``optuna.TrialPruned`` (main process) when the pruner stopped it.
        """
        from accelerate import PartialState

        from nlpkit.runner import run

        run_dir = self.study_dir / f"trial-{number}"
        cfg = load_config(self.schema, self.base, {**params, "output_dir": str(run_dir)})
        pruning = OptunaPruning(trial, self.metric) if self.prune else None
        self.running = True
        report = run(cfg, callbacks=[pruning] if pruning else ())
        self.running = False
        if not PartialState().is_main_process:
            return None
        # A trial is never resumed: its checkpoints only take space (a pruned one's best weights too).
        for ckpt in run_dir.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
        if pruning is not None and pruning.pruned_at is not None:
            shutil.rmtree(run_dir / "best_model", ignore_errors=True)
            raise require_optuna().TrialPruned(report.get("stop_reason"))
        value = (report.get("validation") or {}).get(self.metric)
        if not _scalar(value):  # NaN is returned as is: Optuna marks the trial failed and goes on
            raise ConfigError(f"Trial {number} ended without a validation {self.metric!r} "
                              f"(stop reason: {report.get('stop_reason')}); check --metric and train.stop_after_steps.")
        return float(value)


@contextmanager
def _one_process_group() -> Iterator[None]:
    """Keep the process group of an ``accelerate launch`` across trials, and close it once at the end.

    Each run ends with ``accelerator.end_training()``, which destroys the process group (accelerate >= 1.0), and a
    destroyed default group cannot be set up again reliably in the same processes. accelerate leaves the group
    alone when the processes were fork-launched (``FORK_LAUNCHED=1``, read by every ``PartialState()``), which is
    what a sweep of runs in one group needs: it is set for the sweep and the group is destroyed here at the end.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as the runner makes it
    if state.num_processes == 1:
        yield
        return
    kept = os.environ.get("FORK_LAUNCHED")
    os.environ["FORK_LAUNCHED"] = "1"
    try:
        yield
    finally:
        if kept is None:
            os.environ.pop("FORK_LAUNCHED", None)
        else:
            os.environ["FORK_LAUNCHED"] = kept
        PartialState().destroy_process_group()


def _trial_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------- the sweep


def tune(task: str, preset: str | None = None, overrides: list[str] | tuple[str, ...] = (), *,
         space: str | Path, trials: int, storage: str | None = None, study: str | None = None,
         direction: str | None = None, metric: str | None = None, out: str | Path | None = None, seed: int = 0,
         pruner: str = "median", prune_after: int = 5) -> dict[str, Any]:
    """Run ``trials`` trials of a sweep of ``task`` (adding them to the study if it exists); write the study report.

    ``preset`` and ``overrides`` (``key=value``) make the base config, ``space`` (a yaml file) the searched keys.
    ``storage``: see :func:`open_storage` (default: ``<out>/study.db``). ``study``: the study's name (default
    ``<task>-<space file stem>``). ``metric`` / ``direction``: the validation metric to optimise (default
    ``train.metric_for_best`` and ``train.greater_is_better``). ``out``: the study folder (default
    ``outputs/tune-<study>``); trial N trains into ``<out>/trial-N``. ``seed``: TPE's seed (each trial's draws
    come from the seed and the trial number, so workers sharing a study never draw the same random values).
    ``pruner``: ``median`` (Optuna's median pruner, pruning once ``prune_after`` trials are complete) or ``none``.

    Returns a summary (on the main process; an empty dict on the others).
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from nlpkit.runner import setup_logging
    from nlpkit.training import trainer_for

    optuna = require_optuna()
    if trials < 1:
        raise UsageError(f"--trials must be at least 1 (got {trials}).")
    if pruner not in ("median", "none"):
        raise UsageError(f"--pruner must be median or none (got {pruner!r}).")
    if direction not in (None, "maximize", "minimize"):
        raise UsageError(f"--direction must be maximize or minimize (got {direction!r}).")
    task_cls = get_task(task)
    schema = task_cls.Config
    overrides = list(overrides)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"Unexpected argument {bad[0]!r}: overrides are key=value.")
    if any(o.split("=", 1)[0] == "output_dir" for o in overrides):
        raise UsageError("output_dir is set for each trial (<study folder>/trial-N); give the study folder as --out.")
    preset_path = find_preset(task, preset) if preset is not None else None
    base_cfg = load_config(schema, preset_path, overrides + [f"task={task}"])
    if base_cfg.resume != "none":
        raise UsageError(f"resume={base_cfg.resume}: every trial starts afresh in its own folder; drop resume.")
    params_space = load_space(find_space(task_cls, space), schema)
    fixed = sorted({o.split("=", 1)[0] for o in overrides} & set(params_space))
    if fixed:
        raise ConfigError(f"{', '.join(fixed)} is both searched ({space}) and fixed on the command line; drop one.")
    tcfg = base_cfg.train
    metric = metric or tcfg.metric_for_best
    if direction is None:
        if metric != tcfg.metric_for_best:
            raise UsageError(f"--metric {metric} is not train.metric_for_best ({tcfg.metric_for_best}): say whether "
                             f"to --direction maximize or minimize it.")
        direction = "maximize" if tcfg.greater_is_better else "minimize"
    study_name = study or f"{task}-{Path(space).stem}"
    study_dir = Path(out) if out is not None else Path("outputs") / f"tune-{study_name}"
    trainer = trainer_for(task_cls)
    sweep = _Sweep(task, schema, to_dict(base_cfg), _flatten(to_dict(load_config(schema, None, [f"task={task}"]))),
                   params_space, metric, study_dir,
                   prune=pruner != "none" and "callbacks" in inspect.signature(trainer.__init__).parameters)

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    setup_logging(state.is_main_process)
    with _one_process_group():
        if not state.is_main_process:
            while (message := _share(None)) is not None:  # the main process sends (number, params), then None
                sweep.run_trial(*message, trial=None)
                gc.collect()
            return {}
        try:
            return _optimise(optuna, sweep, trials=trials, storage=storage, study_name=study_name,
                             direction=direction, seed=seed, pruner=pruner, prune_after=prune_after)
        finally:  # the other processes leave their trial loop (after an error in a run, they failed in it too)
            if not sweep.running:
                _share(None)


def _optimise(optuna: Any, sweep: _Sweep, *, trials: int, storage: str | None, study_name: str, direction: str,
              seed: int, pruner: str, prune_after: int) -> dict[str, Any]:
    """The main process: open the study, run the trials (sending each one to the other processes), report.
    The caller sends the other processes the message that ends their trial loop."""
    sweep.study_dir.mkdir(parents=True, exist_ok=True)
    store, where = open_storage(storage, sweep.study_dir)
    study = optuna.create_study(
        storage=store, study_name=study_name, direction=direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=(optuna.pruners.MedianPruner(n_startup_trials=prune_after) if pruner == "median"
                else optuna.pruners.NopPruner()))
    if study.direction.name.lower() != direction:
        raise UsageError(f"Study {study_name!r} in {where} already {study.direction.name.lower()}s; "
                         f"it cannot {direction} (use another --study).")
    for key, value in (("task", sweep.task), ("metric", sweep.metric)):
        known = study.user_attrs.get(key)
        if known is None:
            study.set_user_attr(key, value)
        elif known != value:
            raise UsageError(f"Study {study_name!r} in {where} is for {key} {known!r}, not {value!r} "
                             f"(use another --study).")
    logger.info("Study %s (%s): %d trial(s) here, %d already in it; %s %s; searching %s; trials in %s",
                study_name, where, trials, len(study.trials), direction, sweep.metric, ", ".join(sweep.space),
                sweep.study_dir)
    if not sweep.prune:
        logger.info("No pruning: %s", "--pruner none" if pruner == "none" else
                    f"the {sweep.task} task's trainer has no evaluation events")
    started, numbers, worker = time.time(), [], f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        numbers.append(trial.number)
        # Draws depend on (seed, trial number): reproducible for one worker, different across workers.
        study.sampler = optuna.samplers.TPESampler(seed=_trial_seed(seed, trial.number), constant_liar=True)
        params = {key: p.suggest(trial) for key, p in sweep.space.items()}
        trial.set_user_attr("run_dir", str(sweep.study_dir / f"trial-{trial.number}"))
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("config", sweep.config_changes(params))
        _share((trial.number, params))
        return sweep.run_trial(trial.number, params, trial)

    def progress(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        logger.info("%s", _progress_line(study, frozen, sweep.metric))
        write_study_report(study, sweep.study_dir, where=where, plots=False)

    study.optimize(objective, n_trials=trials, callbacks=[progress], gc_after_trial=True)
    summary = write_study_report(study, sweep.study_dir, where=where, plots=True)
    summary.update(wall_seconds=round(time.time() - started, 1), trials_run=numbers)
    return summary


def _progress_line(study: optuna.Study, frozen: optuna.trial.FrozenTrial, metric: str) -> str:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in frozen.params.items())
    if frozen.state.name == "COMPLETE":
        outcome = f"{metric}={frozen.value:.4f}"
    elif frozen.state.name == "PRUNED":
        step = frozen.last_step
        outcome = f"pruned at update {step} ({metric}={frozen.intermediate_values[step]:.4f})" if step is not None \
            else "pruned"
    else:
        outcome = frozen.state.name.lower()
    try:
        best = f"best so far: trial {study.best_trial.number} {metric}={study.best_value:.4f}"
    except ValueError:  # no complete trial yet
        best = "no complete trial yet"
    seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
    return f"trial {frozen.number}: {outcome} [{params}] in {seconds:.0f}s; {best}"


# --------------------------------------------------------------------------------------------- study report


def _trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     "params": dict(t.params), "run_dir": t.user_attrs.get("run_dir"),
                     "worker": t.user_attrs.get("worker"),
                     "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
                     "pruned_at": t.last_step if t.state.name == "PRUNED" else None})
    return rows


def _best_yaml(study: optuna.Study, best: optuna.trial.FrozenTrial, path: Path, where: str) -> str:
    metric, task = study.user_attrs.get("metric"), study.user_attrs.get("task")
    header = [f"# Best trial of the sweep {study.study_name!r} ({where}): trial {best.number}, validation "
              f"{metric}={best.value:.4f} ({study.direction.name.lower()}).",
              f"# Searched: {', '.join(f'{k}={_fmt(v)}' for k, v in best.params.items())}.",
              "# Train with it:",
              f"#   nlpkit train {task} {path}",
              f"#   accelerate launch tasks/{task}.py {path}"]
    body = {"task": task, **_nest(best.user_attrs.get("config") or best.params)}
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False)


def _plots(study: optuna.Study, study_dir: Path, complete: int) -> tuple[list[str], list[str]]:
    """Optuna's history, parameter-importance and parallel-coordinate plots as PNG; (files, notes)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as vis

    from nlpkit.report import save_figure

    files, notes = [], []
    wanted = [("history.png", vis.plot_optimization_history, 1),
              ("param_importances.png", vis.plot_param_importances, 2),
              ("parallel_coordinate.png", vis.plot_parallel_coordinate, 1)]
    for name, plot, needs in wanted:
        if complete < needs:
            notes.append(f"{name}: skipped, it needs at least {needs} complete trial(s) ({complete} so far).")
            continue
        try:
            with warnings.catch_warnings():  # Optuna's notes on small studies ("importances will be equal")
                warnings.simplefilter("ignore")
                ax = plot(study)
        except (ValueError, RuntimeError) as err:  # e.g. importances of a parameter that never varied
            notes.append(f"{name}: skipped ({err}).")
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(9, 5)
        save_figure(fig, study_dir / name)
        files.append(name)
    return files, notes


def write_study_report(study: optuna.Study, study_dir: Path, where: str, plots: bool = True) -> dict[str, Any]:
    """Write ``trials.md``, ``trials.json``, ``best.yaml`` (once a trial is complete) and, with ``plots``, the
    PNG plots into ``study_dir``; returns the summary that ``trials.json`` holds (without the trial rows)."""
    from filelock import FileLock

    study_dir = Path(study_dir)
    # Workers sharing the folder write in turn, each reading the trials afresh: the last report has them all.
    with FileLock(str(study_dir / ".report.lock")):
        return _write_study_report(study, study_dir, where, plots)


def _write_study_report(study: optuna.Study, study_dir: Path, where: str, plots: bool) -> dict[str, Any]:
    from nlpkit.artifacts import atomic_write
    from nlpkit.report import json_safe, md_table

    metric = study.user_attrs.get("metric", "value")
    rows = _trial_rows(study)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    complete = counts.get("complete", 0)
    best = study.best_trial if complete else None
    summary: dict[str, Any] = {
        "study": study.study_name, "storage": where, "task": study.user_attrs.get("task"), "metric": metric,
        "direction": study.direction.name.lower(), "trials": len(rows), "counts": counts,
        "best": ({"number": best.number, "value": best.value, "params": best.params,
                  "run_dir": best.user_attrs.get("run_dir")} if best else None),
        "study_dir": str(study_dir)}
    files, notes = _plots(study, study_dir, complete) if plots else ([], [])
    if best is not None:
        atomic_write(study_dir / "best.yaml", _best_yaml(study, best, study_dir / "best.yaml", where))
    atomic_write(study_dir / "trials.json", json.dumps(json_safe({**summary, "rows": rows}), indent=2, default=str))
    md = [f"# Sweep {study.study_name}", "",
          f"- task: {summary['task']}", f"- storage: `{where}`",
          f"- objective: {summary['direction']} validation {metric}",
          f"- trials: {', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}",
          f"- best: {f'trial {best.number}, {metric}={best.value:.4f}' if best else 'none yet'}", ""]
    if best is not None:
        md += [f"Best config as a preset: [best.yaml](best.yaml) (`nlpkit train {summary['task']} "
               f"{study_dir / 'best.yaml'}`).", ""]
    md += ["## Trials", "", md_table(
        [(r["number"], r["state"] + (f" (update {r['pruned_at']})" if r["pruned_at"] is not None else ""),
          r["value"] if r["value"] is not None else "",
          ", ".join(f"{k}={_fmt(v)}" for k, v in r["params"].items()), r["run_dir"] or "",
          r["seconds"] if r["seconds"] is not None else "", r["worker"] or "") for r in rows],
        ["trial", "state", metric, "params", "run folder", "seconds", "worker"]), ""]
    if files or notes:
        md += ["## Plots", ""] + [f"![{f}]({f})" for f in files] + [f"- {n}" for n in notes] + [""]
    atomic_write(study_dir / "trials.md", "\n".join(md))
    return summary


# --------------------------------------------------------------------------------------------- command line


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="Task name (see `nlpkit tasks`).")
    p.add_argument("overrides", nargs="*", metavar="[PRESET] [key=value ...]",
                   help="The base config: a preset name or yaml, then key=value overrides (before the options).")
    p.add_argument("--space", required=True, help="Search-space yaml (dotted config key -> {type: float|int|"
                                                  "categorical, low, high, log, step | choices}), or the name of "
                                                  "a space the task ships (its plugin's spaces/NAME.yaml).")
    p.add_argument("--trials", type=int, required=True, help="Trials this command runs (Optuna's n_trials); "
                                                             "workers sharing a study each run their own.")
    p.add_argument("--storage", help="Optuna storage: a database URL (sqlite:///x.db, postgresql://...), a *.db "
                                     "file, or a journal file (journal:PATH or *.log) for many machines "
                                     "(default: OUT/study.db).")
    p.add_argument("--study", help="Study name (default: TASK-<space file stem>); re-running adds trials to it.")
    p.add_argument("--metric", help="Validation metric to optimise (default: train.metric_for_best).")
    p.add_argument("--direction", choices=["maximize", "minimize"],
                   help="Default: from train.greater_is_better (needed when --metric names another metric).")
    p.add_argument("--out", help="Study folder: trial-N run folders, best.yaml, trials.md/json, plots "
                                 "(default: outputs/tune-STUDY).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the TPE sampler (default 0).")
    p.add_argument("--pruner", choices=["median", "none"], default="median",
                   help="Stop unpromising trials at their validations (default: Optuna's median pruner).")
    p.add_argument("--prune-after", type=int, default=5, metavar="N",
                   help="Complete trials needed before the median pruner prunes (default 5).")
    p.set_defaults(fn=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> None:
    preset, overrides = None, list(args.overrides)
    if overrides and "=" not in overrides[0]:
        preset, overrides = overrides[0], overrides[1:]
    summary = tune(args.task, preset, overrides, space=args.space, trials=args.trials, storage=args.storage,
                   study=args.study, direction=args.direction, metric=args.metric, out=args.out, seed=args.seed,
                   pruner=args.pruner, prune_after=args.prune_after)
    if not summary:  # not the main process
        return
    best = summary["best"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
    print(f"\nStudy {summary['study']}: {summary['trials']} trial(s) ({counts}); this command ran "
          f"{len(summary['trials_run'])} in {summary['wall_seconds']:.0f}s.")
    if best:
        print(f"Best: trial {best['number']} {summary['metric']}={best['value']:.4f} "
              f"({', '.join(f'{k}={_fmt(v)}' for k, v in best['params'].items())})")
        print(f"Preset: {summary['study_dir']}/best.yaml")
    print(f"Report: {summary['study_dir']}/trials.md")


def add_tune_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nlpkit tune`` to the command line's subcommands."""
    p = subparsers.add_parser(
        "tune", help="Hyperparameter sweep on Optuna: trials are runs, pruned at their validations.",
        description="Sweep TASK's config over a search space with Optuna (TPE, median pruning). Every trial is a "
                    "run folder OUT/trial-N; the study folder gets best.yaml (a preset), trials.md/json and plots. "
                    "Several workers (processes or machines) share a study through --storage; under accelerate "
                    f"launch every trial is a multi-process run (accelerate launch -m nlpkit.tune ...). Needs "
                    f"{INSTALL_HINT}.")
    _add_arguments(p)


def main(argv: list[str] | None = None) -> None:
    """``python -m nlpkit.tune`` (e.g. under ``accelerate launch -m nlpkit.tune``): the same as ``nlpkit tune``."""
    parser = argparse.ArgumentParser(prog="nlpkit tune", description="Hyperparameter sweep on Optuna.")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except NlpkitError as err:
        if os.environ.get("NLPKIT_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
