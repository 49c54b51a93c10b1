"""``nlpkit predict RUN --input GLOB --output DIR --engine ray``: batch prediction on Ray Data.

The input files (csv / tsv / jsonl / parquet; a glob, a folder or one file, on any fsspec filesystem: local,
``s3://``, ``gs://``, ...) are read with ``ray.data.read_csv`` / ``read_json`` / ``read_parquet``; the rows go
through ``map_batches`` to a pool of actors, each of which opens the model once (``nlpkit.pipeline``: a run, a
model folder or an ``nlpkit export``, through the one loader) and predicts every batch with the same per-chunk
path as the single-process ``nlpkit predict`` (:func:`nlpkit.predict_file.chunk_inputs`, the task's batched
``predict``, :func:`nlpkit.predict_file.with_predictions`); the result is written as parquet shards into DIR,
every input column kept, the prediction columns added. Ray Data is asked to keep the input's order
(``preserve_order``), but the order is not guaranteed: on a million rows a few chunks came out of place, so join
on an id column of the input rather than on row positions.

Every input row is written exactly once, also when an actor dies mid-run: a batch whose actor died is not
returned, so Ray runs it again on the restarted actor (Ray Data's defaults for an actor pool, relied on here:
``max_restarts=-1``, ``max_task_retries=-1``; an error raised by nlpkit's code is not retried, it fails the run),
and a write task run again writes the same file name. The actors are placed with Ray Data's default ``SPREAD``
strategy, so they land on every node. DIR is written as a temporary folder beside it and renamed when every
shard is in (:func:`nlpkit.artifacts.atomic_dir`): a failed run leaves no half-written DIR. On a cluster of
several machines DIR must be storage every node sees (NFS, ...), as must the input (or give an fsspec URL).

Ray is imported only here, and only when this engine is used (``pip install "nlpkit-hf[ray]"``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nlpkit.artifacts import atomic_dir
from nlpkit.errors import ConfigError, DataError, NlpkitError, UsageError
from nlpkit.predict_file import FORMATS, chunk_inputs, with_predictions
from nlpkit.report import DISTRIBUTION

__all__ = ["INSTALL_HINT", "connect", "input_files", "predict_ray", "require_ray"]

logger = logging.getLogger("nlpkit.ray_predict")

#: How to install the extra (by nlpkit's name on the package index).
INSTALL_HINT = f'pip install "{DISTRIBUTION}[ray]"'

def require_ray(what: str = "--engine ray") -> None:
    """Raise a :class:`ConfigError` saying how to install the extra when Ray (with Ray Data) is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"{what} needs Ray ({err.name or 'ray'} is not installed): {INSTALL_HINT}") from None


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT`` of its head, or ``auto``: the one this machine is part
    of); without one, ``RAY_ADDRESS`` or else a Ray instance started on this machine for the run. Nothing is done
    when this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except ConnectionError as err:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({err}). Start one with "
                         f"`ray start --head`, or leave --address out to run on this machine.") from err


def input_files(pattern: str) -> tuple[list[str], Any, str]:
    """``(paths, filesystem, format)`` of ``pattern``: a glob, a folder (its files of a known type) or a file,
    as a local path or any fsspec URL. One format for all of them; none found is a :class:`DataError`."""
    import fsspec
    import pyarrow.fs as pafs

    fs, root = fsspec.core.url_to_fs(pattern)
    if fs.isdir(root):
        paths = sorted(p for p in fs.find(root) if Path(p).suffix.lower() in FORMATS)
    else:
        paths = sorted(fs.glob(root)) if fsspec.core.has_magic(root) else ([root] if fs.exists(root) else [])
    paths = [p for p in paths if not fs.isdir(p)]
    if not paths:
        raise DataError(f"--input {pattern}: no file matches it (csv/tsv/jsonl/parquet files, a glob such as "
                        f"'data/*.parquet', or a folder of them).")
    kinds = {Path(p).suffix.lower() for p in paths}
    unknown = sorted(k for k in kinds if k not in FORMATS)
    if unknown:
        raise UsageError(f"--input {pattern}: unsupported type {unknown[0]!r} ({paths[0]}); use "
                         f"{', '.join(FORMATS)} files.")
    if len({FORMATS[k] for k in kinds}) > 1:
        raise UsageError(f"--input {pattern} matches files of several types ({', '.join(sorted(kinds))}): "
                         f"give one type at a time.")
    local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    filesystem = None if local else pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    return paths, filesystem, FORMATS[kinds.pop()]


def _read(paths: list[str], filesystem: Any, fmt: str) -> Any:
    """The rows of ``paths`` as a Ray Dataset, csv/tsv columns as text (as the single-process path reads them)."""
    import pyarrow.csv as pacsv
    import ray.data

    if fmt == "parquet":
        return ray.data.read_parquet(paths, filesystem=filesystem, file_extensions=None)
    if fmt == "jsonl":
        return ray.data.read_json(paths, filesystem=filesystem, lines=True, file_extensions=None)
    header = _input_columns(paths, filesystem, fmt)
    if not header:
        raise DataError(f"Input file {paths[0]} has no header line: the first line must name the columns.")
    import pyarrow as pa

    # every column as text, empty cells as "" (pandas' dtype=str, keep_default_na=False in nlpkit predict)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False,
                                   quoted_strings_can_be_null=False)
    parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)
    return ray.data.read_csv(paths, filesystem=filesystem, parse_options=parse, convert_options=convert,
                             file_extensions=None)


