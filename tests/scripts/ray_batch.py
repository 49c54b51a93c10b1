"""Run inside a two-node Ray cluster (tests/ray_cluster.py): ``nlpkit predict --engine ray`` on the cluster, with
an actor killed mid-run when asked; prints one JSON line with what it saw.

    python ray_batch.py JOB.json

JOB: {"run", "input", "output", "actors", "chunk_rows", "kill": bool, "extra": [nlpkit predict options],
"timeout_s" (optional, default 900: the run is stopped then), "kill_after_s" (optional: kill an actor that long after
the first actor is up, instead of once every actor is up and the first shards are written; Ray Data may write them
only at the end),
"bad": {"input", "output", "extra"} (optional: a run that must fail, e.g. a missing text column)}.

With "kill" it waits until every actor has opened the model and the first shards are written, kills one actor
process (SIGKILL, as an out-of-memory killer or a lost machine would), and records that the run was still going
then, and the actor processes seen (a restarted actor is a new process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_cluster import listeners  # noqa: E402


def node_of(proc: psutil.Process) -> str | None:
    """The custom resource (node_a / node_b) of the raylet that started ``proc``."""
    for parent in proc.parents():
        try:
            cmd = " ".join(parent.cmdline())
        except psutil.Error:
            continue
        if "raylet" in parent.name() or "/raylet" in cmd:
            return "node_a" if "node_a" in cmd else "node_b" if "node_b" in cmd else "?"
    return None


def actors() -> dict[int, str | None]:
    """The live prediction actors of this namespace: pid -> node."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "_Predictor" in cmd and "MapWorker" in cmd:
            found[proc.pid] = node_of(proc)
    return found


def predict(run: str, pattern: str, output: str, n_actors: int, chunk_rows: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "nlpkit.cli", "predict", run, "--input", pattern, "--output", output, "--engine",
            "ray", "--address", os.environ["RAY_ADDRESS"], "--actors", str(n_actors), "--chunk-rows", str(chunk_rows),
            *extra]


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    output, n_actors = job["output"], int(job["actors"])
    started = time.monotonic()
    cmd = predict(job["run"], job["input"], output, n_actors, job["chunk_rows"], job.get("extra", []))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, str | None] = {}
    killed, running_after_kill, ports, first_up, most = None, None, [], None, 0
    deadline = started + float(job.get("timeout_s", 900))
    while proc.poll() is None and time.monotonic() < deadline:
        now = actors()
        seen.update(now)
        if not ports and len(now) >= n_actors:
            ports = listeners()
        most = max(most, len(now))
        if now and first_up is None:
            first_up = time.monotonic()
        if job.get("kill_after_s") is not None:  # that long after the first actor is up, one actor then alive
            due = first_up is not None and now and time.monotonic() - first_up >= job["kill_after_s"]
        else:  # every actor is up and the first shards are written: the run is under way
            partial = [p for p in Path(output).parent.glob(f".{Path(output).name}*") if p.is_dir()]
            due = len(now) >= n_actors and any(any(d.glob("*.parquet")) for d in partial)
        if job.get("kill") and killed is None and due:
            victim = sorted(now)[0]
            os.kill(victim, signal.SIGKILL)
            killed = {"pid": victim, "node": now[victim], "at_s": time.monotonic() - started}
            time.sleep(0.5)
            running_after_kill = proc.poll() is None
        # look often until the kill is done (or not asked for), then seldom: looking costs CPU a timed run shares
        time.sleep(0.2 if (ports == [] or (job.get("kill") and killed is None)) else 2.0)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    found = {"returncode": proc.returncode, "stdout": out[-2000:], "stderr": err[-4000:],
             "seconds": time.monotonic() - started, "actors_seen": {str(k): v for k, v in seen.items()},
             "killed": killed, "running_after_kill": running_after_kill, "listeners": ports,
             "most_actors_alive": most}
    bad = job.get("bad")
    if bad:
        failed = subprocess.run(predict(job["run"], bad["input"], bad["output"], 1, job["chunk_rows"],
                                        bad.get("extra", [])), capture_output=True, text=True, timeout=600)
        found["bad"] = {"returncode": failed.returncode, "stderr": failed.stderr[-3000:]}
    print(json.dumps(found))


if __name__ == "__main__":
    main()
