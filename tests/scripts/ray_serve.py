"""Run inside a two-node Ray cluster (tests/ray_cluster.py): ``nlpkit serve RUN --engine ray`` on a port another
program holds (it must fail with one line), then ``--replicas 2`` started past Ray Serve's own proxy wait, its
answers, then one replica killed under load; prints one JSON line with what it saw.

    python ray_serve.py JOB.json

JOB: {"run", "texts": [...], "clients": int, "after_s": float (load kept up after the replacement)}.

Under load from ``clients`` threads (each sends one text per request, in turn), it kills one replica process
(SIGKILL), then records the requests that failed (non-200 or no answer) and the time until a new replica process
is up and Ray Serve reports 2 running replicas again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_batch import node_of  # noqa: E402
from ray_cluster import listeners  # noqa: E402

URL = "http://127.0.0.1:8000"


def replicas() -> dict[int, str | None]:
    """The live replica processes of the nlpkit deployment: pid -> node."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "ServeReplica:nlpkit" in cmd:
            found[proc.pid] = node_of(proc)
    return found


def running() -> int:
    """Replicas Ray Serve reports RUNNING (the controller's view)."""
    from ray import serve

    try:
        app = serve.status().applications.get("nlpkit")
    except Exception:  # the controller is starting
        return 0
    if app is None or "nlpkit" not in app.deployments:
        return 0
    return app.deployments["nlpkit"].replica_states.get("RUNNING", 0)


def wait_for_replicas(server: subprocess.Popen, deadline: float, count: int = 2) -> None:
    """Until ``deadline`` (monotonic): wait for ``count`` replicas running and alive; stop if ``server`` exits."""
    while time.monotonic() < deadline and (running() < count or len(replicas()) < count):
        if server.poll() is not None:
            raise SystemExit(f"nlpkit serve exited {server.returncode}: {server.communicate()[1][-3000:]}")
        time.sleep(0.5)


def classify(client: httpx.Client, text: str) -> tuple[int, str | None]:
    try:
        r = client.post(URL + "/v1/classify", json={"inputs": text}, timeout=30)
    except httpx.HTTPError:
        return -1, None
    return r.status_code, r.json()["predictions"]["label"] if r.status_code == 200 else None


#: ``nlpkit serve`` with Ray Serve's fixed wait for its HTTP proxy (60 s) cut to 0: the start goes through
#: nlpkit's own wait (--start-timeout), as on a head node too busy to start the proxy within Ray's 60 s.
NO_RAY_WAIT = ("import sys, ray.serve._private.api as api; api.HTTP_PROXY_TIMEOUT = 0; "
               "from nlpkit.cli import console_main; console_main(sys.argv[1:])")


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    texts = job["texts"]
    serve = ["serve", job["run"], "--engine", "ray", "--address", os.environ["RAY_ADDRESS"], "--port", "8000",
             "--log-level", "warning"]
    found: dict = {}
    # port 8000 taken by another program: one line, exit 2, Serve shut down again
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 8000))
        busy.listen()
        failed = subprocess.run([sys.executable, "-m", "nlpkit.cli", *serve, "--replicas", "1"], capture_output=True,
                                text=True, timeout=600)
    found["port_busy"] = {"returncode": failed.returncode, "stderr": failed.stderr[-3000:]}
    server = subprocess.Popen([sys.executable, "-c", NO_RAY_WAIT, *serve, "--replicas", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import ray

    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, logging_level="WARNING")
    try:
        deadline = time.monotonic() + 300
        wait_for_replicas(server, deadline)
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if server.poll() is not None:
                    raise SystemExit(f"nlpkit serve exited {server.returncode}: {server.communicate()[1][-3000:]}")
                try:
                    if client.get(URL + "/ready").status_code == 200:
                        break
                except httpx.TransportError:  # the proxy is not listening yet
                    pass
                time.sleep(0.5)
            found["replicas"] = {str(k): v for k, v in replicas().items()}
            found["listeners"] = listeners()
            found["index"] = client.get(URL + "/").json()
            found["answers"] = [classify(client, t)[1] for t in texts]
            found["batch"] = client.post(URL + "/v1/classify", json={"inputs": texts[:8]}).json()

        # one replica killed under load
        log: list[tuple[float, int, int, str | None]] = []  # (time, text index, status, label)
        stop = threading.Event()

        def load(k: int) -> None:
            with httpx.Client() as client:
                i = k
                while not stop.is_set():
                    status, label = classify(client, texts[i % len(texts)])
                    log.append((time.monotonic(), i % len(texts), status, label))
                    i += job["clients"]

        threads = [threading.Thread(target=load, args=(k,)) for k in range(job["clients"])]
        for t in threads:
            t.start()
        time.sleep(3)
        before = replicas()
        victim = sorted(before)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced_s = None
        while time.monotonic() - killed_at < 600:
            now = replicas()
            if len(set(now) - set(before)) >= 1 and running() >= 2:
                replaced_s = time.monotonic() - killed_at
                break
            time.sleep(0.2)
        time.sleep(job["after_s"])
        stop.set()
        for t in threads:
            t.join(60)
        found["kill"] = {"victim_node": before[victim], "replaced_s": replaced_s,
                         "replicas_after": {str(k): v for k, v in replicas().items()},
                         "requests": len(log), "errors": sum(1 for e in log if e[2] != 200),
                         "statuses": sorted({e[2] for e in log}),
                         "ok_after_kill": sum(1 for e in log if e[0] > killed_at and e[2] == 200),
                         "log": [(i, s, label) for _, i, s, label in log]}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out, err = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            out, err = server.communicate()
        found["server"] = {"returncode": server.returncode, "stdout": out[-2000:], "stderr": err[-3000:],
                           "waited_past_ray": "not up after Ray's fixed 60 s wait" in err}
        found["replicas_after_stop"] = len(replicas())
        print(json.dumps(found))


if __name__ == "__main__":
    main()
