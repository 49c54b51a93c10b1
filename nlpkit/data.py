"""One data loader for every task: any source -> checked ``DatasetDict`` with train/validation/test.

Sources: a catalog name (:mod:`nlpkit.assets`), a local file (.csv/.tsv/.json/.jsonl/.parquet/.txt) or a
folder of them (files named ``train.*``, ``validation.*``/``valid.*``/``dev.*``, ``test.*`` become splits),
a dataset folder whose README declares ``configs`` (subsets, as on the hub), or a hub id with its subset
(``data.config``), ``data.revision`` and ``data.data_files``. Errors name the file, split, row and column that
are wrong and what was expected.

Everything here works on whole Arrow columns (pyarrow compute, numpy): nothing walks a column row by row in
Python, so a million rows are prepared in seconds.
"""

from __future__ import annotations

import codecs
import difflib
import json
import logging
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets, load_dataset

from nlpkit.config import DataConfig
from nlpkit.errors import ConfigError, DataError

logger = logging.getLogger("nlpkit.data")

__all__ = [
    "FILE_COLUMN",
    "ROW_COLUMN",
    "DataError",
    "check_columns",
    "drop_empty_texts",
    "encode_fingerprints",
    "holds_label_lists",
    "label_map",
    "load_source",
    "load_splits",
    "map_labels",
    "multi_hot",
    "multi_label_names",
    "visible_columns",
    "origin_of",
    "with_origin",
]

_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
             ".txt": "text"}
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
_CHUNK_ROWS = 1 << 16  # rows of a text column read at once: constant memory whatever the file size
#: Below this many rows a split is called small in a warning (its accuracy moves in steps of 5% or more).
MIN_SPLIT_ROWS = 20
#: Where each row was read from, so that errors name the file and its row, not a position in a shuffled split:
#: the row's number in its file (from 1: the first data row, below a csv header) or in the source's split, and
#: (local files) which file, as a ClassLabel whose names are the paths. Added by :func:`load_source`; tasks drop
#: them with the columns they do not use.
ROW_COLUMN = "__nlpkit_row__"
FILE_COLUMN = "__nlpkit_file__"
_ORIGIN = (ROW_COLUMN, FILE_COLUMN)
_BOMS = [(b"\xff\xfe\x00\x00", "UTF-32", "utf-32"), (b"\x00\x00\xfe\xff", "UTF-32", "utf-32"),
         (b"\xff\xfe", "UTF-16", "utf-16"), (b"\xfe\xff", "UTF-16", "utf-16")]


# ------------------------------------------------------------------------------------------- reading


def _utf16_without_bom(head: bytes) -> bool:
    """Text saved as UTF-16 without a byte-order mark: ASCII with a NUL byte on every even or odd position."""
    if len(head) < 8:
        return False
    even, odd = head[0::2], head[1::2]
    return even.count(0) > 0.9 * len(even) or odd.count(0) > 0.9 * len(odd)


def _check_readable(path: Path) -> None:
    """Fail early, naming the line, on empty, UTF-16 or non-UTF-8 text files (libraries give opaque tracebacks)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: expected a {path.suffix or 'data'} file with at least one row.")
    if path.suffix.lower() == ".parquet":
        return
    with path.open("rb") as fh:
        head = fh.read(4096)
    for bom, name, codec in _BOMS:
        if head.startswith(bom) or (name == "UTF-16" and _utf16_without_bom(head)):
            raise DataError(f"{path} is {name} text, not UTF-8. Re-save it as UTF-8, e.g. "
                            f"`iconv -f {codec} -t utf-8 {path.name} > fixed{path.suffix}` (or pick UTF-8 in your "
                            f"editor's or spreadsheet's 'Save as').")
    if not _valid_utf8(path):
        _name_bad_line(path)
    if path.suffix.lower() in (".csv", ".tsv") and _nonblank_lines(path, 2) < 2:
        raise DataError(f"{path} has no rows (only a header line): expected a header and at least one row.")
    if _nonblank_lines(path, 1) == 0:
        raise DataError(f"{path} holds only blank lines: expected at least one row.")


def _valid_utf8(path: Path) -> bool:
    """Whether the file is UTF-8 text without NUL bytes, read in large blocks (not line by line)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        while block := fh.read(1 << 24):
            if b"\x00" in block:
                return False
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)  # a file cut inside a character
    except UnicodeDecodeError:
        return False
    return True


