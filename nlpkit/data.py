"""The data entry point every task uses: reading (:mod:`nlpkit.data_files`), splitting (:mod:`nlpkit.splits`) and
the tokenization cache key, under one name.

``from nlpkit.data import load_splits, load_source, check_columns, drop_empty_texts, origin_of`` is the short
form a plugin's ``load_data`` uses; what a task does with its labels is the task's (sentiment's label ids and
multi-label targets: ``nlpkit/plugins/sentiment/labels.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import DatasetDict

from nlpkit.data_files import (
    FILE_COLUMN,
    ROW_COLUMN,
    DataError,
    arrow_column,
    check_columns,
    contiguous,
    drop_empty_texts,
    load_source,
    origin_of,
    take_rows,
    visible_columns,
    with_origin,
)
from nlpkit.splits import MIN_SPLIT_ROWS, load_splits

logger = logging.getLogger("nlpkit.data")

__all__ = [
    "FILE_COLUMN",
    "MIN_SPLIT_ROWS",
    "ROW_COLUMN",
    "DataError",
    "arrow_column",
    "check_columns",
    "contiguous",
    "drop_empty_texts",
    "encode_fingerprints",
    "load_source",
    "load_splits",
    "origin_of",
    "take_rows",
    "visible_columns",
    "with_origin",
]


# ------------------------------------------------------------------------------------------- tokenization cache

#: Run-level options that never change what ``encode`` produces (left out of its cache key).
_NOT_ENCODING = ("output_dir", "resume", "trackers", "tracker", "train", "seed")
#: Task attributes left out of the hash of its other state: the model, and what is hashed on its own.
_HASHED_APART = ("model", "tokenizer", "cfg", "info", "saved_info", "run_dir", "encode")


def _encoding_key(task: Any) -> str | None:
    """What ``task.encode``'s output depends on: its code, tokenizer, config and data info, and the versions.

    datasets would hash the bound method itself, which pickles the whole task with its model: seconds per
    split, and a freshly initialised head hashes differently on every run, so nothing was ever reused.
    """
    import tokenizers
    import transformers
    from datasets.fingerprint import Hasher

    from nlpkit.artifacts import package_version
    from nlpkit.config import to_dict

    cfg = to_dict(task.cfg)
    for key in _NOT_ENCODING:
        cfg.pop(key, None)
    if isinstance(cfg.get("data"), dict):
        cfg["data"].pop("num_proc", None)
    tok = task.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    # The task's other state (e.g. a translation backend's prefix), not its model nor what is hashed already.
    state = {k: v for k, v in vars(task).items() if k not in _HASHED_APART}
    try:
        tok_key = (backend.to_str(), type(tok).__name__, Hasher.hash(getattr(tok, "init_kwargs", {}))) \
            if backend is not None else Hasher.hash(tok)
        info = task.info.to_dict() if task.info is not None else None
        return Hasher.hash([type(task).__module__, type(task).__qualname__, Hasher.hash(type(task).encode),
                            cfg, info, tok_key, Hasher.hash(state), package_version(), transformers.__version__,
                            tokenizers.__version__])
    except Exception as err:  # something unpicklable: datasets' own (uncached) fingerprint then
        logger.info("No stable cache key for %s.encode (%s); tokenizing afresh", type(task).__name__, err)
        return None


def encode_fingerprints(task: Any, splits: DatasetDict) -> dict[str, str | None]:
    """A stable datasets fingerprint for ``splits[name].map(task.encode)``, per split (None: let datasets pick).

    The same data, task code, tokenizer and config give the same fingerprint, so a second identical run reads
    the tokenized splits back from datasets' cache instead of tokenizing again.
    """
    from datasets.fingerprint import Hasher

    key = _encoding_key(task)
    return {name: None if key is None else Hasher.hash([split._fingerprint, key]) for name, split in splits.items()}
