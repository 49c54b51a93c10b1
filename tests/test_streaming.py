"""data.streaming=true: training from an iterable dataset of jsonl shards with a tiny BERT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import sentiment_overrides, sentiment_rows
from safetensors.torch import load_file

import nlpkit
from nlpkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 training rows in 4 jsonl shards, plus validation and test files."""
    out = tmp_path_factory.mktemp("shards")
    rows = sentiment_rows(400, seed=1)
    for k in range(4):
        _write_jsonl(out / f"train-{k:02d}.jsonl", rows[k * 100:(k + 1) * 100])
    _write_jsonl(out / "validation-00.jsonl", sentiment_rows(40, seed=2))
    _write_jsonl(out / "test-00.jsonl", sentiment_rows(50, seed=3))
    return out


def _config(tiny_bert: Path, source: Path | str, out: Path, **extra: object) -> dict:
    return sentiment_overrides(tiny_bert, Path(source), out, **{
        "data.streaming": True, "data.shuffle_buffer": 64, "train.max_steps": 60, "train.eval_every": 30,
        "train.save_every": 10, "train.lr": 3e-3, **extra})


def _task(tiny_bert: Path, source: Path | str, **extra: object):
    from nlpkit.config import load_config
    from nlpkit.registry import get_task

    cls = get_task("sentiment")
    cfg = load_config(cls.Config, None, _config(tiny_bert, source, Path("unused"), **extra))
    return cls(cfg, run_dir=None)


def test_streaming_needs_max_steps(tiny_bert: Path, shards: Path) -> None:
    from nlpkit.streaming import load_streaming

    with pytest.raises(ConfigError, match="train.max_steps"):
        load_streaming(_task(tiny_bert, shards, **{"train.max_steps": -1}))


def test_processes_get_disjoint_parts_of_the_stream(tiny_bert: Path, shards: Path) -> None:
    """Two processes' parts of the stream: no row in both, none lost (split_dataset_by_node)."""
    from nlpkit.streaming import encoded_stream, load_streaming

    task = _task(tiny_bert, shards)
    data, train = load_streaming(task)
    task.load_model(data.info)
    assert data.info.labels == ["negative", "positive"]
    assert len(data.splits["validation"]) == 40 and len(data.splits["test"]) == 50

    def rows(rank: int, world: int) -> list[tuple]:
        return [(tuple(r["input_ids"]), r["labels"]) for r in encoded_stream(task, train, data, rank, world)]

    whole, first, second = rows(0, 1), rows(0, 2), rows(1, 2)
    assert len(whole) == 400
    assert sorted(first + second) == sorted(whole)
    assert len(first) == len(second) == 200  # 4 shards over 2 processes: 2 whole shards each
    assert rows(0, 1) == whole, "the same seed gives the same stream"


def test_validation_and_test_held_out_from_the_stream(tiny_bert: Path, tmp_path: Path) -> None:
    """A glob of train shards only: the first rows are held out for validation and test, the stream skips them."""
    from nlpkit.streaming import load_streaming

    rows = sentiment_rows(300, seed=4)
    for k in range(3):
        _write_jsonl(tmp_path / f"part-{k}.jsonl", rows[k * 100:(k + 1) * 100])
    task = _task(tiny_bert, str(tmp_path / "part-*.jsonl"), **{"data.max_eval_samples": 30})
    data, train = load_streaming(task)
    assert len(data.splits["validation"]) == len(data.splits["test"]) == 30
    assert data.notes["streaming"]["held_out_from_train"] == 60
    streamed = [r["text"] for r in train]
    assert streamed == [t for t, _ in rows[60:]]


def _run(tiny_bert: Path, shards: Path, out: Path, **extra: object) -> subprocess.Popen:
    overrides = _config(tiny_bert, shards, out, **extra)
    args = [f"{k}={'[]' if v == [] else v}" for k, v in overrides.items()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "tasks" / "sentiment.py"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_streamed_run_learns(tiny_bert: Path, shards: Path, tmp_path: Path) -> None:
    """Trained from the stream (4.8 passes over 400 rows), the tiny model finds the planted words. (A stream's
    batches are not grouped by length: this from-scratch model needs more updates than in memory, where 40
    length-grouped updates reach 1.0 and 40 ungrouped ones 0.76.)"""
    report = nlpkit.train("sentiment", **_config(tiny_bert, shards, tmp_path / "run", **{
        "train.lr": 3e-3, "train.batch_size": 16, "train.max_steps": 120, "train.eval_every": 120}))
    assert report["training"]["samples"] == 120 * 16
    assert report["test"]["accuracy"] >= 0.8, "the tiny model learns the planted words from the stream"


def test_streamed_run_resumes_after_kill_with_the_same_weights(tiny_bert: Path, shards: Path,
                                                               tmp_path: Path) -> None:
    """kill -9 mid-run, then resume=auto: the stream continues where the checkpoint says, and the run ends with
    the weights of an uninterrupted one."""
    # every run on one torch thread, as the killed subprocess is (OMP_NUM_THREADS=1): then the weights must be
    # bit-identical, not merely close (two threads sum in another order)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = nlpkit.train("sentiment", **_config(tiny_bert, shards, tmp_path / "full"))
        killed_then_resumed = _killed_and_resumed(tiny_bert, shards, tmp_path / "killed")
    finally:
        torch.set_num_threads(threads)
    out, resumed = killed_then_resumed
    assert full["training"]["samples"] == 60 * 8
    assert resumed["training"]["updates"] == 60
    a, b = (load_file(str(p / "model" / "model.safetensors")) for p in (tmp_path / "full", out))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0, "the resumed stream gives the same weights"
    assert resumed["test"]["accuracy"] == full["test"]["accuracy"]
    assert resumed["test"]["loss"] == full["test"]["loss"]


def _killed_and_resumed(tiny_bert: Path, shards: Path, out: Path) -> tuple[Path, dict]:
    """A run killed (SIGKILL) after its first checkpoint, then resumed with resume=auto: its folder and report."""
    proc = _run(tiny_bert, shards, out)
    deadline = time.monotonic() + 600
    while not list(out.glob("checkpoint-*/trainer_state.json")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "model").exists(), "killed before the end"
    saved = sorted(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json"))
    assert saved and saved[-1] < 60
    return out, nlpkit.train("sentiment", **_config(tiny_bert, shards, out, resume="auto"))


def test_a_task_without_stream_rows_is_refused(tiny_bert: Path, shards: Path) -> None:
    from nlpkit.task import DataInfo, Task

    with pytest.raises(ConfigError, match="cannot stream"):
        Task.stream_rows(_task(tiny_bert, shards), {"text": ["a"]}, DataInfo())


def test_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/streaming_memory.py --smoke: a streamed and an in-memory run of 2,000 synthetic rows."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "streaming_memory.py"), "--smoke",
                           "--work", str(tmp_path)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["streamed"]["rows"] == 2000 and result["in_memory"]["rows"] == 2000
    for run in ("streamed", "in_memory"):
        assert result[run]["peak_rss_mb"] > 0 and result[run]["samples"] > 0