def _name_bad_line(path: Path) -> None:
    """Raise a DataError naming the first line with a NUL byte or bytes that are not UTF-8."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
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
    raise DataError(f"{path} ends inside a UTF-8 character: the file is cut short. Re-save it as UTF-8.")


def _nonblank_lines(path: Path, enough: int) -> int:
    """How many non-blank lines the file has, counting no further than ``enough``."""
    found = 0
    with path.open("rb") as fh:
        for raw in fh:
            found += bool(raw.strip())
            if found >= enough:
                break
    return found


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
    out: dict[str, Dataset] = {}
    for split, paths in files.items():
        parts = []
        for path in paths:  # one file at a time: each row then knows its file and its row in it
            try:
                part = load_dataset(builder, data_files=[str(path)], split="train", **kwargs)
            except Exception as err:  # datasets wraps parser errors in DatasetGenerationError; unwrap the cause
                cause = err.__cause__ or err
                raise DataError(f"Could not parse {path} as {builder}: {cause}") from err
            if len(part) == 0:
                raise DataError(f"{path} has no rows.")
            parts.append(part)
        try:
            joined = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        except Exception as err:  # files of one split whose columns or types differ
            raise DataError(f"The {split} files {', '.join(map(str, paths))} cannot be read as one split: "
                            f"{str(err).splitlines()[0]}. Give them the same columns, with the same kind of values "
                            f"(numbers or text) in each.") from err
        out[split] = with_origin(joined, [len(p) for p in parts], paths)
    return DatasetDict(out)


def with_origin(d: Dataset, counts: Sequence[int] | None = None, paths: Sequence[Path] | None = None) -> Dataset:
    """``d`` with the columns that say where each row was read from (:data:`ROW_COLUMN`, :data:`FILE_COLUMN`):
    ``counts`` rows from each of ``paths`` in turn, or (no paths) the rows of one split of a catalog or hub
    dataset, numbered from 1."""
    from datasets.fingerprint import Hasher

    counts = list(counts) if counts is not None else [len(d)]
    rows = np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in counts])
    d = d.add_column(ROW_COLUMN, rows, new_fingerprint=Hasher.hash([d._fingerprint, ROW_COLUMN]))
    if paths:
        names = [str(p) for p in paths]
        files = np.repeat(np.arange(len(names), dtype=np.int64), counts)
        d = d.add_column(FILE_COLUMN, files, feature=ClassLabel(names=names),
                         new_fingerprint=Hasher.hash([d._fingerprint, FILE_COLUMN, names]))
    return d


def origin_of(d: Dataset, k: int, source: str, split: str) -> str:
    """Where row ``k`` of the split ``d`` was read from, as error messages say it.

    A local csv/tsv file: ``data.csv line 138 (row 137, train split)`` (rows count the data rows from 1, so
    the line is the row + 1 below the header); jsonl/txt: ``data.jsonl line 137 (train split)``; parquet/json:
    ``data.parquet row 137 (train split)``; a catalog or hub dataset: ``name (train split) row 137`` (its row in
    the source's split). Without origin columns (a task's own reshaped data), the position in ``d``, from 1.
    """
    names = d.column_names
    row = _rows(d, [ROW_COLUMN], k, k + 1).column(0)[0].as_py() if ROW_COLUMN in names else k + 1
    feature = d.features.get(FILE_COLUMN) if FILE_COLUMN in names else None
    if not isinstance(feature, ClassLabel):
        return f"{source} ({split} split) row {row}"
    path = feature.names[_rows(d, [FILE_COLUMN], k, k + 1).column(0)[0].as_py()]
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return f"{path} line {row + 1} (row {row}, {split} split)"
    if suffix in (".jsonl", ".txt"):
        return f"{path} line {row} ({split} split)"
    return f"{path} row {row} ({split} split)"


def visible_columns(d: Dataset) -> list[str]:
    """The columns of ``d`` as the user named them (without the origin columns)."""
    return [c for c in d.column_names if c not in _ORIGIN]


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


def _declares_configs(folder: Path) -> bool:
    """Whether ``folder/README.md`` declares ``configs`` in its YAML header (how hub datasets name subsets)."""
    import yaml

    readme = folder / "README.md"
    if not readme.is_file():
        return False
    parts = readme.read_text(encoding="utf-8", errors="replace").split("---", 2)
    if len(parts) < 3 or parts[0].strip():
        return False
    try:
        header = yaml.safe_load(parts[1])
    except yaml.YAMLError as err:
        raise DataError(f"{readme}: the YAML header is not valid YAML: {err}") from err
    return isinstance(header, dict) and "configs" in header


def _config_names(source: str, revision: str | None) -> list[str]:
    """The subsets a hub dataset or dataset folder declares ([] when they cannot be listed)."""
    from datasets import get_dataset_config_names

    try:
        return list(get_dataset_config_names(source, revision=revision))
    except Exception:  # offline hub, no such dataset: the caller reports the loading error itself
        return []


def _load_with_datasets(source: str, local: bool, config: str | None, revision: str | None,
                        data_files: Any) -> DatasetDict:
    """``load_dataset`` for hub ids and dataset folders: subset (``name``), revision and data files."""
    from nlpkit import assets

    kwargs = {k: v for k, v in {"name": config, "revision": revision, "data_files": data_files}.items()
              if v is not None}
    try:
        loaded = load_dataset(source, **kwargs)
    except Exception as err:
        names = _config_names(source, revision)
        if names and config is not None and config not in names:
            close = difflib.get_close_matches(config, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(f"{source} has no subset (config) {config!r}; its subsets are {names}.{hint} "
                            f"Set data.config to one of them.") from err
        if names and config is None and "config name is missing" in str(err).lower():
            raise DataError(f"{source} has several subsets (configs): {names}. Choose one with "
                            f"data.config=NAME.") from err
        if local:
            raise DataError(f"Could not load the dataset folder {source}: {type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}") from err
        known = ", ".join(a.name for a in assets.list_assets() if a.kind in ("dataset", "corpus"))
        raise DataError(
            f"{source!r} is not a catalog name ({known}), not an existing file or folder, and could not be "
            f"loaded from the Hugging Face hub: {type(err).__name__}: {err}"
        ) from err
    loaded = loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    return DatasetDict({split: with_origin(d) for split, d in loaded.items()})


def load_source(source: str, *, config: str | None = None, revision: str | None = None,
                data_files: Any = None) -> tuple[DatasetDict, dict[str, Any]]:
    """Read ``source`` into a ``DatasetDict`` plus metadata (catalog ``meta.json``, or ``{}``).

    ``config`` (a subset), ``revision`` and ``data_files`` are ``load_dataset``'s ``name``, ``revision`` and
    ``data_files``, for hub ids and dataset folders (a local folder with a README that declares ``configs``
    is read the way the hub reads it).
    """
    from nlpkit import assets

    if not source:
        raise DataError("No data source given: set data.source=<catalog name | file | folder | hub id>.")
    hub_options = {"data.config": config, "data.revision": revision, "data.data_files": data_files}
    if assets.is_catalog_name(source) or Path(source).expanduser().is_file():
        given = [k for k, v in hub_options.items() if v is not None]
        if given:
            kind = "a catalog name" if assets.is_catalog_name(source) else "a single file"
            raise ConfigError(f"{', '.join(given)} apply to hub datasets and dataset folders; {source} is {kind}. "
                              f"Remove {' and '.join(given)}.")
    if assets.is_catalog_name(source):
        folder = assets.fetch(source)
        meta_file = folder / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        return DatasetDict({"train": with_origin(Dataset.from_parquet(str(folder / "data.parquet")))}), meta
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir() and (config or data_files or _declares_configs(path)):
            return _load_with_datasets(str(path), True, config, revision, _plain(data_files)), {}
        return _read_files(_local_files(path)), {}
    if path.suffix.lower() in _BUILDERS or source.startswith((".", "/", "~")):
        raise DataError(f"Data file {source} does not exist.")
    return _load_with_datasets(source, False, config, revision, _plain(data_files)), {}


def _plain(value: Any) -> Any:
    """``data_files`` as load_dataset takes it: a str, a list of str, or {split: str | list}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise ConfigError(f"data.data_files={value!r}: expected a path or glob, a list of them, or {{split: paths}}.")


