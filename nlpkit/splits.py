"""Splitting: a read source -> ``train``/``validation``/``test``, made here where the source has none.

Held-out rows are drawn by whole groups (``data.split_by``, or the catalog's ``split_by``: a book, a film, a
document, so near-duplicates don't leak), else class-balanced on the task's label column (``data.stratify``),
else at random; always as a pure function of the seed (the same on every rank). Then the sample limits. Reading
is :mod:`nlpkit.data_files`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from nlpkit.config import DataConfig
from nlpkit.data_files import arrow_column, check_columns, contiguous, load_source, take_rows, visible_columns
from nlpkit.errors import ConfigError, DataError

logger = logging.getLogger("nlpkit.data")

__all__ = ["MIN_SPLIT_ROWS", "load_splits"]

#: Below this many rows a split is called small in a warning (its accuracy moves in steps of 5% or more).
MIN_SPLIT_ROWS = 20


# ------------------------------------------------------------------------------------------- splits


def _class_codes(d: Dataset, column: str) -> np.ndarray | None:
    """An integer class per row of ``column`` (missing values are a class of their own), or None when the
    column holds no classes (lists, floats, structs)."""
    col = arrow_column(d, column)
    kind = col.type
    if not (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind) or pa.types.is_boolean(kind) or pa.types.is_dictionary(kind)):
        logger.info("Not stratifying on column %r: its %s values are not classes", column, kind)
        return None
    codes = pc.dictionary_encode(col.combine_chunks()).indices
    return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _stratified_indices(codes: np.ndarray, n_hold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, hold) row indices: ``n_hold`` rows drawn from every class in proportion to its size.

    A pure function of the classes and the seed (the same on every rank). Quotas are rounded by largest
    remainder, and a class's last row stays in the kept part so that every class can be learned.
    """
    rng = np.random.default_rng(seed)
    n = len(codes)
    order = rng.permutation(n)
    by_class = order[np.argsort(codes[order], kind="stable")]  # rows grouped by class, shuffled inside each
    _, starts, counts = np.unique(codes[by_class], return_index=True, return_counts=True)
    quota = counts * n_hold / n
    take = np.floor(quota).astype(np.int64)
    room = counts - 1 - take  # what a class can still give without losing its last row
    for i in np.lexsort((-counts, -(quota - take))):  # largest remainders first, then larger classes
        if take.sum() >= n_hold:
            break
        if room[i] > 0:
            take[i] += 1
            room[i] -= 1
    short = n_hold - int(take.sum())  # only for tiny data: classes then give their last rows too
    for i in np.argsort(-counts, kind="stable")[: max(short, 0)]:
        take[i] += min(1, counts[i] - take[i])
    held = np.zeros(n, dtype=bool)
    held[by_class[np.arange(n) - np.repeat(starts, counts) < np.repeat(take, counts)]] = True
    return order[~held[order]], order[held[order]]  # both in the shuffled order (classes interleaved)


def _group_indices(d: Dataset, n_hold: int, seed: int, group: str) -> tuple[np.ndarray, np.ndarray]:
    """(keep, hold) row indices holding out whole groups until ``n_hold`` rows are held."""
    col = arrow_column(d, group)
    counts = {row["values"]: row["counts"] for row in pc.value_counts(col).to_pylist()}
    groups = sorted(counts, key=str)
    random.Random(seed).shuffle(groups)  # seeded: identical on every rank and every run
    held, total = [], 0
    for g in groups:
        if total >= n_hold:
            break
        held.append(g)
        total += counts[g]
    mask = pc.is_in(col, value_set=pa.array(held, type=col.type)).to_numpy(zero_copy_only=False)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _split_off(d: Dataset, n_hold: int, seed: int, group: str | None,
               stratify: str | None) -> tuple[Dataset, Dataset]:
    """Hold out ``n_hold`` rows of ``d``: whole ``group`` values together, else class-balanced on ``stratify``,
    else at random."""
    codes = _class_codes(d, stratify) if stratify and not group else None
    if group is None and codes is None:
        parts = d.train_test_split(test_size=n_hold, seed=seed, shuffle=True)
        return contiguous(parts["train"]), contiguous(parts["test"])
    keep, hold = _group_indices(d, n_hold, seed, group) if group else _stratified_indices(codes, n_hold, seed)
    return take_rows(d, keep), take_rows(d, hold)


def _stratify_column(cfg: DataConfig, label_column: str | None) -> str | None:
    """The column the splits are balanced on: ``data.stratify`` (auto/true: the task's label column)."""
    value = str(cfg.stratify).strip()
    if value.lower() in ("auto", "true", "yes", "on", "1"):
        if label_column is None and value.lower() != "auto":
            raise ConfigError(f"data.stratify={cfg.stratify}: this task has no label column to balance the "
                              f"splits on; name a column (data.stratify=COLUMN) or set data.stratify=false.")
        return label_column
    if value.lower() in ("false", "no", "off", "none", "0", ""):
        return None
    return value


