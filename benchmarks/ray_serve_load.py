"""The serving load test against ``nlpkit serve --engine ray --replicas 2`` on a local two-node Ray cluster.

    python benchmarks/ray_serve_load.py --run RUN [--clients 64] [--requests 2000] [--json out.json]
    python benchmarks/ray_serve_load.py --smoke       # a tiny untrained classifier: the script works

A head node and a second node are started with ``ray start`` inside a network namespace with only loopback (as
the tests do: tests/ray_cluster.py); ``nlpkit serve RUN --engine ray --replicas 2`` puts one replica on each.
The load is benchmarks/serve_load.py's own (its ``load``: ``--clients`` concurrent clients, one rotten_tomatoes
text per request), twice: undisturbed, then with one replica killed (SIGKILL) 5 seconds in. Reported: requests/s,
p50/p99 latency, errors (non-200 or no answer), labels equal to ``nlpkit.pipeline``'s, and for the kill the time
until a new replica process is up and Ray Serve reports 2 running replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tests/scripts first: its ray_batch.py (node_of, used by ray_serve.py) must win over benchmarks/ray_batch.py
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "scripts"))


def inside(job_file: str) -> None:
    """On the cluster: serve, load, kill, print one JSON line."""
    import httpx
    import ray
    from ray_serve import replicas, running, wait_for_replicas  # tests/scripts/ray_serve.py
    from serve_load import load

    job = json.loads(Path(job_file).read_text())
    url = "http://127.0.0.1:8000"
    cmd = [sys.executable, "-m", "nlpkit.cli", "serve", job["run"], "--engine", "ray", "--replicas", "2",
           "--address", os.environ["RAY_ADDRESS"], "--port", "8000", "--log-level", "warning",
           "--max-concurrency", str(max(256, 2 * job["clients"])), "--threads", "1", *job["extra"]]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, logging_level="WARNING")
    found: dict = {}
    try:
        wait_for_replicas(server, time.monotonic() + 600)
        while httpx.get(url + "/ready").status_code != 200:
            time.sleep(0.5)
        found["replicas"] = sorted(replicas().values())
        texts = job["texts"]
        asyncio.run(load(url, texts[:2 * job["clients"]], job["clients"], 60.0, 30.0))  # warm-up
        found["steady"] = asyncio.run(load(url, texts, job["clients"], 60.0, job["max_seconds"]))

        before = replicas()
        kill: dict = {}

        def killer() -> None:
            time.sleep(5)
            victim = sorted(before)[0]
            at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            kill.update(victim_node=before[victim])
            while time.monotonic() - at < 300:
                if set(replicas()) - set(before) and running() >= 2:
                    kill["replaced_s"] = time.monotonic() - at
                    return
                time.sleep(0.2)

        thread = threading.Thread(target=killer)
        thread.start()
        found["killed"] = asyncio.run(load(url, texts, job["clients"], 60.0, job["max_seconds"]))
        thread.join()
        found["killed"].update(kill)
        found["replicas_after"] = sorted(replicas().values())
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
        found["server_exit"] = server.returncode
        print(json.dumps(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="A sentiment run folder or export (required unless --smoke).")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--json", help="Also write the results to this JSON file.")
    parser.add_argument("--smoke", action="store_true", help="A tiny untrained classifier, 8 clients, 200 requests.")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.inside)
        return
    from ray_cluster import netns_available, result, run_on_cluster
    from serve_load import texts_for

    reason = netns_available()
    if reason:
        raise SystemExit(f"cannot run a loopback-only Ray cluster here: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="ray-serve-"))
    extra: list[str] = []
    if args.smoke:
        from serve_load import tiny_classifier

        args.run, extra = str(tiny_classifier(workdir / "tiny")), ["--task", "sentiment"]
        args.clients, args.requests = min(args.clients, 8), min(args.requests, 200)
    elif not args.run:
        parser.error("--run is required (or --smoke)")
    import nlpkit

    texts = texts_for(argparse.Namespace(smoke=args.smoke, requests=args.requests))
    pipe = nlpkit.pipeline("sentiment", model=args.run, device="cpu") if args.smoke else \
        nlpkit.pipeline(args.run, device="cpu")
    expected = [p["label"] for p in pipe(texts)]
    del pipe
    job = {"run": args.run, "texts": texts, "clients": args.clients, "max_seconds": args.max_seconds, "extra": extra}
    (workdir / "job.json").write_text(json.dumps(job))
    found = result(run_on_cluster(Path(__file__).resolve(), "--inside", str(workdir / "job.json"), workdir=workdir,
                                  timeout=3600))
    print(f"\n{args.clients} clients, {len(texts)} requests of one text each, 2 Ray Serve replicas on nodes "
          f"{found['replicas']} (one machine){' (smoke: tiny untrained model)' if args.smoke else ''}\n")
    print(f"{'run':22s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'errors':>7s} {'= pipeline':>11s}  replaced after")
    for name in ("steady", "killed"):
        r = found[name]
        answered = [(a, e) for a, e in zip(r.pop("answers"), expected) if a is not None]
        r["agreement"] = sum(a == e for a, e in answered) / len(answered) if answered else 0.0
        replaced = f"{r['replaced_s']:.1f} s" if r.get("replaced_s") is not None else ("-" if name == "steady"
                                                                                      else "not within 300 s")
        label = "2 replicas" if name == "steady" else "1 replica killed at 5 s"
        print(f"{label:22s} {r['rps']:7.1f} {r['p50'] * 1000:7.0f} {r['p99'] * 1000:7.0f} {r['errors']:7d} "
              f"{r['agreement'] * 100:10.2f}%  {replaced}")
    print(f"\nreplicas after: {found['replicas_after']}; nlpkit serve exit code {found['server_exit']}")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
