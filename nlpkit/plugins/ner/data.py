"""Reading named-entity data: CoNLL column files, token/tag lists in tables, hub datasets with ``ClassLabel`` tags.

Every source ends as the same splits: a column of token lists and a column of tag-name lists in IOB2
(:mod:`nlpkit.plugins.ner.tags`), with what was repaired or skipped counted for the report.

CoNLL column files (``.conll``, ``.iob``, ``.bio``, ``.bioes``, or ``.txt``/no suffix that read as columns): one token
per line, its tag in the last column (``data.conll_tag_column`` picks another), sentences separated by blank lines,
``-DOCSTART-`` lines skipped. A folder of them splits by file name (``train.*``, ``dev.*``/``valid*``,
``test.*``, as nlpkit reads any folder); a file that is not one names its line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Sequence as HfSequence

from nlpkit.data import origin_of
from nlpkit.errors import DataError
from nlpkit.plugins.ner.tags import TagCheck, guess_scheme, split_tag, to_iob2

__all__ = ["CONLL_SUFFIXES", "FILE_COLUMN", "LINE_COLUMN", "is_conll", "read_conll", "tag_names", "to_tag_lists"]

CONLL_SUFFIXES = (".conll", ".conll03", ".conllx", ".iob", ".iob1", ".iob2", ".bio", ".bioes", ".bilou")
#: Where each sentence of a CoNLL file was read from: the file and the line of its first token.
FILE_COLUMN = "__ner_file__"
LINE_COLUMN = "__ner_line__"
_SNIFF_SUFFIXES = ("", ".txt", ".tsv", ".train", ".testa", ".testb", ".dev", ".test")
_TAG_LIKE = re.compile(r"^(O|[BIESLU][-_]\S+)$")
_SPLITS = {"train": "train", "training": "train", "dev": "validation", "devel": "validation",
           "valid": "validation", "validation": "validation", "val": "validation", "testa": "validation",
           "test": "test", "testb": "test"}


def _looks_like_columns(path: Path, lines: int = 50) -> bool:
    """Whether the first non-blank lines of ``path`` are ``token ... tag`` columns (for files without a CoNLL
    suffix, e.g. ``eng.train`` or ``wnut17train.txt``)."""
    seen = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0] == "-DOCSTART-":
                    continue
                if len(parts) < 2 or not _TAG_LIKE.match(parts[-1]):
                    return False
                seen += 1
                if seen >= lines:
                    break
    except OSError:
        return False
    return seen > 0


def _conll_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                  and (p.suffix.lower() in CONLL_SUFFIXES
                       or (p.suffix.lower() in _SNIFF_SUFFIXES and _looks_like_columns(p))))


def is_conll(source: str, fmt: str) -> bool:
    """Whether ``source`` is read as CoNLL columns: ``data.format=conll``, or ``auto`` and a local file (or folder
    of files) with a CoNLL suffix or whose lines read as token/tag columns."""
    if fmt == "conll":
        return True
    if fmt != "auto" or not source:
        return False
    path = Path(source).expanduser()
    if path.is_file():
        return path.suffix.lower() in CONLL_SUFFIXES or (path.suffix.lower() in _SNIFF_SUFFIXES
                                                          and _looks_like_columns(path))
    if path.is_dir():
        files = _conll_files(path)
        return bool(files) and not any(p.suffix.lower() in (".csv", ".json", ".jsonl", ".parquet")
                                       for p in path.iterdir())
    return False


def _split_of(path: Path) -> str:
    parts = re.split(r"[._\-]", path.name.lower())
    for part in parts:
        if part in _SPLITS:
            return _SPLITS[part]
        for key, split in _SPLITS.items():  # wnut17train.conll, eng.testa
            if part.endswith(key) and len(key) > 3:
                return split
    return "train"


def _sentences(file: Path, tag_column: int) -> Iterator[tuple[list[str], list[str], int]]:
    """``(tokens, tags, line of the first token)`` of every sentence of one CoNLL file."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = file.read_bytes()[:err.start].count(b"\n") + 1
        raise DataError(f"{file} line {line} is not UTF-8 text ({err.reason}). Save the file as UTF-8.") from err
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        parts = [p.strip() for p in (line.split("\t") if "\t" in line else line.split())]
        if not line.strip() or parts[0] == "-DOCSTART-":
            if tokens:
                yield tokens, tags, first
            tokens, tags = [], []
            continue
        if len(parts) < 2:
            raise DataError(f"{file} line {number}: {line.strip()!r} has one column; a CoNLL line is a token and "
                            f"its tag (and optionally columns between), separated by spaces or tabs.")
        try:
            tag = parts[tag_column]
        except IndexError:
            raise DataError(f"{file} line {number} has {len(parts)} columns; data.conll_tag_column={tag_column} "
                            f"does not exist there.") from None
        if not tokens:
            first = number
        tokens.append(parts[0])
        tags.append(tag)


