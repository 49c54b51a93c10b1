"""A real two-node Ray cluster for tests, on loopback only.

Ray binds some of its servers to the machine's network address even when told ``--node-ip-address 127.0.0.1``
(docs: DESIGN §8), so the cluster runs inside new network and process namespaces made for the test
(``unshare --net --pid --fork --mount-proc``, root needed): the only network there is a loopback interface,
nothing outside can reach a port opened there, and every process the cluster starts (``ray start`` daemons,
actors, servers) ends with the namespace, whatever the test does. ``ray stop`` there sees only this cluster.

:func:`run_on_cluster` starts a head node (custom resource ``node_a``) and a second node (``node_b``), each with
2 logical CPUs and a small object store, runs ``python3 SCRIPT ARGS`` with ``RAY_ADDRESS`` set, records what
listens (``ss -ltnp``) while the script runs (the script calls :func:`listeners`), stops the cluster and returns
the script's exit code and output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: The head's GCS port inside the namespace (no other process can be there: any fixed port will do).
PORT = 6379

CLUSTER = textwrap.dedent("""\
    set -u
    ip link set lo up
    export RAY_USAGE_STATS_ENABLED=0 RAY_ADDRESS=127.0.0.1:{port} GLOO_SOCKET_IFNAME=lo
    common="--node-ip-address 127.0.0.1 --num-cpus 2 --object-store-memory 200000000 --disable-usage-stats"
    # ray start gives a node 30 s to register; on a loaded machine that can pass: start the cluster again
    for attempt in 1 2 3; do
        ray start --head --port {port} $common --resources '{{"node_a": 1}}' --include-dashboard false \\
            --temp-dir {temp} > {logs}/head.log 2>&1 \\
        && ray start --address 127.0.0.1:{port} $common --resources '{{"node_b": 1}}' > {logs}/node_b.log 2>&1 \\
        && break
        ray stop --force > /dev/null 2>&1
        [ $attempt = 3 ] && {{ cat {logs}/head.log {logs}/node_b.log; exit 97; }}
    done
    {python} {script} "$@"
    rc=$?
    ray stop --force > /dev/null 2>&1
    exit $rc
""")


def netns_available() -> str | None:
    """None when a loopback-only network namespace can be made here, else why not (the test is skipped)."""
    for tool in ("unshare", "ip", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace ({probe.stderr.strip() or probe.returncode}): needs root"
    return None


def require_cluster() -> None:
    """Skip the test when Ray or network namespaces are missing (they are there in CI)."""
    pytest.importorskip("ray.data")
    pytest.importorskip("ray.serve")
    reason = netns_available()
    if reason:
        pytest.skip(f"a loopback-only Ray cluster cannot run here: {reason}")


def run_on_cluster(script: str | Path, *args: str, workdir: Path, timeout: float = 1800,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python3 script args`` on a fresh two-node Ray cluster in its own loopback-only namespaces."""
    logs = workdir / "ray-logs"
    logs.mkdir(parents=True, exist_ok=True)
    # short: Ray's unix sockets live under the temp dir and a socket path may hold 107 characters at most
    temp = Path("/tmp") / f"rt-{os.getpid()}-{os.urandom(3).hex()}"
    body = CLUSTER.format(port=PORT, temp=temp, logs=logs, python=sys.executable, script=script)
    try:
        return subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c", body, "cluster",
                               *map(str, args)], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def listeners() -> list[dict[str, str]]:
    """What listens on TCP in this namespace (``ss -ltnp``): address, port and process of each socket."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        address, _, port = parts[3].rpartition(":")
        found.append({"address": address.strip("[]"), "port": port, "process": " ".join(parts[5:])})
    return found


def outside_loopback(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """The listeners bound to a specific address other than loopback (wildcard addresses are reported apart:
    in a namespace whose only interface is loopback they are reachable from loopback only)."""
    loopback = ("127.", "::1", "::ffff:127.")
    wildcard = ("0.0.0.0", "*", "::")
    return [f for f in found if not f["address"].startswith(loopback) and f["address"] not in wildcard]


def result(proc: subprocess.CompletedProcess) -> dict:
    """The JSON the script printed last (its findings), with the output shown when there is none."""
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"the cluster script printed no result (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