class _Predictor:
    """One Ray actor: opens the model once, then predicts batch after batch (a pandas DataFrame each)."""

    def __init__(self, model: str, task: str | None, text_column: str | None, batch_size: int, threads: int,
                 options: dict[str, Any]):
        import torch

        from nlpkit.pipeline import pipeline

        torch.set_num_threads(threads)
        self.pipe = pipeline(model, device="cpu", threads=threads) if task is None else \
            pipeline(task, model=model, device="cpu", threads=threads)
        self.column = text_column or self.pipe.task.prediction_input_column()
        self.batch_size, self.options = batch_size, options

    def __call__(self, batch: Any) -> Any:
        inputs = chunk_inputs(batch, self.column, "--input")
        outputs = self.pipe(inputs, batch_size=self.batch_size, **self.options) if inputs else []
        return with_predictions(self.pipe.task, batch, inputs, outputs)


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise UsageError(f"--output {output} already exists; pass --overwrite to replace it, or choose another "
                         f"folder.")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; with --engine ray the output is a folder of parquet "
                         f"shards: give a folder path.")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: the folder {output.parent} does not exist; create it first or choose "
                         f"another path.")


def predict_ray(model: str, input: str, output: str | Path, *, task: str | None = None, address: str | None = None,
                actors: int | None = None, text_column: str | None = None, batch_size: int = 64,
                chunk_rows: int = 2048, threads: int = 1, overwrite: bool = False,
                **options: Any) -> dict[str, Any]:
    """Predict every row of the files ``input`` names into parquet shards in the folder ``output`` on Ray.

    ``actors`` model copies (default: the cluster's CPUs // ``threads``), each with ``threads`` torch / ONNX
    Runtime threads, spread over the cluster's nodes; ``chunk_rows`` rows per Ray batch, ``batch_size`` inputs
    per model call; ``options`` go to the task's ``predict`` (``top_k``, ...). ``output`` must be a local (or
    shared) folder path; an existing one is replaced only with ``overwrite``. Returns ``{"rows", "output",
    "columns", "files"}``.
    """
    require_ray()
    output = Path(output)
    _check_output(output, overwrite)
    for name, value in (("--actors", actors), ("--batch-size", batch_size), ("--chunk-rows", chunk_rows),
                        ("--threads", threads)):
        if value is not None and value < 1:
            raise UsageError(f"{name} {value}: must be at least 1.")
    paths, filesystem, fmt = input_files(input)
    import pyarrow.parquet as pq
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    connect(address)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # mostly in input order; not guaranteed (see the module's notes)
    ctx.enable_progress_bars = False
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    logger.info("Predicting %d %s file(s) with %d actor(s) on Ray", len(paths), fmt, actors)
    ds = _read(paths, filesystem, fmt).map_batches(
        _Predictor, batch_format="pandas", batch_size=chunk_rows, compute=ActorPoolStrategy(size=actors),
        num_cpus=threads, fn_constructor_kwargs={"model": str(model), "task": task, "text_column": text_column,
                                                 "batch_size": batch_size, "threads": threads, "options": options})
    try:
        with atomic_dir(output) as tmp:
            ds.write_parquet(str(tmp))
            files = sorted(tmp.glob("*.parquet"))
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            columns = pq.read_schema(files[0]).names if files else []
    except Exception as err:  # Ray wraps what an actor raised (RayTaskError, ActorDiedError, ...)
        cause = _user_error(err)
        if cause is not None:
            raise cause from None
        raise
    given = set(_input_columns(paths, filesystem, fmt))
    added = [c for c in columns if c not in given]
    logger.info("Wrote %d rows to %s (%d shards; prediction columns: %s)", rows, output, len(files), ", ".join(added))
    return {"rows": rows, "output": str(output), "columns": added, "files": len(files)}


def _input_columns(paths: list[str], filesystem: Any, fmt: str) -> list[str]:
    """The first input file's column names (to tell the prediction columns apart in the summary)."""
    import csv
    import json

    import fsspec
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return list(pq.read_schema(paths[0], filesystem=filesystem).names)
    fs = filesystem.handler.fs if filesystem is not None else None
    with fsspec.open(paths[0], "rt", encoding="utf-8", newline="", **({"fs": fs} if fs else {})) as fh:
        if fmt == "jsonl":
            line = next((x for x in fh if x.strip()), "{}")
            try:
                first = json.loads(line)
            except ValueError as err:
                raise DataError(f"Input file {paths[0]}: its first line is not JSON ({err}).") from err
            return list(first) if isinstance(first, dict) else []
        return next(csv.reader(fh, delimiter="\t" if fmt == "tsv" else ","), [])


def _user_error(err: BaseException) -> NlpkitError | None:
    """The :class:`NlpkitError` an actor raised (a missing column, a model that cannot be opened), out of Ray's
    wrapping, so it is shown as the one line it is. Ray hands the driver its own exception types with the
    actor's traceback as text (a pickled exception loses its ``__cause__``): the last ``nlpkit.errors.<Class>:
    message`` line of that text is the error."""
    import re

    from nlpkit import errors

    seen = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, NlpkitError):
            return node
        cause = getattr(node, "cause", None)
        node = cause if isinstance(cause, BaseException) else (node.__cause__ or node.__context__)
    found = re.findall(r"nlpkit\.errors\.(\w+): (.+)", str(err))
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, NlpkitError):
            return cls(message.strip())
    return None
