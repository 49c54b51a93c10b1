"""One data loader for every task: any source -> checked ``DatasetDict`` with train/validation/test.

Sources: a catalog name (:mod:`nlpkit.assets`), a local file (.csv/.tsv/.json/.jsonl/.parquet/.txt) or a
folder of them (files named ``train.*``, ``validation.*``/``valid.*``/``dev.*``, ``test.*`` become splits),
or a hub id (needs the hub). Errors name the file, split, row and column that are wrong and what was expected.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset

from nlpkit.config import DataConfig
from nlpkit.errors import DataError

logger = logging.getLogger("nlpkit.data")

__all__ = [
    "DataError",
    "check_columns",
    "drop_empty_texts",
    "label_map",
    "load_source",
    "load_splits",
    "map_labels",
]

_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
             ".txt": "text"}
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


# ------------------------------------------------------------------------------------------- reading


def _check_readable(path: Path) -> None:
    """Fail early, naming the line, on empty or non-UTF-8 text files (libraries give opaque tracebacks)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: expected a {path.suffix or 'data'} file with at least one row.")
    if path.suffix.lower() == ".parquet":
        return
    nonblank = 0
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            nonblank += bool(raw.strip())
            if b"\x00" in raw:
                raise DataError(f"{path} line {line_no} contains NUL bytes: this looks like a binary file, "
                                f"not {path.suffix} text.")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path} line {line_no} is not valid UTF-8 ({err.reason} at byte {err.start}). "
                    f"Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`."
                ) from None
    if path.suffix.lower() in (".csv", ".tsv") and nonblank < 2:
        raise DataError(f"{path} has no rows (only a header line): expected a header and at least one row.")
    if nonblank == 0:
        raise DataError(f"{path} holds only blank lines: expected at least one row.")


def _read_files(files: dict[str, list[Path]]) -> DatasetDict:
    suffixes = {p.suffix.lower() for paths in files.values() for p in paths}
    if len(suffixes) != 1:
        raise DataError(f"Mixed file types {sorted(suffixes)} in {files}; use one format per source.")
    suffix = suffixes.pop()
    builder = _BUILDERS[suffix]
    for paths in files.values():
        for p in paths:
            _check_readable(p)
    kwargs: dict[str, Any] = {}
    if suffix == ".tsv":
        kwargs["delimiter"] = "\t"
    try:
        ds = load_dataset(builder, data_files={k: [str(p) for p in v] for k, v in files.items()}, **kwargs)
    except Exception as err:  # datasets wraps parser errors in DatasetGenerationError; unwrap the cause
        cause = err.__cause__ or err
        names = ", ".join(str(p) for v in files.values() for p in v)
        raise DataError(f"Could not parse {names} as {builder}: {cause}") from err
    for split, d in ds.items():
        if len(d) == 0:
            raise DataError(f"{files[split][0]} has no rows.")
    return ds


def _local_files(path: Path) -> dict[str, list[Path]]:
    if path.is_file():
        if path.suffix.lower() not in _BUILDERS:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected one of "
                            f"{', '.join(sorted(_BUILDERS))}.")
        return {"train": [path]}
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _BUILDERS and not p.name.startswith("."))
    if not files:
        raise DataError(f"{path} holds no data files ({', '.join(sorted(_BUILDERS))}).")
    splits: dict[str, list[Path]] = {}
    for p in files:
        split = _SPLIT_ALIASES.get(p.stem.lower().split(".")[0].split("-")[0].split("_")[0])
        splits.setdefault(split or "train", []).append(p)
    return splits


def load_source(source: str) -> tuple[DatasetDict, dict[str, Any]]:
    """Read ``source`` into a ``DatasetDict`` plus metadata (catalog ``meta.json``, or ``{}``)."""
    from nlpkit import assets

    if not source:
        raise DataError("No data source given: set data.source=<catalog name | file | folder | hub id>.")
    if assets.is_catalog_name(source):
        folder = assets.fetch(source)
        meta_file = folder / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        return DatasetDict({"train": Dataset.from_parquet(str(folder / "data.parquet"))}), meta
    path = Path(source).expanduser()
    if path.exists():
        return _read_files(_local_files(path)), {}
    if path.suffix.lower() in _BUILDERS or source.startswith((".", "/", "~")):
        raise DataError(f"Data file {source} does not exist.")
    try:
        loaded = load_dataset(source)
    except Exception as err:
        known = ", ".join(a.name for a in assets.list_assets() if a.kind in ("dataset", "corpus"))
        raise DataError(
            f"{source!r} is not a catalog name ({known}), not an existing file or folder, and could not be "
            f"loaded from the Hugging Face hub: {type(err).__name__}: {err}"
        ) from err
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded}), {}


# ------------------------------------------------------------------------------------------- checks


