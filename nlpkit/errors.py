"""Every error nlpkit raises on purpose, under one base class.

An :class:`NlpkitError` is something the user can fix (a wrong option, a bad file, a missing model): the
``nlpkit`` command and the ``tasks/*.py`` scripts print its message on one line and exit with status 2
(``NLPKIT_DEBUG=1`` shows the traceback). Anything else is a bug and keeps its traceback.

Each class also derives from the built-in exception that fits (``ValueError``, ``FileNotFoundError``, ...),
so code written against the built-ins keeps working.
"""

from __future__ import annotations

__all__ = [
    "AssetError",
    "ConfigError",
    "ContractError",
    "DataError",
    "ModelNotFoundError",
    "NlpkitError",
    "UnknownTaskError",
    "UnsafeFileError",
    "UsageError",
]


class NlpkitError(Exception):
    """Base of every error the user can fix; its message says what is wrong and how to fix it."""


class ConfigError(NlpkitError, ValueError):
    """A preset or override that does not fit the task's config schema, or options that contradict."""


class DataError(NlpkitError, ValueError):
    """Input data that cannot be used, with what is wrong and where (file, split, row, column)."""


class AssetError(NlpkitError, RuntimeError):
    """A catalog asset that cannot be fetched, checked or converted."""


class ModelNotFoundError(NlpkitError, FileNotFoundError):
    """A model, run folder or checkpoint that does not exist or is not what was expected."""


class UnknownTaskError(NlpkitError, KeyError):
    """A task name that no installed plugin registers."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


class ContractError(NlpkitError, TypeError):
    """A task plugin that does not honour the task contract (e.g. a required hook is missing)."""


class UnsafeFileError(NlpkitError, PermissionError):
    """A file nlpkit will not load because loading it could run code its author put in it (a Python pickle
    beyond plain tensors, remote modelling code); the message names the file and the explicit opt-in, if any."""


class UsageError(NlpkitError, ValueError):
    """A wrong use of a command or a function argument (an unknown option, a bad combination)."""
