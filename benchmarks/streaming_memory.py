"""Peak resident memory and training rows/s: data.streaming=true on many rows vs the in-memory path.

Writes synthetic planted-word sentiment rows as parquet shards (in chunks: the writer's memory stays flat), a tiny
BERT (2 layers, width 32, WordPiece tokenizer trained on the vocabulary), then trains the sentiment task twice in
child processes: streamed from the shards (``--rows``, default 10M, for ``--steps`` updates) and in memory on
``--memory-rows`` rows (default 1M, one epoch or ``--steps`` updates, whichever is fewer). Peak resident memory is
the larger of the kernel's peak RSS of the child (``ru_maxrss``) and the largest sum of the resident memory of
the child and all its descendants sampled every 0.5 s (psutil), also given for each fifth of the run (flat
memory: the fifths stay alike); rows/s is the run report's training samples over its training seconds.

    python benchmarks/streaming_memory.py                          # 10M streamed vs 1M in memory
    python benchmarks/streaming_memory.py --rows 2000000 --steps 500
    python benchmarks/streaming_memory.py --smoke                  # 2,000 rows each, a few updates (the test)

The last line printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = ["great", "wonderful", "brilliant", "moving", "superb", "delightful", "charming", "fresh"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "tedious", "clumsy", "bland", "stale"]
FILLER = ["the", "film", "movie", "story", "acting", "plot", "was", "is", "a", "really", "quite", "and", "this",
          "its", "cast", "script", "very", "ending", "director", "at", "times"]


def write_shards(folder: Path, rows: int, per_shard: int = 250_000, seed: int = 0) -> str:
    """``rows`` synthetic rows as parquet shards of ``per_shard`` rows; returns their glob."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    glob, done_marker = str(folder / "train-*.parquet"), folder / "COMPLETE"
    if done_marker.is_file() and done_marker.read_text() == f"{rows} {per_shard} {seed}":
        return glob  # written by an earlier run with the same arguments
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    filler, planted = np.array(FILLER, dtype=object), np.array([NEGATIVE, POSITIVE], dtype=object)
    done, shard = 0, 0
    while done < rows:
        n = min(per_shard, rows - done)
        positive = (np.arange(done, done + n) % 2 == 0).astype(int)
        lengths = rng.integers(2, 13, n)  # filler words per row, 2 to 12
        words = filler[rng.integers(0, len(FILLER), (n, 12))]
        where = rng.integers(0, lengths + 1)  # the planted word goes before filler word `where`
        cue = planted[positive, rng.integers(0, len(POSITIVE), n)]
        texts = [" ".join([*w[:k], c, *w[k:m]]) for w, k, c, m in zip(words, where, cue, lengths)]
        labels = np.where(positive == 1, "positive", "negative")
        pq.write_table(pa.table({"text": texts, "label": labels}), folder / f"train-{shard:05d}.parquet")
        done, shard = done + n, shard + 1
    done_marker.write_text(f"{rows} {per_shard} {seed}")
    return glob


def tiny_model(folder: Path) -> Path:
    """A 2-layer, width-32 BERT with a WordPiece tokenizer trained on the benchmark's words."""
    from nlpkit.testing import tiny_bert

    if (folder / "config.json").is_file():
        return folder
    return tiny_bert(folder, [" ".join(POSITIVE + NEGATIVE + FILLER)] * 10)


def sample_rss(proc: subprocess.Popen, every: float = 0.5) -> tuple[list[tuple[float, float]], float]:
    """Waits for ``proc``: (seconds, MiB) of the resident memory of ``proc`` and all its descendants together,
    every ``every`` s (psutil), and the kernel's peak RSS of the largest single one of them (``wait4``'s
    ``ru_maxrss``, MiB), which catches a spike between two samples."""
    import psutil

    root, started, samples = psutil.Process(proc.pid), time.perf_counter(), []
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return samples, round(usage.ru_maxrss / 1024, 1)  # KiB on Linux
        total = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:  # exiting: wait4 reaps it next time
            tree = []
        for p in tree:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        samples.append((round(time.perf_counter() - started, 1), round(total / 2**20, 1)))
        time.sleep(every)


