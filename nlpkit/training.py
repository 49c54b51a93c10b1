"""The one accelerate training loop shared by every transformer task, with named events for what plugs in.

:class:`Loop` reads top to bottom: set up (data, model, loaders) -> ``before_training`` -> prepare (optimizer,
scheduler, resume) -> updates, with validation every ``train.eval_every`` -> ``on_train_end`` -> final
validation and test -> save -> ``on_save`` -> ``after_training``. Best-model keeping, early stopping, trackers,
LoRA adapters and a task's before/after measurements are callbacks on those events (:mod:`nlpkit.callbacks`),
not branches here.

Processes, devices and precision come only from the accelerate launch config.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader, Sampler
from transformers import get_scheduler
from transformers.trainer_pt_utils import LengthGroupedSampler

from nlpkit.artifacts import atomic_dir
from nlpkit.callbacks import BEST_DIR, BestModelKeeper, Callback, EarlyStopping, TrackerLogger
from nlpkit.errors import ConfigError, ModelNotFoundError, NlpkitError, UnsafeFileError, UsageError
from nlpkit.inference import length_order
from nlpkit.lora import trainable_parameters
from nlpkit.progress import progress_bar
from nlpkit.task import RunResults, Task
from nlpkit.throughput import gpu_training_figures

logger = logging.getLogger("nlpkit.training")

STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks the checkpoint complete
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_NO_RESUME = ("", "none", "no", "false", "False")  # values of ``resume`` that start fresh
SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------------------------- batches


class EpochSampler(Sampler[int]):
    """Shuffled (optionally length-grouped) indices, re-seeded from ``seed + epoch``.

    Being a pure function of (seed, epoch), every rank draws the same order and a resumed run replays the
    interrupted epoch exactly, so ``skip_first_batches`` lands on the right batch.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group_by_length
        self.epoch = 0

    # Not named set_epoch: accelerate calls set_epoch with its own per-process iteration count.
    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self.group:
            return iter(torch.randperm(len(self.lengths), generator=g).tolist())
        # transformers' sampler: random mega-batches of 50 batches, each sorted by length.
        return iter(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=g))


