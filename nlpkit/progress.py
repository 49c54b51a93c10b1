"""Progress bars: tqdm's (a widget in notebooks), shown where nlpkit decides a job is long enough, and hidden
whenever the user says so with tqdm's own switch, ``TQDM_DISABLE=1`` (tqdm reads that variable only for a bar whose
``disable`` is not given, and nlpkit's bars give it: the main process only, long jobs only)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["bars_switched_off", "progress_bar"]


def bars_switched_off() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no progress bars (any value but empty, 0, false, no, off)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no", "off")


def progress_bar(iterable: Any = None, *, show: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one: ``total=``), shown when ``show`` and not switched off by
    ``TQDM_DISABLE``; ``kwargs`` go to tqdm (``desc``, ``unit``, ``total``, ``leave``...)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not show or bars_switched_off(), **kwargs)
