"""Data preparation at scale: 100k and 1M sentiment rows through the real task code, cold and from cache.

    python benchmarks/data_scale.py                          # 100k and 1M rows, one process
    python benchmarks/data_scale.py --sizes 20000 --num-proc 2
    python benchmarks/data_scale.py --sizes 200 --model <tiny model folder> --data rows.csv   # a quick check

Builds csv files of N rows from the catalog's rotten_tomatoes texts (repeated, shuffled), then for each size
runs the preparation a training run does, in a fresh child process: ``SentimentTask.load_data`` (read the csv,
check columns, stratified split, drop empty texts, label ids) -> ``load_model`` -> ``encode_splits``
(tokenize, ``data.num_proc`` processes) -> ``lengths`` of every split. The first run starts from an empty
datasets cache; the second, identical one should read the tokenized splits back from it.

The peer, in the same run and on the same file: the recipe a user writes with datasets and transformers alone,
``load_dataset("csv")`` then ``map(lambda b: tokenizer(b["text"], truncation=True, max_length=128),
batched=True)`` (no split, no label handling, no cleaning: less work than nlpkit's preparation). Its time and the
ratio are printed next to nlpkit's; the two run in alternating order from one size to the next.

Prints seconds per stage (wall, and the CPU seconds of the child and its workers: the machine may be shared),
peak memory (the largest ``ru_maxrss`` of the child and the tokenizing workers it waited for, from
``os.wait4``; and the peak of the summed PSS of all its processes, sampled every 0.1 s: shared pages counted
once), the growth factor from the smaller size to the larger one, and the targets: 1M rows in <= 40 s and
<= 2 GB, <= 10 s from cache, linear growth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STAGES = ("load_data", "load_model", "encode", "lengths")


def build_csv(path: Path, rows: int, seed: int = 0, source: str = "rotten_tomatoes") -> None:
    """``rows`` rows of ``source``'s texts and labels (a catalog name, or a csv or parquet file with ``text`` and
    ``label`` columns), repeated and shuffled (written with pyarrow)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from nlpkit import assets

    if Path(source).is_file():
        table = pacsv.read_csv(source) if source.endswith(".csv") else pq.read_table(source)
        table = table.select(["text", "label"])
    else:
        table = pq.read_table(assets.fetch(source) / "data.parquet", columns=["text", "label"])
    take = np.random.default_rng(seed).integers(0, table.num_rows, size=rows)
    pacsv.write_csv(table.take(pa.array(take)), path)


def child(args: argparse.Namespace) -> None:
    """One preparation, timed stage by stage; prints a JSON line."""
    start = time.perf_counter()
    import datasets
    from accelerate import Accelerator

    import nlpkit
    from nlpkit.config import load_config
    from nlpkit.training import encode_splits

    datasets.disable_progress_bars()
    cls = nlpkit.get_task("sentiment")
    task = cls(load_config(cls.Config, None, {"data.source": args.child, "model": args.model,
                                              "data.num_proc": args.num_proc, "output_dir": args.workdir}))
    times, cpu = {"imports": time.perf_counter() - start}, {"imports": _cpu_seconds()}

    def stage(name: str, t: float, c: float) -> tuple[float, float]:
        times[name], cpu[name] = time.perf_counter() - t, _cpu_seconds() - c
        return time.perf_counter(), _cpu_seconds()

    t, c = time.perf_counter(), _cpu_seconds()
    data = task.load_data()
    t, c = stage("load_data", t, c)
    task.load_model(data.info)
    t, c = stage("load_model", t, c)
    encoded = encode_splits(task, data.splits, Accelerator(cpu=True))
    t, c = stage("encode", t, c)
    tokens = sum(sum(task.lengths(split)) for split in encoded.values())
    stage("lengths", t, c)
    print(json.dumps({"times": times, "cpu": cpu, "splits": {k: len(v) for k, v in encoded.items()}, "tokens": tokens}))


