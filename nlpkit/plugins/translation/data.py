"""Translation data: sentence pairs from any dataset form or two aligned text files, and their languages.

Every split comes out with the columns ``source``, ``target`` and ``ref_id`` (a number unique over the three
splits, in data order). The raw strings travel with the encoded examples to evaluation, so metrics compare
generated text with the untouched reference (never with re-decoded token ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from datasets import Dataset, DatasetDict

from nlpkit.data import check_columns, drop_empty_texts, load_source, load_splits
from nlpkit.errors import DataError
from nlpkit.plugins.translation.config import TranslationConfig, TranslationOptions
from nlpkit.task import Data, DataInfo

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "ro": "Romanian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
}


@dataclass
class TranslationInfo(DataInfo):
    """What the data tells the model: the language pair (saved with the model) and the training texts a
    from-scratch tokenizer learns its vocabulary from (not saved)."""

    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    train_texts: list[str] = field(default_factory=list)
    transient: ClassVar[tuple[str, ...]] = ("train_texts",)


@dataclass(frozen=True)
class Languages:
    """A language pair, by code (``en``) and by name (``English``, for prompts and T5 prefixes)."""

    source: str
    target: str

    @property
    def source_name(self) -> str:
        return LANGUAGE_NAMES.get(self.source, self.source)

    @property
    def target_name(self) -> str:
        return LANGUAGE_NAMES.get(self.target, self.target)


def resolve_languages(options: TranslationOptions, known: TranslationInfo | None,
                      meta: dict[str, Any] | None = None) -> Languages:
    """The pair in force: the config's, else the saved model's (``known``), else the dataset's, else en -> fr."""
    known, meta = known or TranslationInfo(), meta or {}
    return Languages(options.source_lang or known.source_lang or meta.get("source_lang") or "en",
                     options.target_lang or known.target_lang or meta.get("target_lang") or "fr")


def load_pairs(cfg: TranslationConfig, saved: TranslationInfo | None) -> Data:
    """``train``/``validation``/``test`` sentence pairs of ``cfg.data.source`` (the split rules of
    :func:`nlpkit.data.load_splits`), with the languages and the training texts in the :class:`TranslationInfo`."""
    d = cfg.data
    files = [p.strip() for p in d.source.split(",")] if "," in d.source else []
    if files:
        raw, meta = read_aligned_texts(files, refuse_empty=d.empty_texts == "error"), {}
    else:
        raw, meta = load_source(d.source)
    langs = resolve_languages(cfg.translation, saved, meta)
    group = d.split_by or meta.get("split_by")
    raw = DatasetDict({split: _to_pairs(ds, split, cfg, langs, meta, group) for split, ds in raw.items()})
    notes: dict[str, Any] = {}
    dropped = drop_empty_texts(raw, ["source", "target"], d.empty_texts, d.source)
    if any(dropped.values()):
        notes["empty sides skipped"] = dropped
    ds, _ = load_splits(d, cfg.seed, loaded=(raw, meta))
    out, offset = {}, 0
    for split in ("train", "validation", "test"):
        part = ds[split].select_columns(["source", "target"])
        out[split] = part.add_column("ref_id", list(range(offset, offset + len(part))))
        offset += len(part)
    notes["languages"] = f"{langs.source} -> {langs.target}"
    info = TranslationInfo(source_lang=langs.source, target_lang=langs.target,
                           train_texts=list(out["train"]["source"]) + list(out["train"]["target"]))
    return Data(DatasetDict(out), info, notes)


def _to_pairs(ds: Dataset, split: str, cfg: TranslationConfig, langs: Languages, meta: dict[str, Any],
              group: str | None) -> Dataset:
    """One split -> columns ``source``, ``target`` (+ the split_by group), with clear errors."""
    o, source = cfg.translation, cfg.data.source
    keep = {k: ds[k] for k in ([group] if group and group in ds.column_names else [])}
    if "translation" in ds.column_names and not (o.source_column or o.target_column):
        src, tgt = [], []
        for row, pair in enumerate(ds["translation"]):
            if not isinstance(pair, dict):
                raise DataError(
                    f"{source} ({split} split) row {row}: `translation` should be a dict like "
                    f'{{"{langs.source}": ..., "{langs.target}": ...}}, got {pair!r}.'
                )
            for lang in (langs.source, langs.target):
                if pair.get(lang) is None:
                    present = sorted(k for k, v in pair.items() if v is not None)
                    raise DataError(
                        f"{source} ({split} split) row {row}: the translation has no {lang!r} text (it has "
                        f"{present}). Set translation.source_lang / translation.target_lang to keys "
                        f"present in every row."
                    )
            src.append(pair[langs.source])
            tgt.append(pair[langs.target])
        return Dataset.from_dict({"source": src, "target": tgt, **keep})
    src_col = o.source_column or _first_present(ds, [meta.get("source_column"), langs.source, "source"])
    tgt_col = o.target_column or _first_present(ds, [meta.get("target_column"), langs.target, "target"])
    check_columns(DatasetDict({split: ds}), [src_col], source, "translation.source_column")
    check_columns(DatasetDict({split: ds}), [tgt_col], source, "translation.target_column")
    return Dataset.from_dict({"source": ds[src_col], "target": ds[tgt_col], **keep})


def _first_present(ds: Dataset, candidates: list[str | None]) -> str:
    """The first candidate column present in ``ds`` (else the last candidate, for the error message)."""
    names = [c for c in candidates if c]
    return next((c for c in names if c in ds.column_names), names[-1])


def read_aligned_texts(files: list[str], refuse_empty: bool = False) -> DatasetDict:
    """Two line-aligned plain-text files (source, target) -> one ``train`` split with source/target columns.

    Fails naming both files when they differ in line count, or are missing, empty or not UTF-8; with
    ``refuse_empty``, also on the first blank line of either side (naming the file and line).
    """
    if len(files) != 2:
        raise DataError(
            f"data.source={','.join(files)!r}: give exactly two line-aligned text files, "
            f"source first, target second (e.g. data.source=train.en,train.fr)."
        )
    lines = []
    for f in files:
        path = Path(f).expanduser()
        if not path.is_file():
            raise DataError(f"Aligned text file {f} does not exist.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{f} is not valid UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8."
            ) from None
        lines.append(text.rstrip("\n").split("\n") if text.strip() else [])
    (src_file, tgt_file), (src, tgt) = files, lines
    if not src or not tgt:
        raise DataError(f"{src_file if not src else tgt_file} is empty: expected one sentence per line.")
    if len(src) != len(tgt):
        raise DataError(
            f"The aligned files are misaligned: {src_file} has {len(src)} lines but {tgt_file} has "
            f"{len(tgt)}. Line i of one must translate line i of the other."
        )
    if refuse_empty:
        for i, (s, t) in enumerate(zip(src, tgt)):
            if not s.strip() or not t.strip():
                blank, other = (src_file, tgt_file) if not s.strip() else (tgt_file, src_file)
                raise DataError(
                    f"{blank} line {i + 1} is empty (its pair in {other}: {(t if not s.strip() else s)!r}). "
                    f"Fix it or set data.empty_texts=skip to drop such pairs."
                )
    return DatasetDict({"train": Dataset.from_dict({"source": src, "target": tgt})})