def train(model: Path, source: str, out: Path, steps: int, streaming: bool, batch: int, held: int) -> dict:
    """One training run in a child process; its peak RSS and the report's throughput."""
    args = [f"model={model}", f"data.source={source}", f"output_dir={out}", "trackers=[]", f"train.max_steps={steps}",
            f"train.batch_size={batch}", "train.eval_batch_size=256", "train.lr=3e-3", "train.eval_every=0",
            f"data.max_eval_samples={held}", f"data.validation_size={held}", f"data.test_size={held}",
            f"data.streaming={str(streaming).lower()}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(out.parent / "datasets-cache")}
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own run folder, from an earlier run
    started = time.perf_counter()
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, str(ROOT / "tasks" / "sentiment.py"), *args], env=env,
                                stdout=sink, stderr=subprocess.STDOUT)
        samples, kernel_peak = sample_rss(proc)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"training failed ({'streamed' if streaming else 'in memory'}), see {log}:\n"
                 f"{log.read_text()[-3000:]}")
    peak = max([kernel_peak, *(mib for _, mib in samples)])
    # flatness: the peak within each fifth of the run
    fifths = [max((m for t, m in samples if k * wall / 5 <= t < (k + 1) * wall / 5), default=0.0) for k in range(5)]
    report = json.loads((out / "report.json").read_text())
    t = report["training"]
    return {"peak_rss_mb": peak, "kernel_peak_rss_mb": kernel_peak, "peak_rss_mb_by_fifth": fifths,
            "rss_samples": samples, "samples": t["samples"], "updates": t["updates"],
            "train_seconds": t["runtime_s"], "rows_per_s": t["samples_per_s"], "wall_s": round(wall, 1),
            "test_accuracy": report["test"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows streamed")
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="rows of the in-memory run")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer updates of each run")
    parser.add_argument("--batch", type=int, default=64, help="train.batch_size")
    parser.add_argument("--work", type=Path, default=None, help="folder for shards, model and runs (default: a temp)")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows each, 10 updates")
    parser.add_argument("--json", type=Path, help="also write the results, with every RSS sample, to this file")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the in-memory run")
    args = parser.parse_args()
    if args.smoke:
        args.rows = args.memory_rows = 2000
        args.steps, args.batch = 10, 16
    work = args.work or Path(tempfile.mkdtemp(prefix="nlpkit-streaming-bench-"))
    model = tiny_model(work / "model")
    streamed_src = write_shards(work / f"shards-{args.rows}", args.rows)
    # the in-memory path reads a folder (its train-*.parquet files are the train split), not a glob
    memory_src = str(Path(write_shards(work / f"shards-{args.memory_rows}", args.memory_rows)).parent)
    held = max(10, min(1000, args.memory_rows // 10))  # validation and test rows each
    results = {"cpu": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    results["streamed"] = train(model, streamed_src, work / "run-streamed", args.steps, True, args.batch, held)
    results["streamed"]["rows"] = args.rows
    if not args.skip_memory:
        memory_steps = min(args.steps, max(1, (args.memory_rows - 2 * held) // args.batch))
        results["in_memory"] = train(model, memory_src, work / "run-in-memory", memory_steps, False, args.batch, held)
        results["in_memory"]["rows"] = args.memory_rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    for name in ("streamed", "in_memory"):
        if name in results:
            r = results[name]
            print(f"{name:9s} {r['rows']:>10,d} rows: {r['samples']:,d} trained in {r['train_seconds']:.1f} s, "
                  f"{r['rows_per_s']:.0f} rows/s, wall {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mb']:.0f} MiB "
                  f"(by fifth: {', '.join(f'{m:.0f}' for m in r['peak_rss_mb_by_fifth'])})", flush=True)
            r.pop("rss_samples")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
