"""Predict a whole file: csv / tsv / jsonl / parquet in and out, for any task.

The input is read in chunks (constant memory), each chunk goes through the task's ``predict`` (the shared
batched-inference path), and the output gets every input column, in input order, plus the task's prediction
columns (:meth:`nlpkit.task.Task.prediction_columns`). Under ``accelerate launch`` the rows of each chunk are
split across the processes and gathered back in order, so the output is still one file.

The output is written under a temporary name beside the final one and renamed when complete: an interrupted
run never leaves a truncated file under the final name. The temporary (``.<name>.<host>.<pid>.<random>.partial``)
is created exclusively, so nothing already there is written through; one left by a killed run (its process is
gone) is removed by the next run for the same output. An existing output file is replaced only when asked
(``overwrite``); a folder, a missing parent folder or an unsupported type is refused before any row is predicted.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import pandas as pd

from nlpkit.errors import DataError, UsageError
from nlpkit.progress import progress_bar

__all__ = ["FORMATS", "check_output", "chunk_inputs", "predict_file", "read_chunks", "with_predictions"]

logger = logging.getLogger("nlpkit.predict_file")

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}


def _format(path: Path, role: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{role} file {path}: unsupported type {path.suffix!r}; use one of {', '.join(FORMATS)}.")
    return fmt


def count_rows(path: Path) -> int | None:
    """Rows in ``path`` without reading it into memory (parquet metadata, or counting lines), for progress."""
    fmt = _format(path, "Input")
    if fmt == "parquet":
        return _parquet_file(path).metadata.num_rows
    with path.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    # a csv/tsv has a header line; quoted fields may hold newlines, so this is an estimate for the bar only
    return max(0, lines - 1) if fmt in ("csv", "tsv") else lines


def _parquet_file(path: Path) -> Any:
    """``pyarrow.parquet.ParquetFile(path)``; an empty or damaged file is a :class:`DataError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise DataError(f"Input file {path} is empty (0 bytes): expected a parquet file with at least a schema.")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"Could not read {path} as parquet: {err}") from err


def read_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of ``path`` as DataFrames of at most ``chunk_rows`` rows, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Input file {path} does not exist.")
    fmt = _format(path, "Input")
    try:
        if fmt == "parquet":
            for batch in _parquet_file(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif fmt == "jsonl":
            yield from pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
        else:
            yield from pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", chunksize=chunk_rows, dtype=str,
                                   keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"Could not read {path} as {fmt}: {err}") from err


def check_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse (:class:`UsageError`) an output file that cannot or must not be written, before any work.

    An existing file is replaced only with ``overwrite``; a folder, a missing parent folder (it is not created:
    a mistyped path should not become a new folder tree) and an unsupported type are always refused.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder; give a file path in it (e.g. {path / 'predictions.csv'}).")
    _format(path, "Output")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UsageError(f"--output {path} already exists; pass --overwrite to replace it, or choose another name.")
    parent = path.parent
    if not parent.is_dir():
        state = "is not a folder" if parent.exists() else "does not exist"
        raise UsageError(f"--output {path}: the folder {parent} {state}; create it first or choose another path.")


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _partial_name(path: Path) -> re.Pattern[str]:
    """The names of ``path``'s temporaries: ``.<name>.<host>.<pid>.<random>.partial``."""
    return re.compile(rf"^\.{re.escape(path.name)}\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]+\.partial$")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (where that cannot be asked safely: assume it does)."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_stale_partials(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by killed runs on this machine (their process is gone)."""
    removed = []
    pattern = _partial_name(path)
    for entry in path.parent.glob(f".{glob_escape(path.name)}.*.partial"):
        m = pattern.match(entry.name)
        if m and m["host"] == _HOST and not _alive(int(m["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    legacy = path.with_name(f".{path.name}.partial")  # the fixed name of earlier nlpkit versions
    if legacy.is_file() and not legacy.is_symlink():
        legacy.unlink()
        removed.append(legacy)
    if removed:
        logger.info("Removed %d temporary file(s) of %s left by a killed run", len(removed), path)
    return removed


def _new_partial(path: Path) -> Path:
    """Create a new, empty temporary beside ``path`` exclusively (never an existing file or link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue


class _Writer:
    """Appends DataFrames to a temporary file; :meth:`commit` renames it to the final name."""

    def __init__(self, path: Path):
        self.path, self.fmt = path, _format(path, "Output")
        _remove_stale_partials(path)
        self.tmp = _new_partial(path)
        self.rows = 0
        self._parquet: Any = None

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, table.schema)
            try:
                table = table.cast(self._parquet.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
                raise self._type_changed(table) from err
            self._parquet.write_table(table)
        elif self.fmt == "jsonl":
            with self.tmp.open("a", encoding="utf-8") as fh:
                df.to_json(fh, orient="records", lines=True, force_ascii=False)
        else:
            df.to_csv(self.tmp, sep="\t" if self.fmt == "tsv" else ",", index=False, mode="a",
                      header=self.rows == 0)
        self.rows += len(df)

    def _type_changed(self, table: Any) -> DataError:
        """The error for a chunk whose column types differ from the first chunk's (e.g. ids that are numbers in
        the first rows of a jsonl file and text later): a parquet file holds one type per column."""
        schema = self._parquet.schema
        changed = [f"{f.name!r} ({schema.field(f.name).type} in earlier rows, {f.type} here)" for f in table.schema
                   if f.name in schema.names and schema.field(f.name).type != f.type]
        return DataError(f"Input rows {self.rows + 1}-{self.rows + table.num_rows} change the type of column "
                         f"{', '.join(changed) or '?'}, and a parquet file holds one type per column. Make the "
                         f"column's values one type (e.g. quote them all as text), or write {self.path.stem}.jsonl "
                         f"or .csv instead.")

    def commit(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        os.replace(self.tmp, self.path)  # an empty input: the empty temporary, a header-less file

    def abort(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self.tmp.unlink(missing_ok=True)


def chunk_inputs(chunk: pd.DataFrame, column: str, source: str | Path) -> list[Any]:
    """The inputs of one chunk of rows: its ``column`` (a :class:`DataError` naming ``source`` when it has none),
    missing values as ``""``. With :func:`with_predictions`, the one per-chunk path of every file prediction
    (this module's and :mod:`nlpkit.ray_predict`'s)."""
    if column not in chunk.columns:
        raise DataError(f"{source} has no column {column!r}; its columns are {list(chunk.columns)}. "
                        f"Name the input column with --text-column.")
    inputs = chunk[column].tolist()
    return ["" if v is None or (isinstance(v, float) and v != v) else v for v in inputs]  # NaN -> ""


def with_predictions(task: Any, chunk: pd.DataFrame, inputs: list[Any], outputs: list[Any]) -> pd.DataFrame:
    """``chunk`` with the task's prediction columns added (:meth:`nlpkit.task.Task.prediction_columns`); a
    prediction column whose name an input column has gets the suffix ``_pred`` (an input column is never
    overwritten)."""
    cols = task.prediction_columns(inputs, outputs)
    taken = set(chunk.columns)
    return chunk.assign(**{(name if name not in taken else f"{name}_pred"): values for name, values in cols.items()})


def predict_file(pipe: Any, input_path: str | Path, output_path: str | Path, *, text_column: str | None = None,
                 batch_size: int = 64, chunk_rows: int = 2048, progress: bool = True, overwrite: bool = False,
                 **options: Any) -> dict[str, Any]:
    """Predict every row of ``input_path`` with ``pipe`` (an :class:`nlpkit.Pipeline`) into ``output_path``.

    ``text_column`` defaults to the task's input column (``Task.prediction_input_column``); ``options`` go to
    the task's ``predict`` (e.g. ``top_k``, ``max_new_tokens``). An existing ``output_path`` is replaced only
    with ``overwrite`` (:func:`check_output`). Returns ``{"rows", "output", "columns"}``.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    task = pipe.task
    input_path, output_path = Path(input_path), Path(output_path)
    if input_path.resolve() == output_path.resolve():
        raise UsageError(f"--output {output_path} is the input file: choose another name.")
    check_output(output_path, overwrite)
    column = text_column or task.prediction_input_column()
    writer = _Writer(output_path) if state.is_main_process else None
    total = count_rows(input_path) if state.is_main_process and progress else None
    bar = progress_bar(total=total, show=progress and state.is_main_process, desc="Predicting", unit="row")
    new_columns: list[str] = []
    try:
        for chunk in read_chunks(input_path, chunk_rows):
            inputs = chunk_inputs(chunk, column, input_path)
            with state.split_between_processes(inputs) as mine:
                outputs = pipe(list(mine), batch_size=batch_size, **options) if mine else []
            if state.num_processes > 1:
                outputs = gather_object(outputs)  # rank order = row order (contiguous slices)
            if writer is not None:
                done = with_predictions(task, chunk, inputs, outputs)
                new_columns = list(done.columns[len(chunk.columns):])
                writer.write(done)
            bar.update(len(chunk))
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    state.wait_for_everyone()
    rows = writer.rows if writer is not None else 0
    if state.is_main_process:
        logger.info("Wrote %d rows to %s (prediction columns: %s)", rows, output_path, ", ".join(new_columns))
    return {"rows": rows, "output": str(output_path), "columns": new_columns}