def check_columns(ds: DatasetDict, columns: Sequence[str], source: str, option: str = "data.text_column") -> None:
    """Every split has every column, else a DataError naming the split, the column and what exists."""
    for split, d in ds.items():
        for col in columns:
            if col not in d.column_names:
                close = difflib.get_close_matches(col, d.column_names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise DataError(
                    f"{source} ({split} split) has no column {col!r}; its columns are {d.column_names}.{hint} "
                    f"Point {option} (or the matching data.*_column option) at the right column."
                )


def drop_empty_texts(ds: DatasetDict, columns: Sequence[str], policy: str, source: str) -> dict[str, int]:
    """Remove rows whose text columns are missing or blank; return how many per split (or raise if asked)."""
    if policy not in ("skip", "error"):
        raise DataError(f"data.empty_texts must be 'skip' or 'error', not {policy!r}.")
    dropped: dict[str, int] = {}
    for split in list(ds):
        d = ds[split]
        keep = [i for i, row in enumerate(zip(*(d[c] for c in columns)))
                if all(isinstance(v, str) and v.strip() for v in row)]
        n_bad = len(d) - len(keep)
        if n_bad and policy == "error":
            first = next(i for i in range(len(d)) if i not in set(keep))
            raise DataError(f"{source} ({split} split) row {first} has an empty text in {list(columns)} "
                            f"({n_bad} such rows). Fix them or set data.empty_texts=skip.")
        if n_bad:
            logger.warning("Skipping %d empty texts in the %s split of %s", n_bad, split, source)
            ds[split] = d.select(keep)
        dropped[split] = n_bad
    return dropped


def label_map(train: Dataset, column: str, labels: Sequence[str] | None = None) -> list[str]:
    """The label names, in id order: given, or sorted from the training split (ints as their str)."""
    if labels:
        return [str(x) for x in labels]
    values = set(train[column])
    if None in values:
        row = train[column].index(None)
        raise DataError(f"Training row {row} has no label in column {column!r}.")
    if all(isinstance(v, int) for v in values):
        return [str(v) for v in sorted(values)]
    return sorted(str(v) for v in values)


def map_labels(ds: DatasetDict, column: str, names: Sequence[str], source: str) -> DatasetDict:
    """Replace label values by their ids; unknown labels (e.g. only in eval data) fail, naming the row."""
    index = {n: i for i, n in enumerate(names)}
    for split, d in ds.items():
        values = d[column]
        for row, v in enumerate(values):
            if str(v) not in index:
                raise DataError(
                    f"{source} ({split} split) row {row}: label {v!r} in column {column!r} is not one of the "
                    f"known labels {list(names)}. Fix the row, or list every label with labels=[...]."
                )
        ids = [index[str(v)] for v in values]
        ds[split] = d.remove_columns(column).add_column("labels", ids)
    return ds


# ------------------------------------------------------------------------------------------- splits


def _split_off(d: Dataset, size: float, seed: int, group: str | None) -> tuple[Dataset, Dataset]:
    """Hold out ``size`` of ``d`` (a fraction, or a count if >= 1), keeping ``group`` values together."""
    n_hold = int(size) if size >= 1 else max(1, round(len(d) * size))
    if group is None:
        parts = d.train_test_split(test_size=n_hold, seed=seed, shuffle=True)
        return parts["train"], parts["test"]
    import random

    groups = sorted(set(d[group]), key=str)
    random.Random(seed).shuffle(groups)  # seeded: identical on every rank and every run
    counts: dict[Any, int] = {}
    for g in d[group]:
        counts[g] = counts.get(g, 0) + 1
    held, total = set(), 0
    for g in groups:
        if total >= n_hold:
            break
        held.add(g)
        total += counts[g]
    col = d[group]
    keep = [i for i, g in enumerate(col) if g not in held]
    hold = [i for i, g in enumerate(col) if g in held]
    return d.select(keep), d.select(hold)


def load_splits(cfg: DataConfig, seed: int,
                loaded: tuple[DatasetDict, dict[str, Any]] | None = None) -> tuple[DatasetDict, dict[str, Any]]:
    """Load ``cfg.source`` and return train/validation/test splits (made with ``seed`` where missing).

    ``data.split_seed``, when set, replaces ``seed`` here, so runs with different training seeds can share
    the very same split.

    ``loaded`` is an already read ``(DatasetDict, meta)`` for sources :func:`load_source` cannot read (e.g.
    a task's own format); it gets the same splitting, ``split_by`` grouping and sample limits.
    """
    raw, meta = loaded if loaded is not None else load_source(cfg.source)
    names = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    if names["train"] not in raw:
        raise DataError(f"{cfg.source} has no split {names['train']!r} (it has {list(raw)}); "
                        f"set data.train_split.")
    group = cfg.split_by or meta.get("split_by")
    if group and group not in raw[names["train"]].column_names:
        raise DataError(f"data.split_by={group!r} is not a column of {cfg.source} "
                        f"({raw[names['train']].column_names}).")
    train = raw[names["train"]]
    total = len(train)
    if cfg.split_seed is not None:
        seed = cfg.split_seed

    def count(size: float) -> float:  # fractions are of the whole source, not of what is left
        return size if size >= 1 else max(1, round(total * size))

    out: dict[str, Dataset] = {}
    if names["test"] in raw:
        out["test"] = raw[names["test"]]
    else:
        train, out["test"] = _split_off(train, count(cfg.test_size), seed, group)
    if names["validation"] in raw:
        out["validation"] = raw[names["validation"]]
    else:
        train, out["validation"] = _split_off(train, count(cfg.validation_size), seed + 1, group)
    out["train"] = train
    ds = DatasetDict({k: out[k] for k in ("train", "validation", "test")})
    if cfg.max_train_samples:
        ds["train"] = ds["train"].shuffle(seed=seed).select(range(min(cfg.max_train_samples, len(ds["train"]))))
    if cfg.max_eval_samples:
        for k in ("validation", "test"):
            ds[k] = ds[k].select(range(min(cfg.max_eval_samples, len(ds[k]))))
    logger.info("Data %s: %s", cfg.source, {k: len(v) for k, v in ds.items()})
    return ds, meta