def read_conll(source: str, *, tokens_column: str, tags_column: str, tag_column: int = -1) -> DatasetDict:
    """The sentences of a CoNLL file or folder: ``tokens_column`` (token lists) and ``tags_column`` (tag lists, as
    written), plus where each sentence starts (:data:`FILE_COLUMN`, :data:`LINE_COLUMN`)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"Data file {source} does not exist.")
    files = _conll_files(path)
    if not files:
        raise DataError(f"{path} holds no CoNLL files ({', '.join(CONLL_SUFFIXES)}, or .txt files of token and tag "
                        f"columns).")
    splits: dict[str, dict[str, list]] = {}
    for file in files:
        rows = splits.setdefault(_split_of(file) if path.is_dir() else "train",
                                 {tokens_column: [], tags_column: [], FILE_COLUMN: [], LINE_COLUMN: []})
        for tokens, tags, first in _sentences(file, tag_column):
            rows[tokens_column].append(tokens)
            rows[tags_column].append(tags)
            rows[FILE_COLUMN].append(str(file))
            rows[LINE_COLUMN].append(first)
    features = Features({tokens_column: HfSequence(Value("string")), tags_column: HfSequence(Value("string")),
                         FILE_COLUMN: Value("string"), LINE_COLUMN: Value("int64")})
    out = {}
    for split, rows in splits.items():
        if not rows[tokens_column]:
            raise DataError(f"{path}: the {split} files hold no sentences.")
        out[split] = Dataset.from_dict(rows, features=features)
    return DatasetDict(out)


def tag_names(d: Dataset, column: str) -> list[str] | None:
    """The tag names of a ``Sequence(ClassLabel)`` column (hub datasets such as conll2003), else None."""
    feature = d.features.get(column)
    inner = getattr(feature, "feature", None)
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def where(d: Dataset, k: int, source: str, split: str, tokens: Sequence[str]) -> Callable[[int], str]:
    """``token index -> place`` for the error messages of row ``k``: a CoNLL file's line, else the row's origin."""
    if LINE_COLUMN in d.column_names:
        row = d.select_columns([FILE_COLUMN, LINE_COLUMN])[k]
        return lambda i: f"{row[FILE_COLUMN]} line {row[LINE_COLUMN] + i} ({split} split, token {tokens[i]!r})"
    base = origin_of(d, k, source, split)
    return lambda i: f"{base}, token {i + 1} ({tokens[i]!r})"


def to_tag_lists(d: Dataset, *, tokens_column: str, tags_column: str, scheme: str, invalid: str, source: str,
                 split: str, id_names: list[str] | None, check: TagCheck
                 ) -> tuple[list[list[str]], list[list[str]], int]:
    """``(token lists, IOB2 tag lists, rows skipped for having no tokens)`` of one split.

    Tags may be names or ids (``id_names`` maps ids to names: a ``ClassLabel`` feature or the ``labels`` option).
    A row whose token and tag lists differ in length, a token that is not a string, or an unknown id is a
    :class:`DataError` naming the row.
    """
    table = d.select_columns([tokens_column, tags_column]).to_dict()
    out_tokens: list[list[str]] = []
    out_tags: list[list[str]] = []
    empty = 0
    for k, (tokens, tags) in enumerate(zip(table[tokens_column], table[tags_column])):
        if tokens is None or (isinstance(tokens, list) and not tokens):
            empty += 1
            continue
        if isinstance(tokens, str) or not isinstance(tokens, list):
            raise DataError(f"{origin_of(d, k, source, split)}: {tokens_column!r} holds {type(tokens).__name__} "
                            f"{str(tokens)[:40]!r}, not a list of tokens. Point data.text_column at the column of "
                            f"token lists (or give CoNLL files).")
        if not isinstance(tags, list) or len(tags) != len(tokens):
            size = len(tags) if isinstance(tags, list) else type(tags).__name__
            raise DataError(f"{origin_of(d, k, source, split)}: {len(tokens)} tokens but {size} tags in "
                            f"{tags_column!r}. Give one tag per token.")
        if any(not isinstance(t, str) for t in tokens):
            bad = next(t for t in tokens if not isinstance(t, str))
            raise DataError(f"{origin_of(d, k, source, split)}: token {bad!r} is not a string.")
        names = []
        for i, tag in enumerate(tags):
            if isinstance(tag, bool) or not isinstance(tag, (int, str)):
                raise DataError(f"{where(d, k, source, split, tokens)(i)}: tag {tag!r} is neither a tag name nor "
                                f"an id.")
            if isinstance(tag, int):
                if id_names is None or not 0 <= tag < len(id_names):
                    raise DataError(f"{where(d, k, source, split, tokens)(i)}: tag id {tag} cannot be named: "
                                    f"give the tag names in id order with labels=[O,B-PER,...] (the data has no "
                                    f"ClassLabel feature), or tags as names.")
                tag = id_names[tag]
            names.append(tag)
        fix = to_iob2(names, scheme, invalid=invalid, check=check,
                      where=lambda i, k=k, tokens=tokens: where(d, k, source, split, tokens)(i))
        out_tokens.append(tokens)
        out_tags.append(fix)
    return out_tokens, out_tags, empty


def resolve_scheme(scheme: str, sample: Sequence[Sequence[Any]], id_names: list[str] | None) -> str:
    """``data.scheme``, with ``auto`` decided from the tags of ``sample`` (names, or ids through ``id_names``)."""
    if scheme != "auto":
        return scheme
    named = [[id_names[t] if isinstance(t, int) and id_names and 0 <= t < len(id_names) else str(t) for t in tags]
             for tags in sample if isinstance(tags, list)]
    return guess_scheme(named)


def label_set(tag_lists: Sequence[Sequence[str]]) -> list[str]:
    """``O`` then ``B-``/``I-`` of every entity type found, types sorted: the model's labels in id order."""
    kinds = sorted({split_tag(t)[1] for tags in tag_lists for t in tags if t != "O"})
    return ["O", *[f"{p}-{k}" for k in kinds for p in ("B", "I")]]
