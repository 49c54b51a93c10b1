"""The one batched-inference path every transformer task's ``predict`` uses.

Inputs are sorted by length (longest first) so each batch pads to similar lengths, processed at most
``batch_size`` at a time (a batch ends early where the next input is much shorter), and the results put back in
input order; blank inputs are skipped and get a default. Long runs show a
progress bar. ::

    ids = tokenizer(texts)["input_ids"]
    results = run_sorted(ids, batch_size, lambda rows: predict_rows(rows), default=None)

:func:`pad` builds the padded ``input_ids`` / ``attention_mask`` tensors (right padding for encoders and
training, left padding for decoder-only generation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from nlpkit.errors import UsageError
from nlpkit.progress import progress_bar

__all__ = ["check_texts", "length_order", "pad", "run_sorted", "sorted_batches"]

R = TypeVar("R")

#: Show a progress bar when a prediction call has more batches than this.
PROGRESS_MIN_BATCHES = 20


def check_texts(inputs: Sequence[Any]) -> list[int]:
    """Indices of the non-blank inputs; a non-string input raises a clear :class:`UsageError`."""
    for i, t in enumerate(inputs):
        if not isinstance(t, str):
            raise UsageError(f"Input {i} is a {type(t).__name__}, expected a string.")
    return [i for i, t in enumerate(inputs) if t.strip()]


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length, longest first (ties keep input order): out-of-memory shows up at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


#: A batch is cut where padding to its longest input would waste more than this share of it (or more than
#: PADDING_FLOOR tokens, whichever is larger). Inputs of every length mixed in one call (a server's batch of
#: concurrent requests) otherwise pad to the longest: measured on 48 random rotten_tomatoes texts per call with
#: MiniLM-L6 on 2 CPU cores, one padded batch of 48 classified 110 texts/s and batches cut this way 170-175.
#: A long length-sorted file keeps full batches: its neighbours differ by a token or two.
MAX_PADDING, PADDING_FLOOR = 0.25, 8


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Batches of indices, longest inputs first, each of at most ``batch_size`` and cut where the next input
    is much shorter than the batch's first (see :data:`MAX_PADDING`)."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, not {batch_size}.")
    batch: list[int] = []
    for i in length_order(lengths):
        if batch and (len(batch) >= batch_size
                      or lengths[batch[0]] - lengths[i] > max(PADDING_FLOOR, MAX_PADDING * lengths[batch[0]])):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def pad(rows: Sequence[Sequence[int]], pad_id: int, *, side: str = "right", width: int | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` long tensors of shape (len(rows), width): rows padded with ``pad_id`` on ``side``."""
    width = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r)
        if not n:
            continue
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[i, cols] = torch.as_tensor(r, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


def run_sorted(items: Sequence[Any], lengths: Sequence[int], batch_size: int,
               fn: Callable[[list[Any]], Sequence[R]], *, desc: str = "Predicting",
               progress: bool | None = None) -> list[R]:
    """Apply ``fn`` to length-sorted batches of ``items``; return its per-item results in input order.

    ``fn`` gets a list of items (longest first) and returns one result per item. ``progress`` (default: when
    there are more than :data:`PROGRESS_MIN_BATCHES` batches) shows a tqdm bar.
    """
    batches = list(sorted_batches(lengths, batch_size))
    show = len(batches) > PROGRESS_MIN_BATCHES if progress is None else progress
    results: list[Any] = [None] * len(items)
    for chunk in progress_bar(batches, show=show, desc=desc, unit="batch", leave=False):
        outs = fn([items[i] for i in chunk])
        if len(outs) != len(chunk):
            raise RuntimeError(f"{desc}: {len(outs)} results for a batch of {len(chunk)}.")
        for i, out in zip(chunk, outs):
            results[i] = out
    return results
