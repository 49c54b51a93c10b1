"""nlpkit's metrics, shipped as local `evaluate` modules (one folder each, `<name>/<name>.py`).

The hub is out of reach on these machines (and for many users), so `evaluate.load("accuracy")` fails;
loading a local folder works offline. Each folder here is a self-contained `evaluate.Metric` that anyone can
also load without nlpkit::

    evaluate.load("path/to/nlpkit/metrics/accuracy")

Within nlpkit, use the helpers::

    from nlpkit.metrics import compute, load_metric

    compute("accuracy", predictions=[0, 1], references=[0, 0])      # {'accuracy': 0.5}
    f1 = load_metric("precision_recall_f1")                          # a fresh EvaluationModule
    for batch in batches:
        f1.add_batch(predictions=batch.preds, references=batch.labels)
    f1.compute(labels=[0, 1])

Where metrics are found. The core's modules live here (`nlpkit/metrics/<name>/<name>.py`); a task plugin ships
its own in its folder (`nlpkit/plugins/<task>/metrics/<name>/<name>.py`), found the same way without any list
naming them; a third-party plugin's `metrics/` folder (beside its task module) is added with `add_metrics_dir`
when its task is registered. Names are unique across all of them (a clash is an error naming both folders).

Loading and the module cache. `evaluate.load(folder)` copies the script into the HF modules cache
(`$HF_MODULES_CACHE/evaluate_modules/metrics/<name>/<content hash>/`) and imports it from there. evaluate
guards that copy with a file lock, and the folder is keyed by a hash of the script, so several processes
(e.g. every rank of `accelerate launch`) loading at once, and different nlpkit versions side by side, are safe
(checked: 4 processes loading all modules at the same instant into an empty cache; `tests/test_metrics.py`
repeats this with 2). The script is loaded once per process and its class cached; every `load_metric` call
then returns a *new* instance, so two callers never share a buffer of `add_batch` data by accident.

Instances keep their predictions in memory (`keep_in_memory=True`) instead of evaluate's default Arrow cache
files under `~/.cache/huggingface/metrics`: no cache-file locks to collide on between concurrent runs, and no
need for an `experiment_id`. In nlpkit, distributed evaluation gathers predictions with
`accelerator.gather_for_metrics` and computes on the gathered values, so evaluate's own multi-process mode is
not needed; it is still available with `load_metric(name, num_process=N, process_id=i, experiment_id=...)`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import evaluate

__all__ = ["METRICS_DIR", "add_metrics_dir", "available_metrics", "compute", "load_metric", "metric_path",
           "metrics_dirs"]

METRICS_DIR: Path = Path(__file__).resolve().parent
"""The folder holding one sub-folder per core metric module (inside site-packages when nlpkit is installed)."""
#: The built-in plugins' folder: each ``<task>/metrics/`` in it holds that task's own metric modules.
_PLUGINS_DIR: Path = METRICS_DIR.parent / "plugins"
#: Metric folders added by third-party plugins (:func:`add_metrics_dir`).
_EXTRA_DIRS: list[Path] = []

# name -> (metric class, hash of its script): evaluate.load runs once per name per process.
_LOADED: dict[str, tuple[type[evaluate.EvaluationModule], str]] = {}
_THREAD_LOCK = threading.Lock()


def add_metrics_dir(folder: str | Path) -> None:
    """Make the metric modules in ``folder`` (``<name>/<name>.py``) loadable by name: a third-party plugin's
    ``metrics/`` folder (the registry adds it when the task is registered)."""
    path = Path(folder).resolve()
    if path.is_dir() and path not in _EXTRA_DIRS and path != METRICS_DIR:
        _EXTRA_DIRS.append(path)


def metrics_dirs() -> list[Path]:
    """Every folder metric modules are read from: the core's, each built-in plugin's ``metrics/``, and those
    added by :func:`add_metrics_dir`."""
    plugins = sorted(p / "metrics" for p in _PLUGINS_DIR.iterdir() if (p / "metrics").is_dir()) \
        if _PLUGINS_DIR.is_dir() else []
    return list(dict.fromkeys([METRICS_DIR, *plugins, *_EXTRA_DIRS]))


def _modules() -> dict[str, Path]:
    """Metric name -> its folder, over :func:`metrics_dirs`; a name defined twice is a ValueError."""
    found: dict[str, Path] = {}
    for folder in metrics_dirs():
        for p in sorted(folder.iterdir()):
            if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_") and (p / f"{p.name}.py").is_file():
                if p.name in found and found[p.name] != p:
                    raise ValueError(f"metric {p.name!r} is defined twice: {found[p.name]} and {p}; rename one")
                found[p.name] = p
    return found


def available_metrics() -> list[str]:
    """Names of the metric modules of nlpkit and its task plugins, sorted."""
    return sorted(_modules())


def metric_path(name: str) -> Path:
    """The folder of the metric module `name`, the core's or a task plugin's (what `evaluate.load` takes).

    `name` is case-insensitive and may use "-" for "_" ("precision-recall-f1").

    Raises:
        ValueError: `name` is not one of nlpkit's metrics; the message lists the known names.
    """
    key = name.strip().lower().replace("-", "_")
    modules = _modules()
    if key not in modules:
        known = ", ".join(sorted(modules))
        raise ValueError(f"unknown metric {name!r}; nlpkit's metrics are: {known}")
    return modules[key]


def _metric_class(name: str) -> tuple[type[evaluate.EvaluationModule], str]:
    """Load metric `name` through `evaluate.load` once per process; return its class and script hash."""
    path = metric_path(name)
    with _THREAD_LOCK:
        if path.name not in _LOADED:
            # evaluate copies the script into the HF modules cache under its own file lock:
            # safe when several processes load at once.
            module = evaluate.load(str(path), keep_in_memory=True)
            _LOADED[path.name] = (type(module), module._hash)
        return _LOADED[path.name]


def load_metric(name: str, **init_kwargs: Any) -> evaluate.EvaluationModule:
    """A new instance of nlpkit's metric `name`, loaded offline from its local folder.

    The script is loaded (copied into the HF modules cache and imported) once per process; each call returns
    a fresh instance with its own, empty `add_batch` buffer.

    Args:
        name: one of `available_metrics()`.
        **init_kwargs: passed to the module's constructor (`evaluate.EvaluationModule`), e.g. `seed`, or
            `num_process` / `process_id` / `experiment_id` for evaluate's own file-based distributed mode.
            `keep_in_memory` defaults to True (False when `num_process > 1`, which requires it).

    Raises:
        ValueError: unknown `name`.
    """
    cls, script_hash = _metric_class(name)
    init_kwargs.setdefault("keep_in_memory", init_kwargs.get("num_process", 1) == 1)
    module = cls(hash=script_hash, **init_kwargs)
    module.download_and_prepare()
    return module


def compute(name: str, **kwargs: Any) -> dict[str, Any]:
    """Compute metric `name` in one call: `load_metric(name).compute(**kwargs)`.

    Example: `compute("sacrebleu", predictions=hyps, references=refs, tokenize="13a")["score"]`.
    """
    result = load_metric(name).compute(**kwargs)
    if result is None:  # only non-main processes of evaluate's distributed mode get None
        raise RuntimeError(f"metric {name!r} returned no result")
    return result
