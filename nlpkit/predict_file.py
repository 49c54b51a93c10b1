"""Predict a whole file: csv / tsv / jsonl / parquet in and out, for any task.

The input is read in chunks (constant memory), each chunk goes through the task's ``predict`` (the shared
batched-inference path), and the output gets every input column, in input order, plus the task's prediction
columns (:meth:`nlpkit.task.Task.prediction_columns`). Under ``accelerate launch`` the rows of each chunk are
split across the processes and gathered back in order, so the output is still one file.

The output is written under a temporary name beside the final one and renamed when complete: an interrupted
run never leaves a truncated file under the final name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from nlpkit.errors import DataError, UsageError

__all__ = ["FORMATS", "predict_file", "read_chunks"]

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
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    # a csv/tsv has a header line; quoted fields may hold newlines, so this is an estimate for the bar only
    return max(0, lines - 1) if fmt in ("csv", "tsv") else lines


def read_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of ``path`` as DataFrames of at most ``chunk_rows`` rows, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Input file {path} does not exist.")
    fmt = _format(path, "Input")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif fmt == "jsonl":
            yield from pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
        else:
            yield from pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", chunksize=chunk_rows, dtype=str,
                                   keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"Could not read {path} as {fmt}: {err}") from err


class _Writer:
    """Appends DataFrames to a temporary file; :meth:`commit` renames it to the final name."""

    def __init__(self, path: Path):
        self.path, self.fmt = path, _format(path, "Output")
        self.tmp = path.with_name(f".{path.name}.partial")
        self.rows = 0
        self._parquet: Any = None
        if self.tmp.exists():
            self.tmp.unlink()

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        elif self.fmt == "jsonl":
            with self.tmp.open("a", encoding="utf-8") as fh:
                df.to_json(fh, orient="records", lines=True, force_ascii=False)
        else:
            df.to_csv(self.tmp, sep="\t" if self.fmt == "tsv" else ",", index=False, mode="a",
                      header=self.rows == 0)
        self.rows += len(df)

    def commit(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if not self.tmp.exists():  # an empty input: still write a (header-only) file
            self.tmp.touch()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self.tmp.unlink(missing_ok=True)


def _columns(task: Any, inputs: list[Any], outputs: list[Any], taken: set[str]) -> dict[str, list]:
    cols = task.prediction_columns(inputs, outputs)
    # never overwrite an input column: a clashing prediction column gets a suffix
    return {(name if name not in taken else f"{name}_pred"): values for name, values in cols.items()}


def predict_file(pipe: Any, input_path: str | Path, output_path: str | Path, *, text_column: str | None = None,
                 batch_size: int = 64, chunk_rows: int = 2048, progress: bool = True,
                 **options: Any) -> dict[str, Any]:
    """Predict every row of ``input_path`` with ``pipe`` (an :class:`nlpkit.Pipeline`) into ``output_path``.

    ``text_column`` defaults to the task's input column (``Task.prediction_input_column``); ``options`` go to
    the task's ``predict`` (e.g. ``top_k``, ``max_new_tokens``). Returns ``{"rows", "output", "columns"}``.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    state = PartialState()
    task = pipe.task
    input_path, output_path = Path(input_path), Path(output_path)
    if input_path.resolve() == output_path.resolve():
        raise UsageError(f"--output {output_path} is the input file: choose another name.")
    column = text_column or task.prediction_input_column()
    writer = _Writer(output_path) if state.is_main_process else None
    total = count_rows(input_path) if state.is_main_process and progress else None
    bar = tqdm(total=total, desc="Predicting", unit="row", disable=not (progress and state.is_main_process))
    new_columns: list[str] = []
    try:
        for chunk in read_chunks(input_path, chunk_rows):
            if column not in chunk.columns:
                raise DataError(f"{input_path} has no column {column!r}; its columns are {list(chunk.columns)}. "
                                f"Name the input column with --text-column.")
            inputs = chunk[column].tolist()
            inputs = ["" if v is None or (isinstance(v, float) and v != v) else v for v in inputs]  # NaN -> ""
            with state.split_between_processes(inputs) as mine:
                outputs = pipe(list(mine), batch_size=batch_size, **options) if mine else []
            if state.num_processes > 1:
                outputs = gather_object(outputs)  # rank order = row order (contiguous slices)
            if writer is not None:
                cols = _columns(task, inputs, outputs, set(chunk.columns))
                new_columns = list(cols)
                writer.write(chunk.assign(**cols))
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
