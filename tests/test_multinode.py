"""Multi-node training for real: two ``accelerate launch`` machine ranks (accelerate_configs/multi_node_cpu.yaml)
meeting through a c10d store on loopback, gloo on the CPU, inside a network namespace that holds only ``lo``.

Each "machine" also gets its own PID namespace, so killing it kills all its processes at once (torchrun starts
its workers in sessions of their own: killing the launcher alone leaves them running), and, for the node-local
disk case, its own mount namespace with a different folder bound at the same run-folder path.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "accelerate_configs" / "multi_node_cpu.yaml"
PORT = 29500  # free in a fresh network namespace


def _can_isolate() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-n", "-m", "-p", "-f", "true"], capture_output=True)
    return probe.returncode == 0


pytestmark = [pytest.mark.multiproc,
              pytest.mark.skipif(not _can_isolate(), reason="needs root and unshare (network/PID/mount namespaces)")]


def _overrides(tiny_bert: Path, data: Path, out: Path, **extra: object) -> list[str]:
    cfg = {"model": tiny_bert, "data.source": data, "output_dir": out, "trackers": "[]", "train.batch_size": 8,
           "train.eval_batch_size": 16, "train.lr": 5e-3, "train.grad_accum": 2, "train.max_steps": 40,
           "train.eval_every": 20, "train.log_every": 5, "train.warmup_ratio": 0.0, "train.save_every": 5,
           "train.keep_checkpoints": 2}
    cfg.update(extra)
    return [f"{k}={v}" for k, v in cfg.items()]


def _launch(args: list[str], overrides: list[str]) -> str:
    return shlex.join([sys.executable, "-m", "accelerate.commands.launch", *args, str(ROOT / "tasks" / "sentiment.py"),
                       *overrides])


def _machine(rank: int, overrides: list[str], disk: Path | None = None, run_dir: Path | None = None) -> str:
    """One machine: its own PID namespace (a SIGKILL to the unshare kills everything in it) and, with ``disk``,
    its own mount namespace where ``disk`` is bound at ``run_dir`` (a node-local disk at the same path)."""
    launch = _launch(["--config_file", str(CONFIG), "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                      "--main_process_port", str(PORT)], overrides)
    if disk is None:
        return f"unshare -p -f --kill-child -- {launch}"
    inner = f"mount --bind {shlex.quote(str(disk))} {shlex.quote(str(run_dir))} && exec {launch}"
    return f"unshare -m -p -f --kill-child -- bash -c {shlex.quote(inner)}"


def _in_loopback_namespace(script: str, logs: Path, timeout: int = 600) -> dict[str, str]:
    """Run a bash ``script`` in a new network namespace with only loopback up; returns the KEY=value lines it
    echoes. While the job runs it records ``ss -ltnp`` and the interfaces (to show nothing listens beyond lo)."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}
    watch = (f"(for i in $(seq 600); do ss -ltn | grep -q ':{PORT} ' && break; sleep 0.1; done; "
             f"ss -ltnp > {logs}/listening.txt; ip -o link > {logs}/links.txt) &\n")
    full = f"set -u\nip link set lo up\ncd {shlex.quote(str(ROOT))}\n{watch}{script}"
    proc = subprocess.run(["unshare", "-n", "bash", "-c", full], env=env, capture_output=True, text=True,
                          timeout=timeout)
    (logs / "namespace.log").write_text(proc.stdout + proc.stderr)
    found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line and line[0].isupper())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return found


def _pair(n0: str, n1: str, logs: Path, kill_when: Path | None = None) -> str:
    """Both machines started together; with ``kill_when`` (a glob), machine 1 is SIGKILLed as soon as it matches."""
    script = f"{n0} > {logs}/machine0.log 2>&1 &\nP0=$!\n{n1} > {logs}/machine1.log 2>&1 &\nP1=$!\n"
    if kill_when is not None:
        script += (f"for i in $(seq 6000); do ls {kill_when} > /dev/null 2>&1 && break; sleep 0.05; done\n"
                   "KILLED=$(date +%s.%N); kill -9 $P1\necho KILLED_AT=$KILLED\n"
                   "timeout 300 tail --pid=$P0 -f /dev/null; echo NODE0_GONE_AT=$(date +%s.%N)\n")
    script += "wait $P0; echo RC0=$?\nwait $P1; echo RC1=$?\n"
    return script


