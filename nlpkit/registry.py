"""Task name -> plugin class: the built-in plugins found by their folder, third-party ones by entry point.

A built-in task is a subpackage of ``nlpkit.plugins`` (``nlpkit/plugins/<name>/``): its name is the package's
name, and its class is the package's ``TASK`` attribute, else the one :class:`~nlpkit.task.Task` subclass its
``__init__`` exposes. Adding a folder is all it takes: no list names it. A third-party package registers through
the ``nlpkit.tasks`` entry-point group in its ``pyproject.toml``::

    [project.entry-points."nlpkit.tasks"]
    my_task = "my_package.task:MyTask"

Both are found without importing any plugin (the folder names are listed, the entry points read); a plugin is
imported the first time its name is asked for, so ``import nlpkit`` stays fast and a broken optional
dependency of one task does not break the others.
:func:`register_task` registers a class directly (for a task defined in a script or a test). Either way the
class is checked against the task contract when it is registered: a missing required hook fails at once,
naming the hook.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
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


#: Where the built-in plugins live (listed by folder, not imported: the plugins are a layer above this module).
PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"
PLUGINS_PACKAGE = "nlpkit.plugins"


def _builtin_plugins() -> list[str]:
    """Names of the subpackages of ``nlpkit.plugins`` (each one task), without importing them."""
    return sorted(m.name for m in pkgutil.iter_modules([str(PLUGINS_DIR)]) if m.ispkg and not m.name.startswith("_"))


def _plugin_class(name: str) -> type[Task]:
    """The task class of the built-in plugin package ``name``: its ``TASK``, else its one Task subclass."""
    module = importlib.import_module(f"{PLUGINS_PACKAGE}.{name}")
    declared = getattr(module, "TASK", None)
    if declared is not None:
        return declared
    found = list(dict.fromkeys(v for v in vars(module).values()
                               if isinstance(v, type) and issubclass(v, Task) and v is not Task))
    if len(found) != 1:
        what = ", ".join(c.__qualname__ for c in found) or "none"
        raise ContractError(f"Plugin package {PLUGINS_PACKAGE}.{name} must expose one nlpkit.task.Task subclass in "
                            f"its __init__ (found {what}); name it with TASK = <class> when it exposes several.")
    return found[0]


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
    folder = cls.metrics_dir()
    if folder is not None:  # the task's own evaluate modules, loadable by name (nlpkit.metrics)
        from nlpkit.metrics import add_metrics_dir

        add_metrics_dir(folder)
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
    if name in _builtin_plugins():
        try:
            cls = _plugin_class(name)
        except ContractError:
            raise
        except Exception as err:  # a broken plugin must fail as itself, naming its package
            hint = " Install what it needs." if isinstance(err, ImportError) else ""
            raise UnknownTaskError(f"Task {name!r} ({PLUGINS_PACKAGE}.{name}) cannot be loaded: "
                                   f"{type(err).__name__}: {err}.{hint}") from err
        return _add(name, cls)
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
    """Names of every task: built-in plugin folders, installed entry points and directly registered classes
    (nothing is imported)."""
    return sorted(set(_builtin_plugins()) | set(_entry_points()) | set(_TASKS))
