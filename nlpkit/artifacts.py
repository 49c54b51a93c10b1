"""What a run leaves on disk, written and read in one place.

* The **model descriptor** ``nlpkit_task.json`` sits next to every saved model: which task made it, the run's
  resolved config, what the task learned from the data (:class:`~nlpkit.task.DataInfo` as a dict: labels,
  languages, ...) and any task-specific facts. :func:`write_descriptor` / :func:`read_descriptor` are the only
  code that touches the file.
* **Atomic writes**: :func:`atomic_write` (a file) and :func:`atomic_dir` (a folder such as ``model/``) write
  under a temporary name and rename into place, so an interrupted run never leaves a half-written model or
  report under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlpkit.errors import ModelNotFoundError

__all__ = [
    "TASK_FILE",
    "Descriptor",
    "atomic_dir",
    "atomic_write",
    "find_descriptor",
    "package_version",
    "read_descriptor",
    "saved_task",
    "write_descriptor",
]

TASK_FILE = "nlpkit_task.json"  # written next to a saved model: which task and config made it


@dataclass
class Descriptor:
    """The contents of ``nlpkit_task.json``."""

    task: str
    config: dict[str, Any]
    #: What ``load_data`` learned (the task's ``DataInfo`` as a dict), handed back to ``build_model`` on reload.
    info: dict[str, Any] = field(default_factory=dict)
    #: Task-specific facts about the saved files (word2vec: vocabulary size, file names, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    #: The folder the descriptor was read from.
    folder: Path | None = None


def package_version() -> str:
    """nlpkit's installed version (the ``nlpkit-hf`` distribution), or ``unknown`` when run from a bare checkout."""
    from importlib import metadata

    try:
        return metadata.version("nlpkit-hf")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_descriptor(directory: str | Path, task: str, config: dict[str, Any], info: dict[str, Any] | None = None,
                     **extra: Any) -> Path:
    """Write ``nlpkit_task.json`` into ``directory`` (atomically); returns its path."""
    path = Path(directory) / TASK_FILE
    body = {"task": task, "config": config, "info": info or {}, **extra}
    atomic_write(path, json.dumps(body, indent=2, default=str))
    return path


def find_descriptor(path: str | Path) -> Path | None:
    """The descriptor of a model folder or of a run folder (its ``model/``), else None."""
    p = Path(path).expanduser()
    for candidate in (p / TASK_FILE, p / "model" / TASK_FILE):
        if candidate.is_file():
            return candidate
    return None


def read_descriptor(path: str | Path) -> Descriptor | None:
    """The descriptor of the model at ``path`` (a model folder or a run folder), or None if it has none."""
    found = find_descriptor(path)
    if found is None:
        return None
    try:
        body = json.loads(found.read_text())
        task, config = body.pop("task"), body.pop("config")
    except (json.JSONDecodeError, KeyError) as err:
        raise ModelNotFoundError(f"{found} is not a valid nlpkit model descriptor ({err}).") from err
    info = body.pop("info", None) or {}
    return Descriptor(task=task, config=config, info=info, extra=body, folder=found.parent)


def saved_task(path: str | Path) -> str | None:
    """The task that saved the model at ``path`` (nlpkit runs record it), else None."""
    d = read_descriptor(path)
    return d.task if d else None


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``, on error it is removed.

    ``with atomic_dir(run_dir / "model") as tmp: save_into(tmp)`` never leaves a half-written ``model/``.
    """
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