# ------------------------------------------------------------------------------------------- columns


def _rows(d: Dataset, columns: Sequence[str] | None = None, start: int = 0, stop: int | None = None) -> pa.Table:
    """Rows ``start:stop`` of ``d`` as one Arrow table, through one Arrow ``take`` when ``d`` maps its rows
    (after a select or a shuffle): datasets' own lookup through such a mapping is a Python loop per row."""
    stop = len(d) if stop is None else min(stop, len(d))
    table = d.data.table if columns is None else d.data.table.select(list(columns))
    mapping = d._indices  # datasets' row mapping (no public accessor): a one-column table of row numbers
    if mapping is None:
        return table.slice(start, stop - start)
    return table.take(mapping.column(0).slice(start, stop - start))


def _column(d: Dataset, column: str) -> pa.ChunkedArray:
    """One column of ``d`` as Arrow: no Python object per row."""
    return _rows(d, [column]).column(column)


def _column_chunks(d: Dataset, column: str) -> Iterator[pa.Array]:
    """``column`` in Arrow chunks of at most ``_CHUNK_ROWS`` rows (for text columns: constant memory)."""
    for start in range(0, len(d), _CHUNK_ROWS):
        yield _rows(d, [column], start, start + _CHUNK_ROWS).column(column).combine_chunks()


