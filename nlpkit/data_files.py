"""Reading data: any source -> a ``DatasetDict`` whose rows know where they were read from.

Sources: a catalog name (:mod:`nlpkit.assets`), a local file (.csv/.tsv/.json/.jsonl/.parquet/.txt) or a
folder of them (files named ``train.*``, ``validation.*``/``valid.*``/``dev.*``, ``test.*`` become splits),
a dataset folder whose README declares ``configs`` (subsets, as on the hub), or a hub id with its subset
(``data.config``), ``data.revision`` and ``data.data_files``. Every row carries its origin (file and line, or
the source's split and row: :func:`origin_of`), so errors name the file, split, row and column that are wrong
and what was expected. Also here: the Arrow helpers every data step shares (whole columns, never a Python pass
over the rows: a million rows are prepared in seconds) and the generic checks (columns present, empty texts).

Splitting is :mod:`nlpkit.splits`; a task's own label logic lives in its plugin (sentiment's in
``nlpkit/plugins/sentiment/labels.py``).
"""

from __future__ import annotations

import codecs
import difflib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets, load_dataset

from nlpkit.errors import ConfigError, DataError

logger = logging.getLogger("nlpkit.data")

__all__ = [
    "FILE_COLUMN",
    "ROW_COLUMN",
    "DataError",
    "arrow_column",
    "arrow_rows",
    "check_columns",
    "contiguous",
    "drop_empty_texts",
    "first_index",
    "load_source",
    "origin_of",
    "take_rows",
    "visible_columns",
    "with_origin",
]

_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
             ".txt": "text"}
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
_CHUNK_ROWS = 1 << 16  # rows of a text column read at once: constant memory whatever the file size
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
    row = arrow_rows(d, [ROW_COLUMN], k, k + 1).column(0)[0].as_py() if ROW_COLUMN in names else k + 1
    feature = d.features.get(FILE_COLUMN) if FILE_COLUMN in names else None
    if not isinstance(feature, ClassLabel):
        return f"{source} ({split} split) row {row}"
    path = feature.names[arrow_rows(d, [FILE_COLUMN], k, k + 1).column(0)[0].as_py()]
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


def arrow_rows(d: Dataset, columns: Sequence[str] | None = None, start: int = 0, stop: int | None = None) -> pa.Table:
    """Rows ``start:stop`` of ``d`` as one Arrow table, through one Arrow ``take`` when ``d`` maps its rows
    (after a select or a shuffle): datasets' own lookup through such a mapping is a Python loop per row."""
    stop = len(d) if stop is None else min(stop, len(d))
    table = d.data.table if columns is None else d.data.table.select(list(columns))
    mapping = d._indices  # datasets' row mapping (no public accessor): a one-column table of row numbers
    if mapping is None:
        return table.slice(start, stop - start)
    return table.take(mapping.column(0).slice(start, stop - start))


def arrow_column(d: Dataset, column: str) -> pa.ChunkedArray:
    """One column of ``d`` as Arrow: no Python object per row (through :func:`arrow_rows`)."""
    return arrow_rows(d, [column]).column(column)


def _column_chunks(d: Dataset, column: str) -> Iterator[pa.Array]:
    """``column`` in Arrow chunks of at most ``_CHUNK_ROWS`` rows (for text columns: constant memory)."""
    for start in range(0, len(d), _CHUNK_ROWS):
        yield arrow_rows(d, [column], start, start + _CHUNK_ROWS).column(column).combine_chunks()


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


def take_rows(d: Dataset, indices: np.ndarray) -> Dataset:
    """``d.select(indices)`` as contiguous rows (see :func:`_dataset`)."""
    from datasets.fingerprint import Hasher

    def rows() -> pa.Table:
        mapping = d._indices
        return d.data.table.take(pa.array(indices if mapping is None else mapping.column(0).to_numpy()[indices]))

    return _dataset(d, rows, Hasher.hash([d._fingerprint, "take", indices]))


def contiguous(d: Dataset) -> Dataset:
    """``d`` with its rows in one Arrow file when datasets mapped them (after its own split or shuffle)."""
    from datasets.fingerprint import Hasher

    return d if d._indices is None else _dataset(d, lambda: arrow_rows(d), Hasher.hash([d._fingerprint, "contiguous"]))


def first_index(mask: np.ndarray) -> int:
    """The index of the first True in ``mask`` (the row an error names)."""
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
            raise DataError(f"{origin_of(d, first_index(bad), source, split)} has an empty text in {list(columns)} "
                            f"({n_bad} such rows). Fix them or set data.empty_texts=skip.")
        if n_bad:
            logger.warning("Skipping %d empty texts in the %s split of %s", n_bad, split, source)
            ds[split] = take_rows(d, np.flatnonzero(~bad))
        dropped[split] = n_bad
    return dropped
