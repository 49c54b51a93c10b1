"""Task name -> plugin class. Plugins register themselves with :func:`register_task`."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from nlpkit.task import Task

_TASKS: dict[str, type[Task]] = {}
# Built-in plugins, imported lazily so `import nlpkit` stays fast and a broken optional dependency of one
# task does not break the others.
_BUILTIN = {
    "sentiment": "nlpkit.plugins.sentiment",
    "word2vec": "nlpkit.plugins.word2vec",
    "generation": "nlpkit.plugins.generation",
    "translation": "nlpkit.plugins.translation",
}

C = TypeVar("C", bound=type)


def register_task(name: str) -> Callable[[C], C]:
    """Class decorator: make a :class:`~nlpkit.task.Task` subclass available under ``name``."""

    def deco(cls: C) -> C:
        if name in _TASKS and _TASKS[name] is not cls:
            raise ValueError(f"Task name {name!r} is already registered by {_TASKS[name].__module__}.")
        cls.name = name  # type: ignore[attr-defined]
        _TASKS[name] = cls  # type: ignore[assignment]
        return cls

    return deco


def _import_builtins() -> None:
    for name, module in _BUILTIN.items():
        if name not in _TASKS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:  # the plugin exists but a dependency is missing: say so
                    raise


def get_task(name: str) -> type[Task]:
    """The plugin class registered as ``name``."""
    if name not in _TASKS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _TASKS:
        _import_builtins()
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"Unknown task {name!r}. Known tasks: {', '.join(sorted(_TASKS))}.{hint}")
    return _TASKS[name]


def available_tasks() -> list[str]:
    """Names of every registered task (built-ins included)."""
    _import_builtins()
    return sorted(_TASKS)