def _dataset(like: Dataset, rows: Callable[[], pa.Table], fingerprint: str) -> Dataset:
    """The table ``rows()`` (rows of ``like``) as a Dataset with ``like``'s features and a stable ``fingerprint``.

    Written once as an Arrow file beside ``like``'s cache files and memory-mapped: contiguous rows that later
    steps read in slices (not row by row), and a file an identical second run finds again (without computing
    ``rows()``), so datasets' cache of the steps after it (tokenization) is reused too. In memory when ``like``
    has no cache files.
    """
    from datasets.arrow_writer import ArrowWriter
    from datasets.table import InMemoryTable, MemoryMappedTable

    if not like.cache_files:
        return Dataset(InMemoryTable(rows()), info=like.info.copy(), split=like.split, fingerprint=fingerprint)
    path = Path(like.cache_files[0]["filename"]).parent / f"nlpkit-rows-{fingerprint}.arrow"
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # processes of one launch may write it at once
        writer = ArrowWriter(features=like.features, path=str(tmp), writer_batch_size=10_000)
        writer.write_table(rows())
        writer.finalize()
        os.replace(tmp, path)
    return Dataset(MemoryMappedTable.from_file(str(path)), info=like.info.copy(), split=like.split,
                   fingerprint=fingerprint)


def _take(d: Dataset, indices: np.ndarray) -> Dataset:
    """``d.select(indices)`` as contiguous rows (see :func:`_dataset`)."""
    from datasets.fingerprint import Hasher

    def rows() -> pa.Table:
        mapping = d._indices
        return d.data.table.take(pa.array(indices if mapping is None else mapping.column(0).to_numpy()[indices]))

    return _dataset(d, rows, Hasher.hash([d._fingerprint, "take", indices]))


def _contiguous(d: Dataset) -> Dataset:
    """``d`` with its rows in one Arrow file when datasets mapped them (after its own split or shuffle)."""
    from datasets.fingerprint import Hasher

    return d if d._indices is None else _dataset(d, lambda: _rows(d), Hasher.hash([d._fingerprint, "contiguous"]))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


# ------------------------------------------------------------------------------------------- checks


