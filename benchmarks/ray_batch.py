"""Batch prediction on Ray Data vs single-process ``nlpkit predict``, on a local two-node Ray cluster (loopback).

    python benchmarks/ray_batch.py --run RUN --rows 1000000 [--shards 8] [--actors 2] [--json out.json]
    python benchmarks/ray_batch.py --tiny-trained DIR --rows 1000000   # a tiny BERT trained here (see below)
    python benchmarks/ray_batch.py --smoke          # a tiny untrained classifier, 20,000 rows: the script works

Input: ``--rows`` short texts (rotten_tomatoes sentences, cycled; synthetic with ``--smoke``) with a unique id,
as one parquet file for ``nlpkit predict`` and as ``--shards`` parquet files for Ray. Three runs:

* ``single``: ``nlpkit predict RUN --input all.parquet --output single.parquet`` (one process, torch's threads);
* ``ray``: ``nlpkit predict RUN --input 'shards/*.parquet' --output DIR --engine ray --actors N`` on a head node
  and a second node started with ``ray start`` inside a network namespace with only loopback (as the tests do:
  tests/ray_cluster.py), 1 thread per actor;
* ``ray-kill``: the same with one actor killed (SIGKILL) once the first shards are written.

For each: wall time, rows/s, rows out, ids seen once, and the labels (and scores, to 1e-4) equal to ``single``'s
row by row. On a machine with few cores a gain is not expected: the nodes share the same cores.

``--tiny-trained DIR`` predicts with a small model trained first (reused when DIR holds it): a 2-layer, width-64
BERT with a WordPiece tokenizer (4,000 tokens) learned from rotten_tomatoes' training texts, trained for 2
epochs on rotten_tomatoes by the sentiment task. Its answers depend on the text (unlike an untrained model's),
and a million rows take minutes on a CPU instead of the default model's hour.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def texts(rows: int, smoke: bool) -> list[str]:
    if smoke:
        import random

        rng = random.Random(0)
        words = "the a film movie was is great dull moving boring plot acting and very".split()
        pool = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(5000)]
    else:
        from nlpkit.data import load_source

        ds, _ = load_source("rotten_tomatoes")
        pool = [t for split in ds.values() for t in split["text"]]
    return [pool[i % len(pool)] for i in range(rows)]


def tiny_trained(folder: Path) -> Path:
    """The run folder of a tiny BERT trained on rotten_tomatoes (made once under ``folder``)."""
    run = folder / "run"
    if (run / "report.json").is_file():
        return run
    import nlpkit
    from nlpkit.data import load_source
    from nlpkit.testing import tiny_bert

    ds, _ = load_source("rotten_tomatoes")
    base = tiny_bert(folder / "base", ds["train"]["text"], vocab_size=4000, hidden_size=64, intermediate_size=128)
    nlpkit.train("sentiment", **{"model": str(base), "data.source": "rotten_tomatoes", "output_dir": str(run),
                                 "trackers": [], "train.epochs": 2.0, "train.batch_size": 32, "train.lr": 1e-3,
                                 "train.warmup_ratio": 0.0})
    return run


def write_inputs(workdir: Path, rows: int, shards: int, smoke: bool) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [f"r{i:07d}" for i in range(rows)], "text": texts(rows, smoke)})
    whole = workdir / "all.parquet"
    pq.write_table(table, whole)
    folder = workdir / "shards"
    folder.mkdir()
    step = -(-rows // shards)
    for k in range(shards):
        pq.write_table(table.slice(k * step, step), folder / f"part-{k:03d}.parquet")
    return whole, folder


def compare(got_files: list[Path], expected: Path) -> dict:
    import pandas as pd

    want = pd.read_parquet(expected)
    got = pd.concat([pd.read_parquet(f) for f in got_files], ignore_index=True)
    merged = want.merge(got, on="id", suffixes=("", "_ray"), how="left")
    same_label = (merged["label"] == merged["label_ray"]).sum()
    return {"rows_out": len(got), "ids_once": bool(got["id"].is_unique), "rows_in": len(want),
            "same_order": bool((got["id"].to_numpy() == want["id"].to_numpy()).all()) if len(got) == len(want)
            else False, "labels_equal": int(same_label),
            "max_score_diff": float((merged["score"] - merged["score_ray"]).abs().max())}


def single_run(args: argparse.Namespace, whole: Path, workdir: Path, options: list[str]) -> dict:
    """Single-process ``nlpkit predict`` of the whole input: its time."""
    start = time.perf_counter()
    single = subprocess.run([sys.executable, "-m", "nlpkit.cli", "predict", args.run, "--input", str(whole),
                             "--output", str(workdir / "single.parquet"), *options], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if single.returncode != 0:
        raise SystemExit(f"nlpkit predict failed: {single.stderr[-3000:]}")
    return {"seconds": seconds, "rows_per_s": args.rows / seconds, "rows_out": args.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A sentiment run folder or export (required unless --smoke).")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-kill", action="store_true", help="Leave out the run with a killed actor.")
    parser.add_argument("--kill-after", type=float, default=None,
                        help="Kill the actor this many seconds after every actor is up (default: once the first "
                             "output shards are written; Ray Data may write them only at the end).")
    parser.add_argument("--only-kill", type=Path, default=None, metavar="DIR",
                        help="Only the run with a killed actor, on the inputs and single-process answers of an "
                             "earlier run of this script (its folder DIR).")
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    parser.add_argument("--smoke", action="store_true", help="A tiny untrained classifier on 20,000 rows.")
    parser.add_argument("--tiny-trained", type=Path, help="Train a tiny BERT on rotten_tomatoes into this folder "
                        "(or reuse it) and predict with it.")
    parser.add_argument("--work", type=Path, help="Folder for the inputs and outputs (default: a new temp folder).")
    args = parser.parse_args()
    from ray_cluster import netns_available, result, run_on_cluster

    reason = netns_available()
    if reason:
        raise SystemExit(f"cannot run a loopback-only Ray cluster here: {reason}")
    workdir = args.only_kill or Path(tempfile.mkdtemp(prefix="ray-batch-", dir=args.work))
    if args.tiny_trained:
        args.run = str(tiny_trained(args.tiny_trained))
    if args.smoke:
        from serve_load import tiny_classifier

        args.run, args.rows = str(tiny_classifier(workdir / "tiny")), min(args.rows, 20_000)
    elif not args.run:
        parser.error("--run is required (or --smoke)")
    task = ["--task", "sentiment"] if args.smoke else []
    options = ["--batch-size", str(args.batch_size), "--chunk-rows", str(args.chunk_rows), *task]
    results: dict[str, dict] = {}
    runs: tuple[tuple[str, bool], ...] = (("ray", False), ("ray-kill", True))[: 1 if args.skip_kill else 2]
    if args.only_kill:
        runs = (("ray-kill", True),)
        whole, folder = workdir / "all.parquet", workdir / "shards"
        import pyarrow.parquet as pq

        args.rows = pq.ParquetFile(whole).metadata.num_rows
    else:
        whole, folder = write_inputs(workdir, args.rows, args.shards, args.smoke)
        results["single"] = single_run(args, whole, workdir, options)
        print(f"single: {results['single']['seconds']:.1f} s", flush=True)

    for name, kill in runs:
        shutil.rmtree(workdir / name, ignore_errors=True)
        job = {"run": args.run, "input": str(folder / "*.parquet"), "output": str(workdir / name),
               "actors": args.actors, "chunk_rows": args.chunk_rows, "kill": kill, "timeout_s": 6000,
               "kill_after_s": args.kill_after, "extra": ["--batch-size", str(args.batch_size), *task]}
        (workdir / f"{name}.json").write_text(json.dumps(job))
        found = result(run_on_cluster(ROOT / "tests" / "scripts" / "ray_batch.py", str(workdir / f"{name}.json"),
                                      workdir=workdir, timeout=7200))
        if found["returncode"] != 0:
            raise SystemExit(f"{name} failed: {found['stderr'][-3000:]}")
        found.update(compare(sorted((workdir / name).glob("*.parquet")), workdir / "single.parquet"))
        found["rows_per_s"] = args.rows / found["seconds"]
        found["nodes"] = sorted(set(found["actors_seen"].values()))
        for key in ("stdout", "stderr", "listeners"):
            found.pop(key)
        results[name] = found
        print(f"{name}: {found['seconds']:.1f} s", flush=True)

    print(f"\n{args.rows:,} rows, {args.shards} shards, {args.actors} actors x 1 thread on 2 nodes (one machine)"
          f"{' (smoke: tiny untrained model)' if args.smoke else ''}\n")
    print(f"{'run':9s} {'seconds':>8s} {'rows/s':>8s} {'rows out':>9s} {'ids once':>8s} {'= single':>9s} "
          f"{'max |dscore|':>12s}  killed")
    for name, r in results.items():
        same = f"{r['labels_equal']:,}" if "labels_equal" in r else "-"
        diff = f"{r['max_score_diff']:.1e}" if "max_score_diff" in r else "-"
        killed = f"1 actor at {r['killed']['at_s']:.0f} s ({r['killed']['node']})" if r.get("killed") else ""
        print(f"{name:9s} {r['seconds']:8.1f} {r['rows_per_s']:8.0f} {r['rows_out']:9,d} "
              f"{str(r.get('ids_once', True)):>8s} {same:>9s} {diff:>12s}  {killed}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
