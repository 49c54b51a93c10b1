"""What a run leaves on disk, written and read in one place.

* The **model descriptor** ``nlpkit_task.json`` sits next to every saved model: which task made it, the run's
  resolved config, what the task learned from the data (:class:`~nlpkit.task.DataInfo` as a dict: labels,
  languages, ...) and any task-specific facts. :func:`write_descriptor` / :func:`read_descriptor` are the only
  code that touches the file.
* **Atomic writes**: :func:`atomic_write` / :func:`atomic_file` (a file) and :func:`atomic_dir` (a folder such
  as ``model/``) write under a unique temporary name created exclusively and rename into place, so an
  interrupted run never leaves a half-written model or report under the final name, and a link planted in a
  run folder is refused, never written through (:func:`check_no_links`).
* **Reading inside a folder**: :func:`inside` is how every file a run or export names (a graph, a vectors file,
  a LoRA adapter's base) is found; a name or link that leaves the folder is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlpkit.errors import ModelNotFoundError, UnsafeFileError, UsageError

__all__ = [
    "TASK_FILE",
    "Descriptor",
    "atomic_dir",
    "atomic_file",
    "atomic_write",
    "check_links_inside",
    "check_no_links",
    "find_descriptor",
    "inside",
    "make_dir",
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
        body = json.loads(found.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelNotFoundError(f"{found} is not a valid nlpkit model descriptor: not JSON ({err}).") from err
    if not isinstance(body, dict):
        raise ModelNotFoundError(f"{found} is not a valid nlpkit model descriptor: expected a JSON object with "
                                 f"`task`, `config` and `info`, found a {type(body).__name__}.")
    expected = {"task": str, "config": dict, "info": (dict, type(None))}
    for key, kind in expected.items():
        if key not in body and key != "info":
            raise ModelNotFoundError(f"{found} is not a valid nlpkit model descriptor: it has no `{key}` key.")
        if not isinstance(body.get(key), kind):
            raise ModelNotFoundError(f"{found} is not a valid nlpkit model descriptor: `{key}` is a "
                                     f"{type(body.get(key)).__name__}, expected a "
                                     f"{'string' if kind is str else 'JSON object'}.")
    task, config = body.pop("task"), body.pop("config")
    info = body.pop("info", None) or {}
    return Descriptor(task=task, config=config, info=info, extra=body, folder=found.parent)


def saved_task(path: str | Path) -> str | None:
    """The task that saved the model at ``path`` (nlpkit runs record it), else None."""
    d = read_descriptor(path)
    return d.task if d else None


def inside(folder: str | Path, name: str | Path) -> Path:
    """``folder / name``, refused (:class:`UnsafeFileError`) unless it stays inside ``folder``.

    ``name`` comes from a file someone else may have written (a descriptor's ``fallback.file``, a vectors file
    name, an adapter's base folder), so an absolute name, a ``..`` and a link (of ``name`` or of a folder on
    its way) that resolves outside ``folder`` are all refused: loading a run or an export reads only what it
    holds. Links that stay inside are followed.
    """
    folder = Path(folder)
    rel = Path(name)
    path = folder / rel
    if rel.is_absolute() or ".." in rel.parts or not str(name):
        raise UnsafeFileError(f"{folder} names the file {str(name)!r}, which is not a plain name inside it: "
                              f"nlpkit reads only files inside the folder it loads. Copy the file into "
                              f"{folder} and name it relative to it.")
    resolved, real_folder = path.resolve(), folder.resolve()
    if not resolved.is_relative_to(real_folder):
        raise UnsafeFileError(f"{path} resolves to {resolved}, outside {folder} (a symbolic link leaves it): "
                              f"nlpkit reads only files inside the folder it loads. Replace the link with the "
                              f"file itself.")
    return path


def check_links_inside(folder: str | Path) -> None:
    """Refuse (:class:`UnsafeFileError`) a folder holding a link, at any depth, that resolves outside it: for
    folders whose files are read by a library that opens names of its own (ONNX Runtime follows a graph's
    external-data names), where :func:`inside` cannot be asked about each."""
    folder = Path(folder)
    for entry in folder.rglob("*"):
        if entry.is_symlink():
            inside(folder, entry.relative_to(folder))


def _lexically_inside(path: Path, root: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))


def check_no_links(path: str | Path, root: str | Path | None = None) -> None:
    """Refuse (:class:`UnsafeFileError`) when ``path`` or any folder between ``root`` (exclusive) and ``path`` is a
    symbolic link. ``root`` defaults to ``path``'s folder, so only ``path`` itself is checked.

    A run or export folder may come from someone else: a link planted in it (``eval-own-test -> ~/.ssh``, a
    ``model/`` pointing elsewhere) would make nlpkit write outside the folder. ``root`` itself may be a link:
    where the user keeps their runs is their choice.
    """
    path = Path(path)
    root = path.parent if root is None else Path(root)
    if not _lexically_inside(path, root):
        raise ValueError(f"{path} is not inside {root}")
    current = Path(os.path.abspath(root))
    for part in Path(os.path.abspath(path)).relative_to(current).parts:
        current = current / part
        if current.is_symlink():
            raise UnsafeFileError(
                f"{current} is a symbolic link (to {os.readlink(current)}): nlpkit does not write through links "
                f"inside {root}, which could send the write anywhere. Remove the link, or choose another folder.")


def make_dir(folder: str | Path, root: str | Path | None = None) -> Path:
    """Create ``folder`` (and its parents) after :func:`check_no_links` ``(folder, root)``; returns it."""
    folder = Path(folder)
    check_no_links(folder, root)
    folder.mkdir(parents=True, exist_ok=True)
    check_no_links(folder, root)  # a link that appeared while the folders were made
    return folder


def _unique(folder: Path, name: str, create: Any) -> Path:
    """``create(path)`` on a new hidden name ``.{name}.<random>.tmp`` in ``folder``; ``create`` must fail with
    ``FileExistsError`` when the name exists (as ``os.mkdir`` and ``O_EXCL`` do, links included)."""
    for _ in range(100):
        path = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            create(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary name for {name} in {folder}.")


@contextmanager
def atomic_file(path: str | Path, root: str | Path | None = None) -> Iterator[Path]:
    """Yield a new, empty temporary file beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary is created exclusively under a unique name (``O_CREAT | O_EXCL | O_NOFOLLOW``), so a file or
    link already in the folder is never written through; ``path`` and the folders between ``root`` and it must
    not be links (:func:`check_no_links`). For writers that want a file name (matplotlib's ``savefig``).
    """
    path = Path(path)
    check_no_links(path, root)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    tmp = _unique(path.parent, path.name, lambda p: os.close(os.open(p, flags, 0o666)))
    try:
        yield tmp
        check_no_links(path, root)
        os.replace(tmp, path)  # replaces a link's name, never what it points to
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, text: str, root: str | Path | None = None) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_file` (a unique temporary, renamed into place).

    ``root``: the run or output folder the write belongs to; no folder between it and ``path`` may be a link.
    """
    with atomic_file(path, root) as tmp:
        tmp.write_text(text)


def _check_dir_target(target: Path, root: str | Path | None) -> None:
    check_no_links(target, root)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder: move it away, or write the folder elsewhere.")


@contextmanager
def atomic_dir(target: str | Path, root: str | Path | None = None) -> Iterator[Path]:
    """Yield a new temporary folder beside ``target``; on success it replaces ``target``, on error it is removed.

    ``with atomic_dir(run_dir / "model") as tmp: save_into(tmp)`` never leaves a half-written ``model/``. The
    temporary gets a unique hidden name created exclusively (``.model.<random>.tmp``), so nothing already beside
    ``target`` is touched; only ``target`` itself is replaced, and never when it (or a folder between ``root``
    and it) is a link.
    """
    target = Path(target)
    make_dir(target.parent, root if root is not None else target.parent)
    _check_dir_target(target, root)
    tmp = _unique(target.parent, target.name, os.mkdir)
    try:
        yield tmp
        _check_dir_target(target, root)
        if target.exists():
            # Move the old folder aside onto an empty folder of our own, so the swap deletes only what it moved.
            old = _unique(target.parent, target.name, os.mkdir)
            os.replace(target, old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