def check_columns(ds: DatasetDict, columns: Sequence[str], source: str, option: str = "data.text_column") -> None:
    """Every split has every column, else a DataError naming the split, the column and what exists."""
    for split, d in ds.items():
        for col in columns:
            if col not in d.column_names:
                close = difflib.get_close_matches(col, visible_columns(d), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise DataError(
                    f"{source} ({split} split) has no column {col!r}; its columns are {visible_columns(d)}.{hint} "
                    f"Point {option} (or the matching data.*_column option) at the right column."
                )


def _blank(chunk: pa.Array, column: str, source: str, split: str) -> np.ndarray:
    """True where a text is missing or only whitespace (vectorized)."""
    if pa.types.is_null(chunk.type):
        return np.ones(len(chunk), dtype=bool)
    if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)
            or pa.types.is_string_view(chunk.type)):
        raise DataError(f"{source} ({split} split): column {column!r} holds {chunk.type} values, not text. "
                        f"Point data.text_column (or the matching data.*_column option) at the text column.")
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(chunk)), 0)
    return pc.fill_null(empty, True).to_numpy(zero_copy_only=False)


def drop_empty_texts(ds: DatasetDict, columns: Sequence[str], policy: str, source: str) -> dict[str, int]:
    """Remove rows whose text columns are missing or blank; return how many per split (or raise if asked)."""
    if policy not in ("skip", "error"):
        raise DataError(f"data.empty_texts must be 'skip' or 'error', not {policy!r}.")
    dropped: dict[str, int] = {}
    for split in list(ds):
        d = ds[split]
        bad = np.zeros(len(d), dtype=bool)
        for col in columns:
            bad |= np.concatenate([_blank(c, col, source, split) for c in _column_chunks(d, col)] or
                                  [np.zeros(0, dtype=bool)])
        n_bad = int(bad.sum())
        if n_bad and policy == "error":
            raise DataError(f"{origin_of(d, _first(bad), source, split)} has an empty text in {list(columns)} "
                            f"({n_bad} such rows). Fix them or set data.empty_texts=skip.")
        if n_bad:
            logger.warning("Skipping %d empty texts in the %s split of %s", n_bad, split, source)
            ds[split] = _take(d, np.flatnonzero(~bad))
        dropped[split] = n_bad
    return dropped


# ------------------------------------------------------------------------------------------- labels


