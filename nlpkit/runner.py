"""Run a task end to end: accelerator, run folder, logging, the task's run, and the report."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, parse_flag_from_env

from nlpkit.config import RunConfig, save_config
from nlpkit.errors import ConfigError
from nlpkit.registry import get_task
from nlpkit.trackers import check_trackers, closed_on_error, log_run_end
from nlpkit.training import RunFolder, check_launch, decided_on_main, trainer_for

if TYPE_CHECKING:
    from nlpkit.callbacks import Callback

logger = logging.getLogger("nlpkit")


def setup_logging(main_process: bool) -> None:
    """INFO logs on the main process, warnings elsewhere; quiet the libraries' chatter."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if main_process else logging.WARNING, force=True)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-file checkpoint chatter
    datasets.logging.set_verbosity_error()
    if not main_process:
        datasets.disable_progress_bars()


def use_cpu_cores(state: PartialState) -> int | None:
    """On a CPU-only run, give each local process its share of the physical cores; returns the thread count set.

    ``accelerate launch`` without a config (or without ``--cpu``) does not know the run is CPU-only and exports
    ``OMP_NUM_THREADS=1``, which leaves all but one core idle on a laptop or a CPU server. ``NLPKIT_CPU_THREADS``
    sets the count explicitly (e.g. ``NLPKIT_CPU_THREADS=1`` to really use one thread).
    """
    if state.device.type != "cpu":
        return None
    import psutil
    import torch

    if os.environ.get("NLPKIT_CPU_THREADS"):
        threads = int(os.environ["NLPKIT_CPU_THREADS"])
    elif (os.environ.get("OMP_NUM_THREADS") == "1" and "ACCELERATE_MIXED_PRECISION" in os.environ
          and not parse_flag_from_env("ACCELERATE_USE_CPU")):
        local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        threads = max(1, (psutil.cpu_count(logical=False) or os.cpu_count() or 1) // max(local, 1))
    else:
        return None
    torch.set_num_threads(threads)
    return threads


def _claim_run_dir(cfg: RunConfig, state: PartialState) -> tuple[Path, RunFolder | None]:
    """The run folder, checked and created on the main process before anything is written, and shared with the
    others (timestamps differ per rank). Returns (path, the main process's claim; None elsewhere).

    A refused folder stops every process with the same one-line error, not only the main one.
    """
    folder: RunFolder | None = None

    def claim() -> str:
        nonlocal folder
        folder = RunFolder.claim(cfg.output_dir, cfg.task, overwrite=cfg.overwrite, resume=cfg.resume)
        return str(folder.path)

    return Path(str(decided_on_main(state, claim, Exception, ConfigError))), folder


def run(cfg: RunConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train and evaluate ``cfg.task`` as configured; write the run folder; return the report dict.

    ``callbacks``: more loop callbacks after the task's (e.g. ``nlpkit tune``'s pruning); for trainers that take
    them (the shared :class:`~nlpkit.training.Loop`). The run folder is ``cfg.output_dir``, refused when it
    already holds files unless ``cfg.overwrite`` or ``cfg.resume`` says so (:class:`~nlpkit.training.RunFolder`).
    """
    task_cls = get_task(cfg.task)
    check_trackers(cfg.trackers)  # a tracker that is not installed fails here, before any work
    task_cls.check_config(cfg)  # options only the task can judge (train.metric_for_best), before any work
    # Sets up the process group, so the run folder can be agreed on first. `cpu` must be given here as the
    # Accelerator would: without it, CPU-only multi-process launches (ACCELERATE_USE_CPU=1) stay 1 process.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    check_launch(state.num_processes)  # one process per machine, each its own run: refused before any write
    setup_logging(state.is_main_process)
    threads = use_cpu_cores(state)
    if threads is not None and state.is_main_process:
        logger.info("CPU run: %d torch thread(s) per process (NLPKIT_CPU_THREADS overrides)", threads)
    run_dir, folder = _claim_run_dir(cfg, state)
    try:
        return _run_in(run_dir, cfg, task_cls, callbacks)
    except BaseException:
        # A run that failed before saving anything usable leaves no folder holding only config.yaml and logs
        # (which would also stop the same command run again: the folder now holds "another run").
        if folder is not None and folder.discard_if_unused():
            logger.info("The run failed before saving a checkpoint or a model; removed what it wrote in %s", run_dir)
        raise


def _run_in(run_dir: Path, cfg: RunConfig, task_cls: type, callbacks: Sequence[Callback]) -> dict[str, Any]:
    """:func:`run` once the run folder is claimed."""
    from nlpkit.report import write_report

    accelerator = Accelerator(gradient_accumulation_steps=cfg.train.grad_accum,
                              log_with=list(cfg.trackers) or None,
                              project_config=ProjectConfiguration(project_dir=str(run_dir),
                                                                  logging_dir=str(run_dir / "logs")))
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
        logger.info("Run folder: %s (%d process(es), %s, mixed precision: %s)", run_dir,
                    accelerator.num_processes, accelerator.device, accelerator.mixed_precision)
    accelerator.wait_for_everyone()
    started = time.time()
    with closed_on_error(accelerator):  # a failed run still ends its tracker runs (MLflow: FAILED)
        task = task_cls(cfg, run_dir=run_dir)
        extra = {"callbacks": list(callbacks)} if callbacks else {}  # a custom trainer need not take any
        results = trainer_for(task_cls)(task, accelerator, run_dir, **extra).fit()
        results.wall_seconds = round(time.time() - started, 2)
        report: dict[str, Any] = {}
        if accelerator.is_main_process:
            report = write_report(run_dir, task, results)
            log_run_end(accelerator, run_dir, results)  # test metrics; report, plots, model card as artifacts
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes trackers (and, in accelerate >= 1.x, the process group): last
    return report
