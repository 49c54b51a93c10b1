"""Token ids of many texts at once, straight into Arrow: the one tokenizing path of data preparation.

``tokenizer(texts, truncation=True, max_length=n)["input_ids"]`` builds a Python list per text (and an attention
mask nobody stores: the collator rebuilds it from the lengths), and ``datasets.map`` then converts those lists
back to Arrow. For a fast (Rust) tokenizer :func:`token_ids` asks the ``tokenizers`` library itself for the ids,
on all cores, and hands them to Arrow as one ``list<int32>`` column: on a million short reviews it halves
tokenizing time (``benchmarks/data_scale.py``). The ids are the same as the tokenizer call's (same special tokens,
same truncation side); a slow (Python) tokenizer goes through its own call. ::

    ids = token_ids(tokenizer, texts, max_length=128)   # pyarrow ListArray, one row per text
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["token_ids"]

#: Per tokenizer, its backend configured for plain encoding, by (max_length, truncation side): copying the backend costs
#: milliseconds (its whole vocabulary is serialised), so it is done once, not once per ``datasets.map`` batch.
_BACKENDS: weakref.WeakKeyDictionary[Any, dict[tuple[int | None, str], Any]] = weakref.WeakKeyDictionary()

ID_TYPE = pa.list_(pa.int32())


def _backend(tokenizer: Any, max_length: int | None) -> Any:
    """A private copy of ``tokenizer``'s Rust tokenizer with truncation at ``max_length`` and no padding.

    A copy, because the transformers tokenizer reconfigures its own backend on every call."""
    from tokenizers import Tokenizer

    side = getattr(tokenizer, "truncation_side", "right")
    per_length, key = _BACKENDS.setdefault(tokenizer, {}), (max_length, side)
    if key not in per_length:
        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        if max_length is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(max_length, strategy="longest_first", direction=side)
        per_length[key] = backend
    return per_length[key]


def token_ids(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> pa.ListArray:
    """Ids of every text (with the tokenizer's special tokens), truncated to ``max_length``, as ``list<int32>``.

    The same ids as ``tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]``; a fast tokenizer
    encodes the batch in Rust on every core (``TOKENIZERS_PARALLELISM`` is honoured)."""
    texts = list(texts)
    if getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
        encodings = _backend(tokenizer, max_length).encode_batch_fast(texts)
        return pa.array([e.ids for e in encodings], type=ID_TYPE)
    ids = tokenizer(texts, truncation=max_length is not None, max_length=max_length)["input_ids"]
    return pa.array(ids, type=ID_TYPE)
