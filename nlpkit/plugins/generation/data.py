"""Reading the generation task's data: which format the rows are in, checks, and evaluation windows."""

from __future__ import annotations

from typing import Any

from datasets import Dataset, DatasetDict

from nlpkit.data import check_columns, drop_empty_texts
from nlpkit.errors import DataError
from nlpkit.plugins.generation.config import FORMATS, GenerationDataConfig


def detect_format(d: GenerationDataConfig, columns: list[str]) -> str:
    """``data.format``, with ``auto`` resolved from the columns: chat, then prompt_response, else text."""
    if d.format not in FORMATS:
        raise DataError(f"data.format={d.format!r}: expected one of {', '.join(FORMATS)}.")
    if d.format != "auto":
        return d.format
    if d.messages_column in columns:
        return "chat"
    if d.prompt_column in columns and d.response_column in columns:
        return "prompt_response"
    return "text"


def check_and_clean(ds: DatasetDict, d: GenerationDataConfig, fmt: str) -> tuple[list[str], dict[str, int]]:
    """Check the columns ``fmt`` needs (and drop empty rows where allowed); returns (columns, dropped rows)."""
    if fmt == "text":
        check_columns(ds, [d.text_column], d.source, "data.text_column")
        return [d.text_column], drop_empty_texts(ds, [d.text_column], d.empty_texts, d.source)
    if fmt == "prompt_response":
        check_columns(ds, [d.prompt_column, d.response_column], d.source, "data.prompt_column")
        return [d.prompt_column, d.response_column], drop_empty_texts(ds, [d.response_column], d.empty_texts,
                                                                      d.source)
    check_columns(ds, [d.messages_column], d.source, "data.messages_column")
    check_messages(ds, d.messages_column, d.source)
    return [d.messages_column], {}


def check_messages(ds: DatasetDict, col: str, source: str) -> None:
    """Every row holds a non-empty list of {role, content} messages with at least one assistant reply."""
    for split, part in ds.items():
        for row, conv in enumerate(part[col]):
            ok = isinstance(conv, list) and conv and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in conv)
            if not ok:
                raise DataError(f"{source} ({split} split) row {row}: column {col!r} must be a non-empty list of "
                                f"{{'role': str, 'content': str}} messages, got {conv!r:.120}.")
            if not any(m["role"] == "assistant" for m in conv):
                raise DataError(f"{source} ({split} split) row {row}: the conversation has no assistant message, "
                                f"so nothing would be learned from it.")


def middle_windows(split: Dataset, col: str, budget: int, tokenizer: Any) -> Dataset:
    """Each document cut to a window of ``budget / n_docs`` tokens from its middle (exact, via offsets)."""
    texts = split[col]
    if not texts:
        return split
    per_doc = max(2, budget // len(texts))
    out = []
    for text in texts:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        if len(offsets) <= per_doc:
            out.append(text)
            continue
        start = (len(offsets) - per_doc) // 2
        out.append(text[offsets[start][0]: offsets[start + per_doc - 1][1]])
    return Dataset.from_dict({col: out})
