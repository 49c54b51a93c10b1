"""Data that does not fit: ``data.streaming=true`` trains from a :class:`datasets.IterableDataset`.

The source (local csv/jsonl/parquet files, a glob of shards, a folder of split files, or a hub dataset) is opened
with ``load_dataset(..., streaming=True)``: rows are read as training consumes them, never all at once.

* **Validation and test** are bounded and held in memory: ``data.max_eval_samples`` rows (default
  :data:`EVAL_ROWS`) of their own split, or, when the source has none, the first rows of the training stream,
  held out (the training stream skips them). The task's own :meth:`~nlpkit.task.Task.load_data` cleans them
  (and a first slice of training rows, from which it learns its labels), exactly as in-memory data.
* **Training** rows are shuffled through a buffer (``data.shuffle_buffer``) with the run's seed, split across
  processes and machines without overlap (:func:`datasets.distributed.split_dataset_by_node`), cleaned by
  :meth:`~nlpkit.task.Task.stream_rows` and tokenized by :meth:`~nlpkit.task.Task.encode` on the fly. The run
  lasts ``train.max_steps`` updates; a process whose part of the stream ends starts its next pass (epoch) on its
  own, with the shuffle re-seeded by the pass number.
* **Position**: :class:`TrainStream` is registered for checkpointing; a checkpoint records, for every process, the
  pass and the number of batches it consumed. A resumed run replays its pass and skips those batches, so it sees
  exactly the rows an uninterrupted run would (``IterableDataset.state_dict`` would be O(1), but it drops the
  shuffle buffer's contents: a resumed run would then train on other rows than an uninterrupted one).
"""

from __future__ import annotations

import copy
import glob
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict, load_dataset

from nlpkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from nlpkit.task import Data, Task

logger = logging.getLogger("nlpkit.streaming")

#: Validation and test rows held in memory when ``data.max_eval_samples`` is not set.
EVAL_ROWS = 1000
#: Training rows the task's ``load_data`` sees (to learn its labels and check its columns) before streaming.
SAMPLE_ROWS = 1000
_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
_GLOB = set("*?[")


def open_stream(cfg: Any) -> IterableDatasetDict:
    """The splits of ``cfg.data.source`` as iterable datasets (nothing is read yet)."""
    d = cfg.data
    source = str(d.source)
    if not source:
        raise ConfigError("data.streaming=true needs data.source: local files (a glob of shards such as "
                          "'data/train-*.parquet', or a folder of split files) or a hub dataset id.")
    if _GLOB & set(source) or Path(source).is_file():
        files = sorted(glob.glob(source)) if _GLOB & set(source) else [source]
        if not files:
            raise DataError(f"data.source={source}: no file matches this pattern.")
        kinds = {_BUILDERS.get(Path(f).suffix.lower()) for f in files}
        if None in kinds or len(kinds) > 1:
            raise DataError(f"data.source={source}: streaming reads .csv, .tsv, .json, .jsonl, .parquet or .txt "
                            f"files of one kind; this matches {sorted({Path(f).suffix for f in files})}.")
        builder = kinds.pop()
        extra = {"delimiter": "\t"} if all(f.lower().endswith(".tsv") for f in files) else {}
        return load_dataset(builder, data_files={d.train_split: files}, streaming=True, **extra)
    if Path(source).is_dir():
        return load_dataset(source, data_files=d.data_files, streaming=True)
    return load_dataset(source, d.config, revision=d.revision, data_files=d.data_files, streaming=True)


def _head(stream: IterableDataset, n: int) -> Dataset:
    rows = list(stream.take(n))
    if stream.features is not None:
        return Dataset.from_list(rows, features=stream.features)
    return Dataset.from_list(rows)


def _count(value: float, name: str) -> int:
    """A held-out size as a number of rows: a stream has no length to take a fraction of."""
    if value >= 1:
        return int(value)
    logger.info("data.streaming: %s=%s is a fraction, which a stream has no length to take; holding out %d rows "
                "(set %s to a number of rows)", name, value, EVAL_ROWS, name)
    return EVAL_ROWS