def peer_child(args: argparse.Namespace) -> None:
    """The datasets + transformers recipe on the same csv, timed the same way; prints a JSON line."""
    start = time.perf_counter()
    import datasets
    from transformers import AutoTokenizer

    from nlpkit.modeling import resolve_model

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    times, cpu = {"imports": time.perf_counter() - start}, {"imports": _cpu_seconds()}
    t, c = time.perf_counter(), _cpu_seconds()
    raw = datasets.load_dataset("csv", data_files=args.peer, split="train")
    times["load_data"], cpu["load_data"] = time.perf_counter() - t, _cpu_seconds() - c
    t, c = time.perf_counter(), _cpu_seconds()
    encoded = raw.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
    times["encode"], cpu["encode"] = time.perf_counter() - t, _cpu_seconds() - c
    print(json.dumps({"times": times, "cpu": cpu, "splits": {"train": len(encoded)}}))


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the workers it waited for (tokenizing processes), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _sample_tree_memory(pid: int, peak: list[int], done: threading.Event) -> None:
    """Keep ``peak[0]`` at the largest summed PSS (proportional set size) of ``pid`` and its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        while not done.is_set():
            total = 0
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss  # shared pages of forked workers counted once
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            time.sleep(0.1)
    except psutil.Error:
        pass


def run_child(csv: Path, cache: Path, args: argparse.Namespace, mode: str = "--child") -> dict:
    """Run one preparation (``--child``: nlpkit's, ``--peer``: the recipe's) in a child process with its own
    datasets cache; add wall time and peak memory."""
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    cmd = [sys.executable, __file__, mode, str(csv), "--model", args.model, "--num-proc", str(args.num_proc),
           "--workdir", str(args.workdir)]
    start = time.perf_counter()
    out_file, err_file = cache.parent / f"{cache.name}.out", cache.parent / f"{cache.name}.err"
    with out_file.open("w") as out, err_file.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        peak, done = [0], threading.Event()
        sampler = threading.Thread(target=_sample_tree_memory, args=(proc.pid, peak, done), daemon=True)
        sampler.start()
        # wait4, not Popen.wait: its rusage is this child's (ru_maxrss: the largest of it and its workers)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}):\n{err_file.read_text()[-3000:]}")
    result = json.loads(out_file.read_text().strip().splitlines()[-1])
    result["wall"] = wall
    result["load_average"] = os.getloadavg()[0]  # other jobs on the machine slow every stage down
    result["pss_sum_gb"] = peak[0] / 2**30
    result["maxrss_gb"] = usage.ru_maxrss / 2**20  # KiB on Linux
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="Rows per csv file.")
    parser.add_argument("--num-proc", type=int, default=1,
                        help="data.num_proc (tokenizing processes; a fast tokenizer already uses every core).")
    parser.add_argument("--model", default="minilm-l6", help="Tokenizer/model (catalog name, path or hub id).")
    parser.add_argument("--workdir", default=None, help="Folder for the csv files and caches (default: a temp dir).")
    parser.add_argument("--data", default="rotten_tomatoes",
                        help="Where the rows come from: a catalog name, or a csv/parquet file with text and label.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    if args.peer:
        peer_child(args)
        return
    with tempfile.TemporaryDirectory(prefix="data-scale-") as tmp:
        args.workdir = args.workdir or tmp
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        rows, peers = [], {}
        for i, size in enumerate(sorted(args.sizes)):
            csv = work / f"sentiment-{size}.csv"
            t = time.perf_counter()
            build_csv(csv, size, source=args.data)
            print(f"built {csv.name} ({csv.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s",
                  flush=True)
            cache = work / f"cache-{size}"
            sides = ["nlpkit", "recipe"][:: -1 if i % 2 else 1]  # alternate the order: the machine's speed drifts
            for side in sides:
                if side == "recipe":
                    peers[size] = run_child(csv, work / f"peer-cache-{size}", args, "--peer")
                    print(f"{size} rows, datasets+transformers recipe: {json.dumps(peers[size])}", flush=True)
                    continue
                for run in ("cold", "from cache"):
                    r = run_child(csv, cache, args)
                    rows.append((size, run, r))
                    print(f"{size} rows, {run}: {json.dumps(r)}", flush=True)
        report(rows, args, peers)


def report(rows: list[tuple[int, str, dict]], args: argparse.Namespace, peers: dict[int, dict]) -> None:
    print(f"\nmachine: {os.cpu_count()} CPU cores, data.num_proc={args.num_proc}, model {args.model}\n")
    print("| rows | run | load_data s | load_model s | encode s | lengths s | prepared in s | CPU s | process wall s "
          "| peak RSS largest process GB | peak PSS all processes GB | load average after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    prep: dict[tuple[int, str], float] = {}
    for size, run, r in rows:
        total = sum(r["times"][s] for s in STAGES)
        prep[(size, run)] = total
        cells = " | ".join(f"{r['times'][s]:.1f}" for s in STAGES)
        cpu = sum(r["cpu"][s] for s in STAGES)
        print(f"| {size:,} | {run} | {cells} | {total:.1f} | {cpu:.1f} | {r['wall']:.1f} | {r['maxrss_gb']:.2f} | "
              f"{r['pss_sum_gb']:.2f} | {r['load_average']:.1f} |")
    print("\n| rows | datasets+transformers recipe: read s | tokenize s | total s | CPU s | peak RSS GB "
          "| nlpkit cold prepared in s | recipe / nlpkit |")
    print("|---|---|---|---|---|---|---|---|")
    for size, r in sorted(peers.items()):
        total = r["times"]["load_data"] + r["times"]["encode"]
        cpu = r["cpu"]["load_data"] + r["cpu"]["encode"]
        print(f"| {size:,} | {r['times']['load_data']:.1f} | {r['times']['encode']:.1f} | {total:.1f} | {cpu:.1f} | "
              f"{r['maxrss_gb']:.2f} | {prep[(size, 'cold')]:.1f} | {total / prep[(size, 'cold')]:.2f}x |")
    sizes = sorted({s for s, _, _ in rows})
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        growth = prep[(big, "cold")] / prep[(small, "cold")]
        print(f"\ngrowth {small:,} -> {big:,} rows ({big / small:.0f}x): {growth:.1f}x time (cold) "
              f"(linear: {big / small:.0f}x; less means fixed costs)")
    big = sizes[-1]
    cold = next(r for s, run, r in rows if s == big and run == "cold")
    print(f"targets at {big:,} rows: prepared in {prep[(big, 'cold')]:.1f} s (<= 40), peak "
          f"{cold['maxrss_gb']:.2f} GB largest process / {cold['pss_sum_gb']:.2f} GB all processes (<= 2), "
          f"from cache {prep[(big, 'from cache')]:.1f} s (<= 10)")


if __name__ == "__main__":
    main()
