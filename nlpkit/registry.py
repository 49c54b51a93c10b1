"""Task name -> plugin class, found through the ``nlpkit.tasks`` entry-point group.

Built-in and third-party tasks register the same way, in their ``pyproject.toml``::

    [project.entry-points."nlpkit.tasks"]
    sentiment = "nlpkit.plugins.sentiment:SentimentTask"
    my_task = "my_package.task:MyTask"

Entry points are read without importing any plugin; a plugin is imported the first time its name is asked
for, so ``import nlpkit`` stays fast and a broken optional dependency of one task does not break the others.
:func:`register_task` registers a class directly (for a task defined in a script or a test). Either way the
class is checked against the task contract when it is registered: a missing required hook fails at once,
naming the hook.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from nlpkit.errors import ConfigError, ContractError, UnknownTaskError
from nlpkit.task import Task

__all__ = ["ENTRY_POINT_GROUP", "available_tasks", "check_contract", "find_preset", "get_task", "preset_header",
           "register_task"]

ENTRY_POINT_GROUP = "nlpkit.tasks"

_TASKS: dict[str, type[Task]] = {}

C = TypeVar("C", bound=type)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed ``nlpkit.tasks`` entry points by name (read afresh: a package may be installed meanwhile)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def check_contract(cls: type, name: str) -> None:
    """Fail with a :class:`ContractError` naming the hooks ``cls`` should implement but does not."""
    from nlpkit.training import trainer_for

    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ContractError(f"Task {name!r}: {cls!r} is not a subclass of nlpkit.task.Task.")
    trainer = trainer_for(cls)
    hooks = dict.fromkeys((*Task.required_hooks, *cls.required_hooks, *trainer.required_hooks))
    missing = [h for h in hooks if getattr(cls, h, None) is getattr(Task, h, None)]
    if missing:
        raise ContractError(f"Task {name!r} ({cls.__module__}.{cls.__qualname__}) does not implement the required "
                            f"hook(s) {', '.join(missing)} (needed by {trainer.__name__}). See the docs' "
                            f"'Adding a task' page.")
    if cls.Config.__dataclass_fields__.get("train") is None:
        raise ContractError(f"Task {name!r}: its Config must derive from nlpkit.config.RunConfig.")


def _add(name: str, cls: type[Task]) -> type[Task]:
    if name in _TASKS and _TASKS[name] is not cls:
        raise ContractError(f"Task name {name!r} is already registered by {_TASKS[name].__module__}.")
    check_contract(cls, name)
    cls.name = name
    _TASKS[name] = cls
    return cls


def register_task(name: str) -> Callable[[C], C]:
    """Class decorator: register a :class:`~nlpkit.task.Task` subclass under ``name`` (checked at once)."""

    def deco(cls: C) -> C:
        _add(name, cls)  # type: ignore[arg-type]
        return cls

    return deco


def get_task(name: str) -> type[Task]:
    """The plugin class registered as ``name`` (loading its entry point on first use)."""
    if name in _TASKS:
        return _TASKS[name]
    eps = _entry_points()
    if name in eps:
        try:
            cls = eps[name].load()
        except Exception as err:  # a broken plugin must fail as itself, naming its entry point
            hint = " Install what it needs." if isinstance(err, ImportError) else ""
            raise UnknownTaskError(f"Task {name!r} is installed ({eps[name].value}) but cannot be loaded: "
                                   f"{type(err).__name__}: {err}.{hint}") from err
        return _add(name, cls)
    known = available_tasks()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownTaskError(f"Unknown task {name!r}. Known tasks: {', '.join(known)}.{hint}")


def find_preset(task: str, name_or_path: str) -> Path:
    """A preset of ``task`` by name (its package's ``presets/NAME.yaml``) or a yaml path; checks its ``task`` key."""
    import yaml

    presets = get_task(task).presets()
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"Preset file {path} does not exist.")
    elif name_or_path in presets:
        path = presets[name_or_path]
    else:
        close = difflib.get_close_matches(name_or_path, list(presets), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unexpected argument {name_or_path!r}: expected a preset name of {task} "
                          f"({', '.join(presets) or 'none'}), a .yaml file or key=value overrides.{hint}")
    try:
        declared = (yaml.safe_load(path.read_text()) or {}).get("task")
    except yaml.YAMLError as err:
        raise ConfigError(f"Preset {path} is not valid YAML: {err}") from err
    if declared and declared != task:
        raise ConfigError(f"Preset {path} is for the {declared} task, not {task}.")
    return path


#: A header comment line that is a command to run (a preset's launch line), not prose.
_LAUNCH_PREFIXES = ("accelerate launch", "nlpkit ", "python ")


def preset_header(path: str | Path) -> tuple[str, list[str]]:
    """(what the preset is for, its launch lines), read from the comment block at the top of a preset file.

    A preset's header is prose and launch lines indented under it (``#   accelerate launch tasks/<task>.py
    <name>``). The summary is the first sentence of the prose before the first launch line, joined across
    comment lines, so a description that spans lines is not cut at the first line's end.
    """
    prose: list[str] = []
    launch: list[str] = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break  # the header ends at the first key
        text = line.lstrip("#").strip()
        if text.startswith(_LAUNCH_PREFIXES):
            launch.append(text)
        elif text and not launch:
            prose.append(text)
    first = re.split(r"(?<!\be\.g)(?<!\bi\.e)\.(?:\s|$)", " ".join(prose), maxsplit=1)[0]
    return first.rstrip(" :."), launch


def available_tasks() -> list[str]:
    """Names of every task: installed entry points and directly registered classes (nothing is imported)."""
    return sorted(set(_entry_points()) | set(_TASKS))