def _weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def two_machines(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run: 2 machines x 1 process, one run folder both share."""
    base = tmp_path_factory.mktemp("two-machines")
    out = base / "run"
    ov = _overrides(tiny_bert, sentiment_data, out)
    rcs = _in_loopback_namespace(_pair(_machine(0, ov), _machine(1, ov), base), base)
    assert rcs["RC0"] == "0" and rcs["RC1"] == "0", (base / "machine1.log").read_text()[-3000:]
    return out


def test_two_machines_equal_two_processes_on_one(two_machines: Path, tiny_bert: Path, sentiment_data: Path,
                                                 tmp_path: Path) -> None:
    """2 machines x 1 process on loopback == 1 machine x 2 processes: same weights and test metrics; the run
    folder was written once (one model, one report), and nothing listened beyond loopback."""
    logs = two_machines.parent
    out = tmp_path / "one-machine"
    one = _launch(["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                   "--dynamo_backend", "no", "--main_process_port", str(PORT)],
                  _overrides(tiny_bert, sentiment_data, out))
    rcs = _in_loopback_namespace(f"{one} > {tmp_path}/one.log 2>&1\necho RC=$?\n", tmp_path)
    assert rcs["RC"] == "0", (tmp_path / "one.log").read_text()[-3000:]
    difference = _max_difference(_weights(two_machines), _weights(out))
    print(f"max weight difference, 2 machines x 1 vs 1 machine x 2: {difference:.3g}")
    assert difference < 1e-5
    multi, single = (json.loads((p / "report.json").read_text()) for p in (two_machines, out))
    assert multi["training"]["processes"] == single["training"]["processes"] == 2
    assert multi["test"]["accuracy"] == single["test"]["accuracy"]
    assert multi["test"]["loss"] == pytest.approx(single["test"]["loss"], abs=1e-5)
    assert multi["test"]["accuracy"] >= 0.8, "the tiny model learns the planted words"
    # nothing half-written or left over by two writers: one model, the last complete checkpoints, no temporaries
    assert sorted(p.name for p in two_machines.glob("checkpoint-*")) == ["checkpoint-35", "checkpoint-40"]
    assert not list(two_machines.glob(".*")), list(two_machines.glob(".*"))
    # both machines' processes wrote their own RNG state into the shared checkpoint
    assert {p.name for p in (two_machines / "checkpoint-40").glob("random_states_*")} == {
        "random_states_0.pkl", "random_states_1.pkl"}
    links = (logs / "links.txt").read_text().splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"], links
    listening = (logs / "listening.txt").read_text()
    assert f":{PORT}" in listening, listening


def test_killed_machine_stops_both_and_resume_matches(two_machines: Path, tiny_bert: Path, sentiment_data: Path,
                                                      tmp_path: Path) -> None:
    """SIGKILL one machine mid-run: the other stops on its own with an error (no hang); relaunching both with
    resume=auto finishes with the weights of the uninterrupted run."""
    out = tmp_path / "run"
    ov = _overrides(tiny_bert, sentiment_data, out)
    found = _in_loopback_namespace(_pair(_machine(0, ov), _machine(1, ov), tmp_path,
                                         kill_when=out / "checkpoint-*" / "trainer_state.json"), tmp_path)
    assert found["RC1"] != "0"
    assert found["RC0"] != "0", "machine 0 must fail when machine 1 dies, not finish alone"
    stopped_after = float(found["NODE0_GONE_AT"]) - float(found["KILLED_AT"])
    print(f"machine 0 stopped {stopped_after:.1f} s after machine 1 was killed")
    assert not (out / "model").exists(), "an interrupted run leaves no final model"
    interrupted = max(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json"))
    assert interrupted < 40
    ov = _overrides(tiny_bert, sentiment_data, out, resume="auto")
    found = _in_loopback_namespace(_pair(_machine(0, ov), _machine(1, ov), tmp_path), tmp_path)
    assert found["RC0"] == "0" and found["RC1"] == "0", (tmp_path / "machine0.log").read_text()[-3000:]
    assert f"Resumed from {out / f'checkpoint-{interrupted}'}" in (tmp_path / "machine0.log").read_text()
    assert _max_difference(_weights(two_machines), _weights(out)) == 0.0


def test_run_folder_on_each_machines_own_disk_resumes(two_machines: Path, tiny_bert: Path, sentiment_data: Path,
                                                       tmp_path: Path) -> None:
    """The same run-folder path on two disks (a mount namespace per machine): every machine keeps complete
    checkpoints of its own, an interrupted run resumes on both, and ends with the uninterrupted run's weights."""
    run_dir = tmp_path / "run"  # the path both machines use; each sees its own disk there
    disks = [tmp_path / "disk0", tmp_path / "disk1"]
    for d in (run_dir, *disks):
        d.mkdir()
    machines = [lambda ov, r=r: _machine(r, ov, disks[r], run_dir) for r in (0, 1)]
    ov = _overrides(tiny_bert, sentiment_data, run_dir, **{"train.stop_after_steps": 20})
    found = _in_loopback_namespace(_pair(machines[0](ov), machines[1](ov), tmp_path), tmp_path)
    assert found["RC0"] == "0" and found["RC1"] == "0", (tmp_path / "machine1.log").read_text()[-3000:]
    for disk in disks:  # every machine holds a complete checkpoint-20, weights and optimizer included
        ckpt = disk / "checkpoint-20"
        assert (ckpt / "trainer_state.json").is_file() and (ckpt / "model.safetensors").is_file(), disk
        assert (ckpt / "optimizer.bin").is_file()
    assert (disks[0] / "config.yaml").is_file() and not (disks[1] / "config.yaml").exists()
    assert not list(run_dir.iterdir()), "nothing was written to the folder under the mounts"
    ov = _overrides(tiny_bert, sentiment_data, run_dir, resume="auto")
    found = _in_loopback_namespace(_pair(machines[0](ov), machines[1](ov), tmp_path), tmp_path)
    assert found["RC0"] == "0" and found["RC1"] == "0", (tmp_path / "machine1.log").read_text()[-3000:]
    assert "Resumed from" in (tmp_path / "machine0.log").read_text()
    # the final model and the reports are machine 0's
    assert (disks[0] / "report.json").is_file() and not (disks[1] / "model").exists()
    assert _max_difference(_weights(two_machines), _weights(disks[0])) == 0.0


def test_a_lost_checkpoint_on_one_machine_is_named(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """resume=auto where machine 1's disk lacks the checkpoint machine 0 resumes from: one line on both machines
    naming machine 1, instead of machine 1 starting fresh on other weights."""
    run_dir, disks = tmp_path / "run", [tmp_path / "disk0", tmp_path / "disk1"]
    for d in (run_dir, *disks):
        d.mkdir()
    ov = _overrides(tiny_bert, sentiment_data, run_dir, **{"train.stop_after_steps": 10})
    found = _in_loopback_namespace(_pair(_machine(0, ov, disks[0], run_dir), _machine(1, ov, disks[1], run_dir),
                                         tmp_path), tmp_path)
    assert found["RC0"] == "0" and found["RC1"] == "0"
    shutil.rmtree(disks[1] / "checkpoint-10")
    ov = _overrides(tiny_bert, sentiment_data, run_dir, resume="auto")
    found = _in_loopback_namespace(_pair(_machine(0, ov, disks[0], run_dir), _machine(1, ov, disks[1], run_dir),
                                         tmp_path), tmp_path)
    assert found["RC0"] != "0" and found["RC1"] != "0"
    for log in ("machine0.log", "machine1.log"):
        assert "checkpoint-10 is complete on machine 0 but not on machine(s) 1" in (tmp_path / log).read_text()


def test_cpu_flag_launch_is_refused(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """`--cpu` with two machines makes accelerate start one independent process per machine (each "the main
    process", all writing into one folder: the SafetensorError of the issue). nlpkit refuses it before writing."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "--cpu",
           "--machine_rank", "1", "--main_process_ip", "127.0.0.1", "--main_process_port", str(PORT),
           str(ROOT / "tasks" / "sentiment.py"), *_overrides(tiny_bert, sentiment_data, out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "accelerate launch started this process alone" in proc.stderr, proc.stderr[-2000:]
    assert not out.exists(), "nothing is written before the refusal"