def _class_names(d: Dataset, column: str) -> list[str] | None:
    feature = d.features.get(column)
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def label_map(train: Dataset, column: str, labels: Sequence[str] | None = None,
              source: str = "the training data") -> list[str]:
    """The label names, in id order: given; else a ``ClassLabel`` column's own names; else sorted from the
    training split (ints in numeric order, as their str). ``source`` names the data in errors."""
    if labels:
        return [str(x) for x in labels]
    names = _class_names(train, column)
    if names:
        return names
    values = _label_values(train, column, source, "train")
    if values.null_count:
        row = _first(pc.is_null(values).to_numpy(zero_copy_only=False))
        raise DataError(f"{origin_of(train, row, source, 'train')} has no label in column {column!r}: give every "
                        f"training row a label.")
    unique = pc.unique(values).to_pylist()
    if all(isinstance(v, int) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted(str(v) for v in unique)


def _label_values(d: Dataset, column: str, source: str, split: str) -> pa.ChunkedArray:
    """A single-label column as Arrow, refused with the fix when its values are not one kind of label: numbers
    and text mixed in one column (``1`` and ``"negative"`` in a jsonl file, which datasets keeps as JSON values
    that no Arrow kernel compares), or lists and dicts."""
    col = _column(d, column)
    kind = col.type
    if isinstance(kind, pa.BaseExtensionType) or pa.types.is_struct(kind) or pa.types.is_map(kind):
        values = col.to_pylist()
        if isinstance(kind, pa.BaseExtensionType):  # datasets' Json feature: each value as its JSON text
            values = [json.loads(v) if isinstance(v, str) else v for v in values]
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        first = next((i for i, v in enumerate(values) if type(v).__name__ != kinds[0]), 0) if kinds else 0
        raise DataError(f"{source} ({split} split): the label column {column!r} mixes values of different kinds "
                        f"({', '.join(kinds)}; e.g. {origin_of(d, first, source, split)} holds "
                        f"{values[first]!r}). Write every label in one form: all names (\"negative\") or all "
                        f"numbers.")
    return col


def _value_name(value: Any, class_names: list[str] | None) -> str:
    """A label value as a name: a ``ClassLabel`` id by its class name, anything else as its str."""
    if class_names and isinstance(value, int) and 0 <= value < len(class_names):
        return class_names[value]
    return str(value)


def map_labels(ds: DatasetDict, column: str, names: Sequence[str], source: str) -> DatasetDict:
    """Replace label values by their ids in a ``labels`` column; unknown labels (e.g. only in eval data) fail,
    naming the row. A ``ClassLabel`` column is read by its names (so a model's own label order wins)."""
    index = {n: i for i, n in enumerate(names)}
    for split, d in ds.items():
        own = _class_names(d, column)
        col = _label_values(d, column, source, split)
        values = pc.unique(col).to_pylist()  # one Python look-up per distinct value, not per row
        ids = [index.get(_value_name(v, own), -1) for v in values]
        if own == list(names) and -1 not in ids:  # the ids already are the model's: nothing to rewrite
            ds[split] = _contiguous(d) if column == "labels" else _contiguous(d).rename_column(column, "labels")
            continue
        if -1 in ids:
            bad = [v for v, i in zip(values, ids) if i < 0]
            where = pc.is_in(col, value_set=pa.array(bad, type=col.type)).to_numpy(zero_copy_only=False)
            row = _first(where)
            hidden = " (-1 marks a hidden label: hub test splits often have none; set data.test_split to a " \
                     "labelled split)" if own and col[row].as_py() == -1 else ""
            raise DataError(
                f"{origin_of(d, row, source, split)}: label {col[row].as_py()!r} in column {column!r} is not one "
                f"of the known labels {list(names)}{hidden}. Fix the row, or list every label with labels=[...]."
            )
        where = pc.index_in(col, value_set=pa.array(values, type=col.type)).to_numpy(zero_copy_only=False)
        labels = np.asarray(ids, dtype=np.int64)[where]
        ds[split] = _contiguous(d).remove_columns(column).add_column("labels", labels)  # no pass over the rows
    return ds


# ------------------------------------------------------------------------------------------- multi-label


def holds_label_lists(d: Dataset, column: str) -> bool:
    """Whether ``column`` holds lists (a multi-label column such as ``["sports", "politics"]``)."""
    kind = d.data.table.schema.field(column).type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _label_lists(d: Dataset, column: str, delimiter: str | None, source: str,
                 split: str) -> tuple[pa.Array, np.ndarray, int]:
    """Every (label name, row) pair of a multi-label column, in Arrow: ``(names, rows, n_rows)``.

    The column holds lists (of names, or of ``ClassLabel`` ids: read by their names), or strings of names joined
    by ``delimiter`` (blanks around names are trimmed). An empty list or string, or an empty cell, is a text
    with no label.
    """
    col = _column(d, column).combine_chunks()
    if delimiter is not None and not holds_label_lists(d, column):
        if pa.types.is_integer(col.type) or pa.types.is_null(col.type):  # a csv column of single numeric labels
            col = pc.cast(col, pa.string())
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise DataError(f"{source} ({split} split): data.label_delimiter={delimiter!r} needs a text label "
                            f"column, but {column!r} holds {col.type} values.")
        col = pc.split_pattern(col, delimiter)
    elif not holds_label_lists(d, column):
        raise DataError(f"{source} ({split} split): multi-label needs the label column {column!r} to hold lists "
                        f"(it holds {col.type}); for labels joined in a string set data.label_delimiter, for one "
                        f"0/1 column per label set data.label_columns=[...].")
    rows = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(col)
    feature = d.features.get(column)
    class_names = getattr(getattr(feature, "feature", None), "names", None)  # List(ClassLabel(...))
    if class_names and pa.types.is_integer(values.type):
        values = pa.array(class_names, pa.string()).take(values)
    else:
        values = pc.cast(values, pa.string())
    values = pc.utf8_trim_whitespace(values)
    keep = pc.and_(pc.is_valid(values), pc.greater(pc.utf8_length(values), 0))
    if not pc.all(keep).as_py():
        mask = keep.to_numpy(zero_copy_only=False)
        values, rows = values.filter(keep), rows[mask]
    return values, rows, len(d)


def multi_label_names(train: Dataset, *, column: str | None = None, columns: Sequence[str] | None = None,
                      delimiter: str | None = None, labels: Sequence[str] | None = None) -> list[str]:
    """The label names of a multi-label training split, in id order: ``labels`` when given; else the 0/1
    ``columns``' names; else the sorted names found in ``column`` (lists, or strings joined by ``delimiter``)."""
    if labels:
        return [str(x) for x in labels]
    if columns:
        return [str(c) for c in columns]
    feature = train.features.get(column)
    class_names = getattr(getattr(feature, "feature", None), "names", None)
    if class_names:
        return list(class_names)
    values, _, _ = _label_lists(train, column, delimiter, "the training data", "train")
    return sorted(pc.unique(values).to_pylist())


def _hot_from_columns(d: Dataset, columns: Sequence[str], names: Sequence[str], source: str,
                      split: str) -> np.ndarray:
    """A (rows, labels) 0/1 matrix from one 0/1 column per label (columns named as the labels)."""
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise DataError(f"{source} ({split} split): label column(s) {unknown} are not among the model's labels "
                        f"{list(names)}.")
    hot = np.zeros((len(d), len(names)), dtype=np.int8)
    for j, name in enumerate(names):
        if name not in columns:
            raise DataError(f"{source} ({split} split) has no 0/1 column for the label {name!r}; data.label_columns "
                            f"is {list(columns)}.")
        col = _column(d, name)
        if col.null_count:
            row = _first(pc.is_null(col).to_numpy(zero_copy_only=False))
            raise DataError(f"{origin_of(d, row, source, split)}: label column {name!r} is empty; expected 0 or 1.")
        if not (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"{source} ({split} split): label column {name!r} holds {col.type} values; expected 0 "
                            f"or 1 (one column per label).")
        values = col.to_numpy() if col.num_chunks else np.zeros(0)
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = _first(bad)
            raise DataError(f"{origin_of(d, row, source, split)}: label column {name!r} holds {values[row].item()!r}; "
                            f"expected 0 or 1.")
        hot[:, j] = values
    return hot


def multi_hot(ds: DatasetDict, names: Sequence[str], source: str, *, column: str | None = None,
              columns: Sequence[str] | None = None, delimiter: str | None = None) -> DatasetDict:
    """Replace multi-label targets by a ``labels`` column of multi-hot rows (``int8``, one slot per name, in id
    order), built with Arrow and numpy, never a Python pass over the rows.

    The labels come from ``column`` (lists of names, or strings joined by ``delimiter``) or from ``columns``
    (one 0/1 column per label, named as the labels; they are removed). A label that is not in ``names`` fails,
    naming the row.
    """
    index = pa.array(list(names), pa.string())
    for split, d in ds.items():
        if columns:
            hot = _hot_from_columns(d, columns, names, source, split)
            d = _contiguous(d).remove_columns([c for c in columns if c in d.column_names])
        else:
            values, rows, n = _label_lists(d, column, delimiter, source, split)
            ids = pc.index_in(values, value_set=index)
            if ids.null_count:
                k = _first(pc.is_null(ids).to_numpy(zero_copy_only=False))
                raise DataError(f"{origin_of(d, int(rows[k]), source, split)}: label {values[k].as_py()!r} in column "
                                f"{column!r} is not one of the known labels {list(names)}. Fix the row, or list "
                                f"every label with labels=[...].")
            hot = np.zeros((n, len(names)), dtype=np.int8)
            hot[rows, ids.to_numpy(zero_copy_only=False)] = 1
            d = _contiguous(d).remove_columns(column)
        flat = pa.FixedSizeListArray.from_arrays(pa.array(hot.ravel(), pa.int8()), len(names))
        ds[split] = d.add_column("labels", flat)
    return ds


# ------------------------------------------------------------------------------------------- splits


def _class_codes(d: Dataset, column: str) -> np.ndarray | None:
    """An integer class per row of ``column`` (missing values are a class of their own), or None when the
    column holds no classes (lists, floats, structs)."""
    col = _column(d, column)
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
    col = _column(d, group)
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
        return _contiguous(parts["train"]), _contiguous(parts["test"])
    keep, hold = _group_indices(d, n_hold, seed, group) if group else _stratified_indices(codes, n_hold, seed)
    return _take(d, keep), _take(d, hold)


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
        ds["train"] = _contiguous(subset)
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
