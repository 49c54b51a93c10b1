"""Experiment trackers: which ones a run may name, how each is started, and what reaches them at the end.

accelerate runs the trackers (``Accelerator(log_with=cfg.trackers)``); this module holds what nlpkit decides
about them, so every trainer (the shared loop, word2vec's gensim trainer) and every run (``nlpkit tune``'s
trials included) logs the same way:

- :func:`check_trackers`: before anything starts, an unknown tracker name or one whose package is missing is a
  :class:`~nlpkit.errors.ConfigError` saying what to install (accelerate itself only warns and logs nothing).
- :func:`start_trackers`: one run per tracker, filed under ``tracker.project`` (default: the task), named
  ``tracker.run_name`` (default: the run folder's name), with ``tracker.tags``; the flattened config as params.
- :func:`log_run_end`: after the report is written, the final test metrics (``test/<metric>``) to every tracker,
  and the report, plots, config and model card as files to the trackers that store files (MLflow).
- :func:`closed_on_error`: a run that fails still closes its tracker runs (MLflow: status ``FAILED``, or
  ``KILLED`` on Ctrl-C), so the next run in the same process (a sweep's next trial) starts cleanly.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpkit.errors import ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from nlpkit.task import RunResults

logger = logging.getLogger("nlpkit.trackers")

__all__ = ["TRACKERS", "check_mlflow_store", "check_trackers", "closed_on_error", "flat_hparams", "init_kwargs",
           "log_run_end", "run_files", "start_trackers"]

#: The trackers accelerate knows, and what ``pip install`` makes each available.
TRACKERS: dict[str, str] = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": '"nlpkit-hf[mlflow]"',
    "comet_ml": "comet_ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}


def _installed(name: str) -> bool:
    """accelerate's own availability check (``accelerate.utils.is_<name>_available``), looked up when called."""
    import accelerate.utils

    check = getattr(accelerate.utils, f"is_{name}_available", None)
    if check is not None:
        return bool(check())
    return importlib.util.find_spec(name) is not None  # a tracker newer than this accelerate's checks