def load_streaming(task: Task) -> tuple[Data, IterableDataset]:
    """The task's bounded splits (validation, test and a first slice of train, cleaned by its ``load_data``) and
    the training stream of raw rows (validation/test rows held out of it when they come from it)."""
    d, tcfg = task.cfg.data, task.cfg.train
    if tcfg.max_steps <= 0:
        raise ConfigError("data.streaming=true trains for train.max_steps updates (a stream has no length to "
                          "count epochs in): set train.max_steps, e.g. train.max_steps=10000.")
    streams = open_stream(task.cfg)
    if d.train_split not in streams:
        raise DataError(f"data.source={d.source}: no {d.train_split!r} split to stream (it has "
                        f"{sorted(streams)}); set data.train_split.")
    train = streams[d.train_split]
    eval_rows = d.max_eval_samples or None
    held: dict[str, Dataset] = {}
    skip = 0
    for split, name, size in (("validation", d.validation_split, d.validation_size),
                              ("test", d.test_split, d.test_size)):
        if name in streams:
            held[split] = _head(streams[name], eval_rows or EVAL_ROWS)
        else:
            n = eval_rows or _count(size, f"data.{split}_size")
            held[split] = _head(train.skip(skip), n)
            skip += n
    if skip:
        train = train.skip(skip)
    held["train"] = _head(train, SAMPLE_ROWS)
    for split, rows in held.items():
        if len(rows) == 0:
            raise DataError(f"data.source={d.source}: the {split} split is empty.")
    # The task's own load_data cleans the bounded splits (labels, blank texts, columns) from a folder of them.
    with tempfile.TemporaryDirectory(prefix="nlpkit-stream-") as folder:
        for split, rows in held.items():
            rows.to_parquet(str(Path(folder) / f"{split}.parquet"))
        bounded = copy.deepcopy(task.cfg)
        bounded.data.source, bounded.data.data_files, bounded.data.config = folder, None, None
        bounded.data.train_split, bounded.data.validation_split, bounded.data.test_split = \
            "train", "validation", "test"
        bounded.data.max_train_samples = bounded.data.max_eval_samples = None
        own, task.cfg = task.cfg, bounded
        try:
            data = task.load_data()
            data.splits = DatasetDict({k: v.flatten_indices() for k, v in data.splits.items()})
        finally:
            task.cfg = own
    data.notes["streaming"] = {"source": str(d.source), "shuffle_buffer": d.shuffle_buffer,
                               "held_out_from_train": skip, "validation": len(data.splits["validation"]),
                               "test": len(data.splits["test"])}
    return data, train


def encoded_stream(task: Task, train: IterableDataset, data: Data, rank: int, world: int) -> IterableDataset:
    """This process's part of the training stream, shuffled, cleaned and tokenized on the fly."""
    d = task.cfg.data
    stream = train.shuffle(seed=task.cfg.seed, buffer_size=d.shuffle_buffer)
    stream = _split(stream, rank, world)
    # the raw columns, replaced by stream_rows' (a json source may not declare its features: read a first row)
    raw = list(train.features) if train.features is not None else list(next(iter(train.take(1)), {}))
    info = data.info
    stream = stream.map(lambda batch: task.stream_rows(batch, info), batched=True, remove_columns=raw)
    columns = list(data.splits["train"].column_names)
    return stream.map(lambda batch: _columns(task.encode(batch)), batched=True, remove_columns=columns)


def _columns(encoded: Any) -> dict[str, list]:
    """An ``encode`` result as the dict of lists an iterable dataset's map takes (encode may return Arrow)."""
    import pyarrow as pa

    return encoded.to_pydict() if isinstance(encoded, pa.Table) else encoded


def _split(stream: IterableDataset, rank: int, world: int) -> IterableDataset:
    if world <= 1:
        return stream
    from datasets.distributed import split_dataset_by_node

    return split_dataset_by_node(stream, rank=rank, world_size=world)


class TrainStream:
    """The training batches of one process from its part of the stream, endlessly (pass after pass), and where
    it is: ``(pass, batches consumed in it)``, saved for every process in each checkpoint."""

    def __init__(self, dataset: IterableDataset, batch_size: int, collate: Any, accelerator: Accelerator,
                 seed: int, num_workers: int = 0):
        self.dataset, self.batch_size, self.collate = dataset, batch_size, collate
        self.accelerator, self.seed, self.num_workers = accelerator, seed, num_workers
        #: (pass, batches of it consumed by training) on this process.
        self.position = [0, 0]

    def use_epoch(self, epoch: int) -> None:
        """Passes are counted per process by the stream itself (see :attr:`position`)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import torch
        from accelerate.utils import send_to_device
        from torch.utils.data import DataLoader

        while True:
            epoch, skip = self.position
            self.dataset.set_epoch(epoch)
            # Its own generator: a DataLoader iterator otherwise draws its seed from the global RNG, and a resumed
            # run (which starts its loader at another point) would get other dropout masks.
            loader = DataLoader(self.dataset, batch_size=self.batch_size, collate_fn=self.collate,
                                num_workers=self.num_workers,
                                generator=torch.Generator().manual_seed(self.seed + epoch))
            yielded = 0
            for i, batch in enumerate(loader):
                if i < skip:  # replaying the interrupted pass up to where the checkpoint was taken
                    continue
                self.position = [epoch, i + 1]
                yielded += 1
                yield send_to_device(batch, self.accelerator.device)
            if yielded == 0 and skip == 0:
                raise DataError("The training stream of this process yields no rows: the source has fewer rows "
                                "(or shards) than processes, or every row was skipped as empty.")
            self.position = [epoch + 1, 0]

    def state_dict(self) -> dict[str, Any]:
        """Every process's position (a collective: accelerate calls it on every process when saving)."""
        from accelerate.utils import gather_object

        positions = gather_object([list(self.position)]) if self.accelerator.num_processes > 1 else [self.position]
        return {"positions": [list(map(int, p)) for p in positions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        positions = state["positions"]
        acc = self.accelerator
        if len(positions) != acc.num_processes:
            raise ConfigError(f"The checkpoint's stream positions are for {len(positions)} process(es), this run has "
                              f"{acc.num_processes}: a streamed run resumes with the same number of processes "
                              f"(each has its own part of the stream).")
        self.position = list(positions[acc.process_index])


__all__ = ["EVAL_ROWS", "SAMPLE_ROWS", "TrainStream", "encoded_stream", "load_streaming", "open_stream"]