def load_splits(cfg: DataConfig, seed: int, loaded: tuple[DatasetDict, dict[str, Any]] | None = None, *,
                columns: Mapping[str, str] | Sequence[str] | None = None,
                label_column: str | None = None) -> tuple[DatasetDict, dict[str, Any]]:
    """Load ``cfg.source`` and return train/validation/test splits (made with ``seed`` where missing).

    ``data.split_seed``, when set, replaces ``seed`` here, so runs with different training seeds can share
    the very same split.

    ``loaded`` is an already read ``(DatasetDict, meta)`` for sources :func:`load_source` cannot read (e.g.
    a task's own format); it gets the same splitting, ``split_by`` grouping and sample limits.

    ``columns`` are checked in every split before anything is split (a mapping names the option that sets
    each: ``{"review": "data.text_column"}``). ``label_column`` is a classification task's label column: the
    splits made here keep its class proportions (``data.stratify``: auto; ``split_by`` groups take
    precedence). A source too small to hold out validation and test rows and still train is refused.
    """
    raw, meta = loaded if loaded is not None else load_source(
        cfg.source, config=cfg.config, revision=cfg.revision, data_files=cfg.data_files)
    names = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    if names["train"] not in raw:
        raise DataError(f"{cfg.source} has no split {names['train']!r} (it has {list(raw)}); "
                        f"set data.train_split.")
    options = dict(columns) if isinstance(columns, Mapping) else {c: "data.text_column" for c in columns or ()}
    for col, option in options.items():
        check_columns(raw, [col], cfg.source, option)
    train = raw[names["train"]]
    group = cfg.split_by or meta.get("split_by")
    if group and group not in train.column_names:
        raise DataError(f"data.split_by={group!r} is not a column of {cfg.source} ({visible_columns(train)}).")
    stratify = _stratify_column(cfg, label_column)
    if stratify and stratify not in train.column_names:
        raise DataError(f"data.stratify={stratify!r} is not a column of {cfg.source} ({visible_columns(train)}).")
    total = len(train)
    if cfg.split_seed is not None:
        seed = cfg.split_seed

    def count(size: float) -> int:  # fractions are of the whole source, not of what is left
        return int(size) if size >= 1 else max(1, round(total * size))

    n_test = 0 if names["test"] in raw else count(cfg.test_size)
    n_val = 0 if names["validation"] in raw else count(cfg.validation_size)
    if n_test + n_val >= total:
        missing = " and ".join(k for k, n in (("validation", n_val), ("test", n_test)) if n)
        raise DataError(
            f"{cfg.source} has {total} row{'s' if total != 1 else ''}: too few to hold out {missing} rows "
            f"({n_val} + {n_test}) and keep any to train on. Give {missing} data (files named validation.* / "
            f"test.* beside train.* in a folder, or data.validation_split / data.test_split naming splits of the "
            f"source), or set data.validation_size / data.test_size (fractions, or row counts) smaller."
        )
    out: dict[str, Dataset] = {}
    if names["test"] in raw:
        out["test"] = raw[names["test"]]
    else:
        train, out["test"] = _split_off(train, n_test, seed, group, stratify)
    if names["validation"] in raw:
        out["validation"] = raw[names["validation"]]
    else:
        train, out["validation"] = _split_off(train, n_val, seed + 1, group, stratify)
    out["train"] = train
    ds = DatasetDict({k: out[k] for k in ("train", "validation", "test")})
    if cfg.max_train_samples:
        subset = ds["train"].shuffle(seed=seed).select(range(min(cfg.max_train_samples, len(ds["train"]))))
        ds["train"] = contiguous(subset)
    if cfg.max_eval_samples:
        for k in ("validation", "test"):
            ds[k] = ds[k].select(range(min(cfg.max_eval_samples, len(ds[k]))))
    sizes = {k: len(v) for k, v in ds.items()}
    logger.info("Data %s: %s", cfg.source, sizes)
    small = {k: n for k, n in sizes.items() if n < MIN_SPLIT_ROWS}
    if small:
        logger.warning("Data %s: small splits (%s rows; %s has fewer than %d): its metrics are noise and training "
                       "sees few examples. Give more data, or set data.validation_size / data.test_size (fractions, "
                       "or row counts).", cfg.source, ", ".join(f"{k} {n}" for k, n in sizes.items()),
                       " and ".join(small), MIN_SPLIT_ROWS)
    return ds, meta