def _registered() -> set[str]:
    """Tracker names accelerate can start: its own, plus custom ones registered with ``register_tracker_class``."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return set(LOGGER_TYPE_TO_CLASS)


def check_trackers(names: Iterable[str]) -> None:
    """Raise a :class:`~nlpkit.errors.ConfigError` for a tracker name accelerate does not know or whose package
    is not installed; the message lists the known names or says what to ``pip install``."""
    names = [str(n) for n in names]
    if not names or "all" in names:  # `all`: whatever is installed, as accelerate defines it
        return
    known = set(TRACKERS) | _registered()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name.lower(), sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown tracker {name!r} in trackers={names}.{hint} Known trackers: "
                              f"{', '.join(sorted(known))}.")
    missing = [n for n in names if n in TRACKERS and not _installed(n)]
    if missing:
        install = " ".join(dict.fromkeys(TRACKERS[n] for n in missing))
        raise ConfigError(f"trackers={names} names {', '.join(missing)}, which is not installed: "
                          f"pip install {install} (or leave it out of trackers).")
    if "mlflow" in names:
        check_mlflow_store()


def check_mlflow_store() -> None:
    """Raise a :class:`~nlpkit.errors.ConfigError` before a run starts when ``MLFLOW_TRACKING_URI`` (or MLflow's
    default) is a folder, MLflow's file store, and the installed MLflow refuses it (MLflow 3 does unless
    ``MLFLOW_ALLOW_FILE_STORE=true``); the message gives the SQLite URL to use instead."""
    import importlib
    import os
    from urllib.parse import urlparse

    import mlflow

    allow = getattr(importlib.import_module("mlflow.environment_variables"), "MLFLOW_ALLOW_FILE_STORE", None)
    if allow is None or allow.get():  # an MLflow that still takes folders, or the user opted in
        return
    uri = mlflow.get_tracking_uri()
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return
    folder = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
    db = os.path.join(os.path.abspath(folder.parent), "mlflow.db")
    raise ConfigError(f"MLFLOW_TRACKING_URI={uri} is a folder (MLflow's file store), which MLflow "
                      f"{mlflow.__version__} no longer accepts. Use a database: "
                      f"MLFLOW_TRACKING_URI=sqlite:///{db} (or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder).")


# --------------------------------------------------------------------------------------------- start


def flat_hparams(cfg_dict: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dict into the scalars that trackers (TensorBoard's hparams, MLflow's params) accept."""
    flat: dict[str, Any] = {}
    for k, v in cfg_dict.items():
        if isinstance(v, dict):
            flat.update(flat_hparams(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


def init_kwargs(names: Iterable[str], run_name: str, tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """accelerate's ``init_kwargs``: the run name and tags in the argument each tracker takes.

    The project is accelerate's ``project_name`` (a W&B/Comet/ClearML/SwanLab/trackio project, an MLflow
    experiment; TensorBoard's sub-folder of ``logs/``). Trackers with list tags get ``key=value`` (``key`` alone
    for an empty value). TensorBoard and DVCLive take neither a run name nor tags.
    """
    tag_list = [f"{k}={v}" if v not in ("", None) else str(k) for k, v in tags.items()]
    per_tracker: dict[str, dict[str, Any]] = {
        "wandb": {"name": run_name, "tags": tag_list},
        "mlflow": {"run_name": run_name, "tags": {str(k): str(v) for k, v in tags.items()}},
        "clearml": {"task_name": run_name, "tags": tag_list},
        "swanlab": {"experiment_name": run_name, "tags": tag_list},
        "trackio": {"name": run_name},
    }
    names = set(names)
    if "comet_ml" in names:
        import comet_ml

        if hasattr(comet_ml, "ExperimentConfig"):  # comet_ml >= 3.41 (comet_ml.start); older ones take neither
            per_tracker["comet_ml"] = {"experiment_config": comet_ml.ExperimentConfig(name=run_name, tags=tag_list)}
    if "all" not in names:
        per_tracker = {k: v for k, v in per_tracker.items() if k in names}
    return per_tracker


def start_trackers(accelerator: Accelerator, cfg: Any, run_dir: Path) -> None:
    """Start a run in each of ``cfg.trackers`` (already in ``accelerator.log_with``), named by ``cfg.tracker``,
    with the flattened config as its params. Does nothing when no tracker is named or they already started."""
    if not accelerator.log_with or accelerator.trackers:
        return
    from nlpkit.config import to_dict

    t = cfg.tracker
    project = t.project or cfg.task
    run_name = t.run_name or Path(run_dir).name
    names = [str(n) for n in cfg.trackers]
    accelerator.init_trackers(project, config=flat_hparams(to_dict(cfg)),
                              init_kwargs=init_kwargs(names, run_name, dict(t.tags)))
    logger.info("Trackers %s: project %r, run %r", ", ".join(names), project, run_name)


# --------------------------------------------------------------------------------------------- end


def _scalars(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_files(run_dir: Path) -> list[tuple[Path, str | None]]:
    """The files a run hands to trackers, with their folder in the tracker's artifacts (None: the top):
    config.yaml, report.json, report.md, every plot, and the model card as ``model/README.md``."""
    run_dir = Path(run_dir)
    files: list[tuple[Path, str | None]] = [
        (run_dir / name, None) for name in ("config.yaml", "report.json", "report.md")]
    files += [(png, None) for png in sorted(run_dir.glob("*.png"))]
    files.append((run_dir / "model" / "README.md", "model"))
    return [(path, folder) for path, folder in files if path.is_file()]


def log_run_end(accelerator: Accelerator, run_dir: Path, results: RunResults) -> None:
    """After the report is written (main process): the test metrics as ``test/<metric>`` at the last update, and
    :func:`run_files` as artifacts of every tracker that stores files (MLflow's ``log_artifact``)."""
    if not accelerator.trackers:
        return
    test = _scalars(results.test)
    if test:
        accelerator.log({f"test/{k}": v for k, v in test.items()}, step=results.training.get("updates"))
    for tracker in accelerator.trackers:
        log_artifact = getattr(tracker, "log_artifact", None)
        if log_artifact is None:
            continue
        for path, folder in run_files(run_dir):
            log_artifact(str(path), artifact_path=folder)


@contextlib.contextmanager
def closed_on_error(accelerator: Accelerator) -> Iterator[None]:
    """Close the tracker runs if the block fails (MLflow marks its run ``FAILED``, ``KILLED`` on Ctrl-C), then
    re-raise. Without this an MLflow run stays active in the process and the next run cannot start one."""
    try:
        yield
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        if accelerator.is_main_process:
            for tracker in accelerator.trackers:
                try:
                    if tracker.name == "mlflow":
                        import mlflow

                        mlflow.end_run(status=status)
                    else:
                        tracker.finish()
                except Exception as close_err:  # never hide the run's own error behind a tracker's
                    logger.warning("Could not close the %s run: %s", tracker.name, close_err)
        accelerator.trackers.clear()
        raise