def encode_splits(task: Task, raw: DatasetDict, accelerator: Accelerator) -> DatasetDict:
    """Tokenize every split once (main process first, so the others reuse datasets' cache).

    ``data.num_proc`` processes tokenize in parallel (each with at least a thousand rows; they get the task
    without its model, which encode does not use and which would be pickled to every worker). The cache key is
    the split, the task's encode code, tokenizer and config (:func:`nlpkit.data.encode_fingerprints`), so a
    second identical run reads the tokenized splits back instead of tokenizing again.
    """
    import copy
    import os

    from nlpkit.data import encode_fingerprints

    num_proc = getattr(getattr(task.cfg, "data", None), "num_proc", None) or 1
    fingerprints = encode_fingerprints(task, raw)
    light = copy.copy(task)
    light.model = None

    def encode(name: str, split: Dataset) -> Dataset:
        procs = min(num_proc, len(split) // 1000)
        if procs < 2:
            return split.map(task.encode, batched=True, remove_columns=split.column_names,
                             new_fingerprint=fingerprints[name], desc=f"Tokenizing {name}")
        # One tokenizer thread per worker: Rust threads in every worker would fight over the same cores.
        before = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            return split.map(light.encode, batched=True, remove_columns=split.column_names, num_proc=procs,
                             new_fingerprint=fingerprints[name], desc=f"Tokenizing {name}")
        finally:
            if before is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = before

    with accelerator.main_process_first():
        return DatasetDict({name: encode(name, split) for name, split in raw.items()})


def eval_loader(task: Task, ds: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Evaluation batches sorted by length (longest first): least padding, and OOM shows up at once."""
    return DataLoader(ds.select(length_order(task.lengths(ds))), batch_size=batch_size, shuffle=False,
                      collate_fn=task.collate, num_workers=num_workers)


# --------------------------------------------------------------------------------------------- evaluation


def _gather(accelerator: Accelerator, out: dict[str, Any]) -> dict[str, list]:
    """Gather one batch's per-example outputs from every process, in a plain list per key.

    Tensors are padded to one width with -100 and gathered as tensors; any other values (strings, dicts) go
    through accelerate's object gathering. ``gather_for_metrics`` drops the samples duplicated to even out the
    last batch across processes, so metrics are over exactly the split's examples.
    """
    tensors = {k: v for k, v in out.items() if torch.is_tensor(v)}
    objects = {k: list(v) for k, v in out.items() if not torch.is_tensor(v)}
    gathered: dict[str, list] = {}
    if tensors:
        tensors = {k: accelerator.pad_across_processes(v, dim=1, pad_index=-100) if v.ndim > 1 else v
                   for k, v in tensors.items()}
        for k, v in accelerator.gather_for_metrics(tensors).items():
            gathered[k] = v.cpu().tolist()
    if objects:
        keys = list(objects)
        rows = [dict(zip(keys, values)) for values in zip(*(objects[k] for k in keys))]
        rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
        for k in keys:
            gathered[k] = [r[k] for r in rows]
    return gathered


@torch.no_grad()
def evaluate_loader(task: Task, model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator,
                    desc: str = "Evaluating") -> tuple[dict[str, Any], dict[str, list]]:
    """Run :meth:`Task.eval_step` over a prepared loader; gather across processes; compute metrics."""
    was_training = model.training
    model.eval()
    collected: dict[str, list] = defaultdict(list)
    start = time.perf_counter()
    with accelerator.autocast():
        for batch in progress_bar(loader, show=accelerator.is_local_main_process, desc=desc, leave=False):
            for k, v in _gather(accelerator, task.eval_step(model, batch)).items():
                collected[k].extend(v)
    seconds = time.perf_counter() - start
    metrics = task.compute_metrics(dict(collected))
    n = len(next(iter(collected.values()))) if collected else 0
    metrics.update(samples=n, runtime_s=round(seconds, 3), samples_per_s=round(n / max(seconds, 1e-9), 2))
    model.train(was_training)
    return metrics, dict(collected)


# --------------------------------------------------------------------------------------------- the run folder


#: What a run folder holds that is worth keeping after a failure: something to resume or to use.
_KEPT_OUTPUTS = ("model", BEST_DIR, "report.json")


class RunFolder:
    """The folder a run writes into, claimed before anything is written (:meth:`claim`, on the main process).

    A run never writes into a user's folder by accident: an ``output_dir`` that already holds files (or another
    run) is refused unless ``overwrite=true`` or ``resume=...`` says the run belongs there. A run that fails
    before saving anything usable (a checkpoint, a model, a report) leaves nothing behind in a folder it owns
    (:meth:`discard_if_unused`), so the same command can simply be run again.
    """

    def __init__(self, path: Path, made: bool, owned: bool):
        self.path = path
        #: This run created the folder itself.
        self.made = made
        #: Everything in the folder is this run's (it was created, or found empty).
        self.owned = owned

    @classmethod
    def claim(cls, output_dir: str | Path | None, task: str, *, overwrite: bool = False,
              resume: str = "none") -> RunFolder:
        """Check ``output_dir`` and create it; ``None``: a new ``outputs/<task>-<timestamp>`` folder.

        Raises :class:`~nlpkit.errors.ConfigError` (nothing written) for a file, or for a folder that holds
        files when neither ``overwrite`` nor ``resume`` is set. With ``overwrite``, the earlier run's complete
        checkpoints and best-model folder are removed (they would be resumed, or would push the new run's own
        checkpoints out); its model and reports are replaced when the new run writes them; other files stay.
        """
        if output_dir is None or str(output_dir) == "":
            return cls._new_default(task)
        path = Path(output_dir)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output_dir={path} is a file; give a folder for the run (a new or empty one).")
        try:
            path.mkdir(parents=True)
            return cls(path, made=True, owned=True)
        except FileExistsError:
            pass
        except NotADirectoryError as err:
            file = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
            raise ConfigError(f"output_dir={path}: {file} is a file, not a folder; choose another "
                              f"output_dir.") from err
        held = sorted(p.name for p in path.iterdir())
        if not held:
            return cls(path, made=False, owned=True)
        if resume not in _NO_RESUME:
            return cls(path, made=False, owned=False)
        if not overwrite:
            what = "another run" if (path / "config.yaml").is_file() else "files"
            shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
            raise ConfigError(f"output_dir={path} already holds {what} ({shown}); a run writes into a new or empty "
                              f"folder. Set overwrite=true to write this run there (replacing an earlier run's "
                              f"model, reports and checkpoints), resume=auto to continue the run saved there, or "
                              f"choose another output_dir.")
        stale = [*list_checkpoints(path), *([path / BEST_DIR] if (path / BEST_DIR).is_dir() else [])]
        for old in stale:
            shutil.rmtree(old)
        if stale:
            logger.info("overwrite=true: removed the earlier run's %s from %s",
                        ", ".join(p.name for p in stale), path)
        return cls(path, made=False, owned=False)

    @classmethod
    def _new_default(cls, task: str) -> RunFolder:
        """``outputs/<task>-<timestamp>``, created exclusively (``-2``, ``-3``, ... when two runs start together)."""
        base = Path("outputs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            path = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                path.mkdir()
                return cls(path, made=True, owned=True)
            except FileExistsError:
                continue
        raise AssertionError("unreachable")

    def discard_if_unused(self) -> bool:
        """After a failure: if the folder is this run's and holds nothing usable (no complete checkpoint, model
        or report), remove what the run wrote in it (the folder too, if the run made it). True if it did."""
        path = self.path
        if not self.owned or not path.is_dir():
            return False
        if list_checkpoints(path) or any((path / name).exists() for name in _KEPT_OUTPUTS):
            return False
        if self.made:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for entry in path.iterdir():  # the folder was empty before the run: all of this is the run's
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        return True


# --------------------------------------------------------------------------------------------- checkpoints


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (those with a state file), oldest first."""
    found = []
    for p in Path(run_dir).glob("checkpoint-*"):
        m = _CKPT.match(p.name)
        if m and (p / STATE_FILE).exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` -> newest complete one in ``run_dir``, a path, or None."""
    if resume in _NO_RESUME:
        return None
    if resume == "auto":
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            logger.info("resume=auto: no complete checkpoint in %s, starting fresh", run_dir)
            return None
        return ckpts[-1]
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise ModelNotFoundError(f"resume={resume}: not a complete nlpkit checkpoint (no {STATE_FILE}). "
                                f"Use resume=auto to pick the newest complete one in output_dir.")
    return path


def check_checkpoint(ckpt: Path) -> None:
    """Refuse a checkpoint whose pickled state holds anything but tensors and plain values.

    ``accelerator.load_state`` reads the weights from safetensors and the optimizer and RNG states with
    ``torch.load(weights_only=True)``, but the state of objects registered with ``register_for_checkpointing``
    (the LR scheduler: ``custom_checkpoint_*.pkl``) with ``weights_only=False``, which would run any code a
    crafted file names; and a refused RNG file is only logged. Reading those files here first through
    accelerate's own weights-only loader turns such a checkpoint into an error before accelerate unpickles it.
    """
    import pickle

    from accelerate.utils import load as weights_only_load

    # every pickle accelerate may read: the optimizer's, the scheduler's and the sampler's states (*.bin), the
    # registered objects' and the RNG states (*.pkl), and pickled model weights (pytorch_model.bin, *.pt)
    pickles = sorted(p for p in ckpt.rglob("*") if p.suffix in (".pkl", ".bin", ".pt", ".pth") and p.is_file())
    for path in pickles:
        try:
            weights_only_load(path, map_location="cpu", weights_only=True)
        except (EOFError, RuntimeError) as err:  # a truncated or damaged file: not a security matter
            raise ModelNotFoundError(f"Cannot resume from {ckpt}: {path.name} is damaged ({type(err).__name__}: "
                                     f"{str(err).splitlines()[0] if str(err) else 'truncated'}). Resume from an "
                                     f"earlier checkpoint (resume=PATH) or start fresh (resume=none).") from err
        except pickle.UnpicklingError as err:
            reason = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln),
                          str(err).splitlines()[0] if str(err) else "refused")
            raise UnsafeFileError(f"Refusing to resume from {ckpt}: {path.relative_to(ckpt)} holds more than tensors "
                                  f"and plain values, and unpickling it could run code its author put in it "
                                  f"(torch.load weights_only=True: {reason}). Resume only from checkpoints your "
                                  f"own runs wrote, or start fresh (resume=none).") from err


#: What a checkpoint's state file must hold, and of what kind, for a run to continue from it.
_STATE_KEYS = {"global_step": int, "epoch": int, "batches_in_epoch": int, "history": list}


def read_state(ckpt: Path) -> dict[str, Any]:
    """The loop state saved in ``ckpt``'s state file, checked: a :class:`ModelNotFoundError` naming the file and
    the key when it is not JSON or lacks a counter the loop continues from (instead of a traceback mid-resume)."""
    path = ckpt / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelNotFoundError(f"Cannot resume from {ckpt}: {path.name} is not readable JSON ({err}). Resume "
                                 f"from another checkpoint (resume=PATH) or start fresh (resume=none).") from err
    if not isinstance(state, dict):
        raise ModelNotFoundError(f"Cannot resume from {ckpt}: {path.name} holds a {type(state).__name__}, not the "
                                 f"JSON object nlpkit writes.")
    for key, kind in _STATE_KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            which = "no" if key not in state else "a bad"
            raise ModelNotFoundError(f"Cannot resume from {ckpt}: {path.name} has {which} `{key}` ({value!r}; "
                                     f"expected {'an integer' if kind is int else 'a list'}). "
                                     f"Resume from another checkpoint (resume=PATH) or start fresh (resume=none).")
    return state


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict[str, Any], keep: int,
                    per_machine: bool = False) -> None:
    """``save_state`` into checkpoint-N, then write the state file last (marks it complete); prune old.

    Written once per run, by the main process, into a folder every machine shares; with ``per_machine`` (the run
    folder is on each machine's own disk, :func:`run_dir_per_machine`) by the first process of every machine
    into its own copy, accelerate's ``save_on_each_node`` doing the same for the weights and optimizer state.
    """
    ckpt = run_dir / f"checkpoint-{state['global_step']}"
    accelerator.project_configuration.save_on_each_node = per_machine
    accelerator.save_state(str(ckpt))
    accelerator.wait_for_everyone()
    if accelerator.is_local_main_process if per_machine else accelerator.is_main_process:
        (ckpt / STATE_FILE).write_text(json.dumps(state, indent=2))
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------------------------- several machines


def machines(accelerator: Accelerator) -> int:
    """How many machines the run spans: torchrun's world size over its processes per machine."""
    import os

    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes) or 1)
    return max(1, accelerator.num_processes // max(per_machine, 1))


def check_launch(num_processes: int) -> None:
    """Refuse a process that ``accelerate launch`` started alone although the launch asked for several.

    With ``--cpu`` (or ``use_cpu: true`` in a config) accelerate's single-process launcher runs the script once per
    machine, each a world of one, while exporting ``MASTER_ADDR``/``MASTER_PORT`` for the machines it was told
    about: every machine then runs its own copy of the run as "the main process", all writing into the same run
    folder (checkpoints and models vanish under each other: ``SafetensorError ... No such file or directory``).
    Raises :class:`~nlpkit.errors.ConfigError` before anything is written.
    """
    import os

    world = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    launched = "ACCELERATE_MIXED_PRECISION" in os.environ  # set by accelerate launch on every launcher
    if (num_processes == 1 and launched and os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")
            and not any(os.environ.get(k) for k in world)):
        raise ConfigError(
            "accelerate launch started this process alone although it was asked for several processes or "
            "machines (MASTER_ADDR is set, WORLD_SIZE is not): `--cpu` / `use_cpu: true` makes accelerate use its "
            "single-process launcher, and every machine would run its own copy of the run into the same folder. "
            "On CPUs launch with ACCELERATE_USE_CPU=1 and --multi_gpu (accelerate_configs/multi_node_cpu.yaml), "
            "or unset MASTER_ADDR for a one-process run.")


def run_dir_per_machine(accelerator: Accelerator, run_dir: Path) -> bool:
    """Whether ``run_dir`` is on each machine's own disk (True) rather than one folder all machines share.

    The main process writes a probe file with a fresh random name into its run folder; the first process of every
    machine looks for it. Always False on one machine. Every process must call this (it holds collectives).
    """
    if machines(accelerator) <= 1:
        return False
    import secrets

    from accelerate.utils import broadcast_object_list, gather_object

    name = [f".nlpkit-probe-{secrets.token_hex(8)}" if accelerator.is_main_process else None]
    if accelerator.is_main_process:
        (run_dir / name[0]).write_text("written by the main process to tell shared from per-machine storage\n")
    broadcast_object_list(name)
    probe = run_dir / str(name[0])
    missing = gather_object([accelerator.is_local_main_process and not probe.is_file()])
    if accelerator.is_main_process:
        probe.unlink(missing_ok=True)
    per_machine = any(missing)
    if per_machine and accelerator.is_local_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    return per_machine


def decided_on_main(state: Any, decide: Callable[[], str | None], catch: type[Exception] | tuple[type[Exception], ...],
                    refused: type[NlpkitError]) -> str | None:
    """``decide()`` run on the main process only, and its answer (a string or None) on every process of ``state``
    (an ``Accelerator`` or ``PartialState``). An error of type ``catch`` that it raises stops every process: as it
    is on the main process, as ``refused(message)`` on the others, which would otherwise wait for an answer that
    never comes. Every process must call this (it holds a collective)."""
    from accelerate.utils import broadcast_object_list

    shared: list[str | None] = [None, None]  # answer, error message
    error: Exception | None = None
    if state.is_main_process:
        try:
            shared[0] = decide()
        except catch as err:  # raised below, once the other processes know
            error, shared[1] = err, str(err)
    if state.num_processes > 1:
        broadcast_object_list(shared)
    if error is not None:
        raise error
    if shared[1] is not None:
        raise refused(shared[1])
    return shared[0]


def agree_resume(accelerator: Accelerator, resume: str, run_dir: Path, per_machine: bool = False) -> Path | None:
    """:func:`resolve_resume` decided once, on the main process, and the same checkpoint used everywhere.

    With ``per_machine`` run folders, every machine must hold that checkpoint complete in its own copy: a
    :class:`~nlpkit.errors.ModelNotFoundError` on every process names the machines that lack it (one machine
    resuming while another starts fresh would train on silently different weights).
    """
    from accelerate.utils import gather_object

    def checkpoint() -> str | None:
        found = resolve_resume(resume, run_dir)
        return None if found is None else str(found)

    chosen = decided_on_main(accelerator, checkpoint, ModelNotFoundError, ModelNotFoundError)
    if chosen is None:
        return None
    ckpt = Path(chosen)
    if per_machine:
        lacks = gather_object([accelerator.is_local_main_process and not (ckpt / STATE_FILE).is_file()])
        per = max(1, accelerator.num_processes // machines(accelerator))
        without = sorted({i // per for i, lacking in enumerate(lacks) if lacking})
        if without:
            raise ModelNotFoundError(
                f"resume={resume}: {ckpt} is complete on machine 0 but not on machine(s) "
                f"{', '.join(map(str, without))}, whose run folder is on its own disk. Copy that checkpoint folder "
                f"there (same path), or resume from one every machine holds (resume=PATH).")
    return ckpt


# --------------------------------------------------------------------------------------------- the loop


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # biases and norm weights are not decayed (the standard BERT/GPT recipe)
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is ~10x faster per step (CPU and CUDA); the HF Trainer defaults to it too
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


class Loop:
    """The shared trainer: ``Loop(task, accelerator, run_dir).fit()`` -> :class:`~nlpkit.task.RunResults`.

    ``callbacks``: more callbacks, fired after the loop's own and the task's (e.g. a sweep's pruning).
    """

    required_hooks: ClassVar[tuple[str, ...]] = ("load_data", "build_model", "encode", "collate", "eval_step",
                                                 "compute_metrics", "predict")

    def __init__(self, task: Task, accelerator: Accelerator, run_dir: Path, callbacks: Iterable[Callback] = ()):
        self.task, self.accelerator, self.run_dir = task, accelerator, Path(run_dir)
        self.cfg, self.tcfg = task.cfg, task.cfg.train
        self.callbacks: list[Callback] = [TrackerLogger(), BestModelKeeper(),
                                          EarlyStopping(self.tcfg.early_stopping_patience), *task.callbacks(),
                                          *callbacks]
        self.results = RunResults()
        #: Saved in every checkpoint (restored on resume): counters, best metric, history.
        self.state: dict[str, Any] = {"global_step": 0, "epoch": 0, "batches_in_epoch": 0, "best_metric": None,
                                      "best_step": None, "evals_without_improvement": 0, "history": [],
                                      "samples_seen": 0, "tokens_seen": 0, "train_seconds": 0.0,
                                      "peak_gpu_bytes": 0}
        self.model: Any = None
        self.loaders: dict[str, DataLoader] = {}
        self.finished = False
        self._stop: tuple[str, bool] | None = None
        #: Training rows come from a stream (``data.streaming``, :mod:`nlpkit.streaming`).
        self.streaming = False
        #: The run folder is on each machine's own disk (:func:`run_dir_per_machine`), decided in :meth:`setup`.
        self.per_machine = False

    @property
    def writes_checkpoints(self) -> bool:
        """Whether this process writes checkpoint files (and the best model) into its machine's run folder: the
        main process, or the first process of every machine when each has its own run folder. The final model
        and the reports are written once, by the main process, whatever the storage."""
        acc = self.accelerator
        return acc.is_local_main_process if self.per_machine else acc.is_main_process

    # ------------------------------------------------------------------ events
    def fire(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback, in order."""
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def request_stop(self, reason: str, finished: bool = False) -> None:
        """Stop after the current update. ``finished``: the run still counts as complete (final evaluation and
        save happen), as with early stopping; otherwise it ends like an interruption (resume later)."""
        self._stop = (reason, finished)

    def log(self, values: dict[str, float]) -> None:
        """Send scalars to the callbacks' ``on_log`` (trackers) at the current update."""
        self.fire("on_log", values, self.state["global_step"])

    def evaluate(self, split: str, model: Any = None, desc: str | None = None) -> tuple[dict[str, Any], dict]:
        """Metrics and gathered outputs of ``model`` (default: the loop's) on the validation or test split."""
        return evaluate_loader(self.task, model if model is not None else self.model, self.loaders[split],
                               self.accelerator, desc=desc or split.capitalize())

    # ------------------------------------------------------------------ phases
    def setup(self) -> None:
        """Seed, load and encode the data, build the model, make the loaders (validation/test prepared)."""
        task, acc, tcfg = self.task, self.accelerator, self.tcfg
        self.per_machine = run_dir_per_machine(acc, self.run_dir)
        if self.per_machine:
            acc.print(f"{self.run_dir} is on each machine's own disk: every machine keeps its own checkpoints")
        set_seed(self.cfg.seed)
        self.streaming = bool(getattr(self.cfg.data, "streaming", False))
        with acc.main_process_first():  # the main process fetches/converts catalog assets once
            if self.streaming:  # bounded validation/test in memory, training rows streamed (nlpkit.streaming)
                from nlpkit.streaming import load_streaming

                data, train_stream = load_streaming(task)
            else:
                data = task.load_data()
            task.load_model(data.info)
        self.results.data_sizes = {k: len(v) for k, v in data.splits.items()}
        self.results.notes.update(data.notes)
        if self.streaming:
            from nlpkit.streaming import TrainStream, encoded_stream

            self.results.data_sizes["train"] = "streamed"
            encoded = encode_splits(task, DatasetDict({k: data.splits[k] for k in ("validation", "test")}), acc)
            stream = encoded_stream(task, train_stream, data, acc.process_index, acc.num_processes)
            self.sampler = self.loaders["train"] = TrainStream(stream, tcfg.batch_size, task.collate, acc,
                                                               self.cfg.seed, tcfg.num_workers)
        else:
            encoded = encode_splits(task, data.splits, acc)
        self.model = task.model.to(acc.device)
        if tcfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if not self.streaming:
            self.sampler = EpochSampler(task.lengths(encoded["train"]), tcfg.batch_size * acc.num_processes,
                                        self.cfg.seed, tcfg.group_by_length)
            # Its own generator: creating a DataLoader iterator otherwise draws from the global RNG, so a resumed
            # run (new iterator after load_state) would get different dropout masks than an uninterrupted one.
            self.loaders["train"] = DataLoader(encoded["train"], batch_size=tcfg.batch_size, sampler=self.sampler,
                                               collate_fn=task.collate, num_workers=tcfg.num_workers,
                                               generator=torch.Generator().manual_seed(self.cfg.seed))
        for split in ("validation", "test"):
            self.loaders[split] = acc.prepare(eval_loader(task, encoded[split], tcfg.eval_batch_size,
                                                          tcfg.num_workers))

    def prepare(self) -> None:
        """Optimizer, accelerate's wrapping, the schedule, and the state of a checkpoint to resume from."""
        acc, tcfg = self.accelerator, self.tcfg
        self.task.model = self.model  # a callback may have replaced it (LoRA): save what is trained
        optimizer = _optimizer(self.model, tcfg.lr, tcfg.weight_decay)
        if self.streaming:  # each process reads its own part of the stream: accelerate must not shard it again
            self.model, self.optimizer = acc.prepare(self.model, optimizer)
        else:
            self.model, self.optimizer, self.loaders["train"] = acc.prepare(self.model, optimizer,
                                                                            self.loaders["train"])
        if tcfg.compile:
            self.model = torch.compile(self.model)
        if self.streaming:  # no length: the run is train.max_steps updates, one "epoch" for eval_every=0
            self.updates_per_epoch = self.total_updates = tcfg.max_steps
        else:
            self.updates_per_epoch = max(1, math.ceil(len(self.loaders["train"]) / tcfg.grad_accum))
            self.total_updates = (tcfg.max_steps if tcfg.max_steps > 0
                                  else max(1, math.ceil(tcfg.epochs * self.updates_per_epoch)))
        # Stepped by hand once per real optimizer update (not prepared: a prepared scheduler steps once per
        # process), so warmup/decay lengths hold for any process count and accumulation.
        self.scheduler = get_scheduler(tcfg.scheduler, self.optimizer,
                                       num_warmup_steps=int(tcfg.warmup_ratio * self.total_updates),
                                       num_training_steps=self.total_updates)
        acc.register_for_checkpointing(self.scheduler)
        if self.streaming:  # every process's position in the stream, saved with each checkpoint
            acc.register_for_checkpointing(self.loaders["train"])
        ckpt = agree_resume(acc, self.cfg.resume, self.run_dir, self.per_machine)
        if ckpt is not None:
            saved = read_state(ckpt)  # a damaged state file fails before accelerate loads anything
            check_checkpoint(ckpt)  # before accelerate unpickles its extra state without weights_only
            acc.load_state(str(ckpt))
            # Samples consumed this epoch are what carries over when the number of processes changes.
            saved_world = saved.get("global_batch", tcfg.batch_size * acc.num_processes)
            saved["batches_in_epoch"] = (saved["batches_in_epoch"] * saved_world
                                         // (tcfg.batch_size * acc.num_processes))
            self.state.update(saved)
            acc.print(f"Resumed from {ckpt} at update {self.state['global_step']} (epoch {self.state['epoch']})")
        self.state["global_batch"] = tcfg.batch_size * acc.num_processes

    def _validate(self) -> None:
        """Validation during training: history, logs, ``after_evaluation``; then a checkpoint if due."""
        metrics, _ = self.evaluate("validation", desc="Validating")
        step = self.state["global_step"]
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.state["history"].append({"step": step, "epoch": round(step / self.updates_per_epoch, 3),
                                      **{f"eval_{k}": v for k, v in scalars.items()}})
        self.fire("on_log", {f"eval/{k}": v for k, v in scalars.items()}, step)
        value = metrics.get(self.task.main_metric)
        if isinstance(value, (int, float)):
            self.accelerator.print(f"step {step}: validation {self.task.main_metric}={value:.4f}")
        self.fire("after_evaluation", metrics)
        if self.tcfg.save_every <= 0:
            save_checkpoint(self.accelerator, self.run_dir, self.state, self.tcfg.keep_checkpoints, self.per_machine)

    def windows(self, loader: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """The micro-batches of each optimizer update: ``train.grad_accum`` of them (fewer at an epoch's end)."""
        batches = iter(loader)
        while window := list(itertools.islice(batches, self.tcfg.grad_accum)):
            yield window

    def backward_window(self, window: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward passes over the micro-batches of one optimizer update (gradients add up in
        ``.grad``; the optimizer is not stepped). Returns this process's loss sum and item count for the log.

        How each micro-batch's loss is weighted:

        * token-level tasks (:meth:`~nlpkit.task.Task.loss_items` counts target tokens): the targets of the whole
          window on every process are counted first, and each micro-batch's summed loss is divided by that
          total, then multiplied by the number of processes (DDP averages gradients over processes). Every target
          token then weighs the same, so accumulation 4 x batch 2 gives the gradients of batch 8, on one process
          or several; averaging per micro-batch would overweight the tokens of short micro-batches.
        * other tasks (classification): the mean loss of each micro-batch, averaged over the window.
        """
        acc, task = self.accelerator, self.task
        counts = [task.loss_items(batch) for batch in window]
        total = None
        if all(c is not None for c in counts):
            local = torch.stack([torch.as_tensor(c, device=acc.device) for c in counts]).sum()
            total = acc.reduce(local, reduction="sum").clamp(min=1)
        loss_sum = torch.zeros((), device=acc.device)
        items = torch.zeros((), device=acc.device)
        for i, batch in enumerate(window):
            last = i == len(window) - 1
            # The window is fetched before its first forward pass (to count its targets), as transformers'
            # Trainer does; accelerate's accumulate() would decide from the loader's end-of-data flag, which the
            # prefetch moves, so the loop says itself which micro-batch syncs gradients across processes.
            acc.gradient_state._set_sync_gradients(last)
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                if total is None:
                    loss = task.loss(self.model, batch)
                    scaled = loss / len(window)
                    loss_sum += loss.detach()
                    items += 1
                else:
                    loss = task.loss(self.model, batch, num_items_in_batch=total)
                    scaled = loss * acc.num_processes
                    loss_sum += loss.detach() * total  # this micro-batch's summed loss
                    items += counts[i]
                # accelerate (or DeepSpeed) divides by its own gradient_accumulation_steps; the weights above
                # already average over the window.
                acc.backward(scaled * acc.gradient_accumulation_steps)
        return loss_sum, items

    def train(self) -> None:
        """Optimizer updates until the schedule ends or a stop is requested."""
        acc, tcfg, state = self.accelerator, self.tcfg, self.state
        eval_every = tcfg.eval_every if tcfg.eval_every > 0 else self.updates_per_epoch
        bar = progress_bar(total=self.total_updates, initial=state["global_step"], desc="Training", unit="step",
                           show=acc.is_local_main_process, dynamic_ncols=True)
        # The logged loss is a mean per item (target token, or micro-batch for mean-loss tasks) over the log
        # interval and all processes.
        run_loss, run_items = torch.zeros((), device=acc.device), torch.zeros((), device=acc.device)
        tokens = torch.zeros((), device=acc.device, dtype=torch.long)
        start = time.perf_counter()

        def flush() -> None:
            # Into the state before every checkpoint, so a resumed run's throughput counts the whole run;
            # the clock restarts after evaluating/checkpointing, which stay out of the throughput.
            state["train_seconds"] += time.perf_counter() - start
            state["tokens_seen"] += int(acc.reduce(tokens, reduction="sum").item())
            tokens.zero_()
            if acc.device.type == "cuda":
                state["peak_gpu_bytes"] = max(state["peak_gpu_bytes"], torch.cuda.max_memory_allocated(acc.device))

        self.model.train()
        done = state["global_step"] >= self.total_updates
        while not done:
            self.sampler.use_epoch(state["epoch"])
            loader = self.loaders["train"]
            if state["batches_in_epoch"] and not self.streaming:  # a stream skips to its own saved position
                loader = acc.skip_first_batches(loader, state["batches_in_epoch"])
            for window in self.windows(loader):
                loss_sum, items = self.backward_window(window)
                if tcfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.model.parameters(), tcfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                run_loss += loss_sum
                run_items += items
                for batch in window:
                    state["batches_in_epoch"] += 1
                    state["samples_seen"] += len(batch["input_ids"]) * acc.num_processes
                    # packed rows have no attention mask: their few padding tokens count too
                    mask = batch.get("attention_mask")
                    tokens += mask.sum() if mask is not None else batch["input_ids"].numel()
                # ---- one optimizer update happened
                if not acc.optimizer_step_was_skipped:
                    self.scheduler.step()
                state["global_step"] += 1
                bar.update(1)
                step = state["global_step"]
                if step % tcfg.log_every == 0 or step == self.total_updates:
                    mean_loss = (acc.reduce(run_loss, reduction="sum")
                                 / acc.reduce(run_items, reduction="sum").clamp(min=1)).item()
                    lr = self.scheduler.get_last_lr()[0]
                    state["history"].append({"step": step, "loss": round(mean_loss, 5), "lr": lr})
                    self.log({"train/loss": mean_loss, "train/lr": lr})
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                    run_loss.zero_()
                    run_items.zero_()
                if step % eval_every == 0 or step == self.total_updates:
                    flush()
                    self._validate()
                    start = time.perf_counter()
                if tcfg.save_every > 0 and step % tcfg.save_every == 0:
                    flush()
                    save_checkpoint(acc, self.run_dir, state, tcfg.keep_checkpoints, self.per_machine)
                    start = time.perf_counter()
                if (self._stop is None and tcfg.stop_after_steps is not None
                        and tcfg.stop_after_steps <= step < self.total_updates):
                    self.request_stop(f"stopped after {step} updates (train.stop_after_steps)")
                if self._stop is not None or step >= self.total_updates:
                    done = True
                    break
            else:
                state["epoch"] += 1
                state["batches_in_epoch"] = 0
        bar.close()
        flush()
        acc.wait_for_everyone()
        reason, finished = self._stop if self._stop is not None else ("completed", True)
        self.results.stop_reason, self.finished = reason, finished

    def _summarise(self) -> None:
        acc, state, r = self.accelerator, self.state, self.results
        seconds, model = state["train_seconds"], acc.unwrap_model(self.model)
        r.history, r.best_value, r.best_step = state["history"], state["best_metric"], state["best_step"]
        r.training = {
            "updates": state["global_step"], "samples": state["samples_seen"], "runtime_s": round(seconds, 2),
            "samples_per_s": round(state["samples_seen"] / max(seconds, 1e-9), 2),
            "processes": acc.num_processes, "mixed_precision": acc.mixed_precision, "device": str(acc.device),
            "effective_batch_size": state["global_batch"] * self.tcfg.grad_accum,
            "total_updates": self.total_updates, "updates_per_epoch": self.updates_per_epoch,
            "trainable_parameters": trainable_parameters(model)[0],
        }
        if state["tokens_seen"]:
            r.training.update(tokens=state["tokens_seen"],
                              tokens_per_s=round(state["tokens_seen"] / max(seconds, 1e-9), 1))
        r.training.update(gpu_training_figures(model, acc.device, state["tokens_seen"], state["samples_seen"],
                                               seconds, acc.num_processes, state["peak_gpu_bytes"]))

    def save(self) -> Path:
        """Save the final model atomically into ``run_dir/model`` (never half-written); fire ``on_save``."""
        acc, target = self.accelerator, self.run_dir / "model"
        weights = acc.get_state_dict(self.model)
        if acc.is_main_process:
            with atomic_dir(target) as tmp:
                self.task.save(tmp, state_dict=weights)
        acc.wait_for_everyone()
        self.fire("on_save", target)
        return target

    def fit(self) -> RunResults:
        """Set up, train, pick the best model, evaluate on validation and test, save. Returns the results."""
        self.setup()
        self.fire("before_training")
        self.prepare()
        self.train()
        self._summarise()
        self.fire("on_train_end")
        if self.finished:
            self.results.validation, _ = self.evaluate("validation", desc="Validating")
            self.results.test, self.results.test_outputs = self.evaluate("test", desc="Testing")
            self.save()
        self.fire("after_training")
        return self.results

    @classmethod
    def evaluate_split(cls, task: Task, split: str, accelerator: Accelerator) -> tuple[dict[str, Any], dict]:
        """Metrics and gathered per-example outputs of ``task``'s model (built from its config) on ``split`` of
        its data, scored as training scores it."""
        if split not in SPLITS:
            raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
        data = task.load_data()
        task.load_model(data.info)
        encoded = encode_splits(task, DatasetDict({split: data.splits[split]}), accelerator)
        model, loader = accelerator.prepare(task.model, eval_loader(task, encoded[split],
                                                                    task.cfg.train.eval_batch_size))
        return evaluate_loader(task, model, loader, accelerator, desc=f"Evaluating {split}")


def trainer_for(task_cls: type[Task]) -> Any:
    """The trainer class of a task: its own (``Task.trainer``) or the shared :class:`Loop`."""
    return task_cls.trainer or Loop


__all__ = ["EpochSampler", "Loop", "RunFolder", "agree_resume", "check_checkpoint", "check_launch", "encode_splits",
           "eval_loader", "evaluate_loader", "list_checkpoints", "machines", "read_state", "resolve_resume",
           "run_dir_per_machine", "save_checkpoint", "trainer_for"]
