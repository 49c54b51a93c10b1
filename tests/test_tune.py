"""nlpkit tune: search spaces, a tiny sweep's run folders and study report, pruning, workers sharing a study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import sentiment_overrides

pytest.importorskip("optuna")

from nlpkit.cli import console_main  # noqa: E402
from nlpkit.config import load_config  # noqa: E402
from nlpkit.errors import ConfigError, UsageError  # noqa: E402
from nlpkit.plugins.sentiment import SentimentTask  # noqa: E402
from nlpkit.registry import find_preset  # noqa: E402
from nlpkit.tune import load_space, tune  # noqa: E402

SPACE = {"train.lr": {"type": "float", "low": 1.0e-4, "high": 5.0e-3, "log": True},
         "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
         "train.weight_decay": {"type": "categorical", "choices": [0.0, 0.01]}}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> object:
    """Trials run in this process (and its workers): one torch thread each, as under pytest-xdist, so that they
    do not fight over a few shared cores."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPKIT_CPU_THREADS", "1")
        yield


def _space(tmp_path: Path, space: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return path


def _base(tiny_bert: Path, data: Path, **extra: object) -> list[str]:
    """The tiny sentiment config as key=value arguments, without what the sweeps set (output_dir, lr, warmup)."""
    cfg = sentiment_overrides(tiny_bert, data, Path("unused"), **extra)
    for key in ("output_dir", "train.lr", "train.warmup_ratio"):
        del cfg[key]
    return [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in cfg.items()]


# ------------------------------------------------------------------------------------------- search spaces


def test_space_in_the_issues_form(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("train.lr: {type: float, low: 1.0e-5, high: 3.0e-4, log: true}\n"
                    "train.warmup_ratio: {type: float, low: 0.0, high: 0.2}\n"
                    "train.batch_size: {type: categorical, choices: [16, 32]}\n"
                    "train.epochs: {type: int, low: 1, high: 3}\n"
                    "train.max_grad_norm: {type: float, low: 0.5, high: 2.0, step: 0.5}\n")
    space = load_space(path, SentimentTask.Config)
    assert list(space) == ["train.lr", "train.warmup_ratio", "train.batch_size", "train.epochs",
                           "train.max_grad_norm"]
    assert space["train.lr"].log and space["train.lr"].low == 1.0e-5
    assert space["train.batch_size"].choices == (16, 32)
    assert space["train.epochs"].type == "int" and space["train.max_grad_norm"].step == 0.5


@pytest.mark.parametrize(("spec", "message"), [
    ({"train.lrr": {"type": "float", "low": 1e-5, "high": 1e-3}}, "Did you mean `train.lr`"),
    ({"train.batch_size": {"type": "categorical", "choices": [16, "big"]}}, "Bad value for `train.batch_size`"),
    ({"train.lr": {"type": "float", "low": 1e-3}}, "numeric `low` and `high`"),
    ({"train.lr": {"type": "float", "low": 1e-3, "high": 1e-5}}, "low < high"),
    ({"train.lr": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, "needs low > 0"),
    ({"train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}}, "both `step`"),
    ({"train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "lg": True}}, "unknown field(s) lg"),
    ({"train.epochs": {"type": "int", "low": 1, "high": 2.5}}, "integer `low` and `high`"),
    ({"train.lr": {"type": "uniform", "low": 1e-5, "high": 1e-3}}, "`type: float`"),
    ({"train.lr": [1e-5, 1e-3]}, "`type: float`"),
    ({"train.scheduler": {"type": "categorical", "choices": []}}, "non-empty list of `choices`"),
    ({"train.scheduler": {"type": "categorical", "choices": ["linear", "linear"]}}, "repeated choices"),
    ({"output_dir": {"type": "categorical", "choices": ["a", "b"]}}, "cannot be searched"),
])
def test_space_errors_name_the_key(tmp_path: Path, spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        load_space(_space(tmp_path, spec), SentimentTask.Config)
    assert message in str(err.value), str(err.value)
    assert str(tmp_path / "space.yaml") in str(err.value)


def test_space_file_must_exist_and_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "missing.yaml", SentimentTask.Config)
    (tmp_path / "list.yaml").write_text("- train.lr\n")
    with pytest.raises(ConfigError, match="must map dotted config keys"):
        load_space(tmp_path / "list.yaml", SentimentTask.Config)


def test_bad_calls_fail_before_any_trial(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    space = _space(tmp_path, SPACE)
    base = _base(tiny_bert, sentiment_data)
    with pytest.raises(ConfigError, match="both searched"):
        tune("sentiment", None, [*base, "train.lr=0.001"], space=space, trials=1, out=tmp_path / "s")
    with pytest.raises(UsageError, match="--direction"):
        tune("sentiment", None, base, space=space, trials=1, out=tmp_path / "s", metric="f1")
    with pytest.raises(UsageError, match="output_dir"):
        tune("sentiment", None, [*base, "output_dir=x"], space=space, trials=1, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------------------- a tiny sweep


@pytest.fixture(scope="module")
def sweep(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 trials through the command line (`nlpkit tune`), then 1 more added to the same study."""
    tmp = tmp_path_factory.mktemp("sweep")
    out, space = tmp / "study", _space(tmp, SPACE)
    args = ["tune", "sentiment", *_base(tiny_bert, sentiment_data), "--space", str(space), "--out", str(out),
            "--seed", "3"]
    console_main([*args, "--trials", "4"])
    (out / "after-4.json").write_text((out / "trials.json").read_text())
    console_main([*args, "--trials", "1"])  # re-running adds to the study
    return out


def test_every_trial_is_a_run_folder(sweep: Path) -> None:
    first = json.loads((sweep / "after-4.json").read_text())
    assert first["study"] == "sentiment-space" and first["metric"] == "accuracy" and first["direction"] == "maximize"
    assert [r["number"] for r in first["rows"]] == [0, 1, 2, 3]
    rows = json.loads((sweep / "trials.json").read_text())["rows"]
    assert [r["number"] for r in rows] == [0, 1, 2, 3, 4]
    assert len({json.dumps(r["params"], sort_keys=True) for r in rows}) == 5, "trials repeated their values"
    for r in rows:
        assert r["state"] == "complete" and 0 <= r["value"] <= 1 and r["seconds"] > 0
        run = Path(r["run_dir"])
        assert run == sweep / f"trial-{r['number']}"
        assert (run / "model" / "model.safetensors").exists() and (run / "report.md").exists()
        report = json.loads((run / "report.json").read_text())
        assert report["validation"]["accuracy"] == r["value"]
        assert report["config"]["train"]["lr"] == r["params"]["train.lr"]
        assert not list(run.glob("checkpoint-*")), "a trial is never resumed: its checkpoints are removed"


def test_best_yaml_is_a_preset_of_the_best_trial(sweep: Path, tiny_bert: Path) -> None:
    summary = json.loads((sweep / "trials.json").read_text())
    best = summary["best"]
    assert best["value"] == max(r["value"] for r in summary["rows"])
    path = sweep / "best.yaml"
    text = path.read_text()
    assert text.startswith("#") and f"nlpkit train sentiment {path}" in text and "tasks/sentiment.py" in text
    cfg = load_config(SentimentTask.Config, find_preset("sentiment", str(path)))  # by path, declares its task
    for key, value in best["params"].items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value
    assert cfg.model.name == str(tiny_bert) and cfg.train.batch_size == 8  # the base config too
    assert "output_dir" not in yaml.safe_load(text)


def test_study_report_table_and_plots(sweep: Path) -> None:
    md = (sweep / "trials.md").read_text()
    assert "| trial | state | accuracy | params | run folder | seconds | worker |" in md
    assert md.count("| complete |") == 5 and "best.yaml" in md
    for png in ("history.png", "param_importances.png", "parallel_coordinate.png"):
        assert (sweep / png).stat().st_size > 5000, png
        assert f"]({png})" in md


# ------------------------------------------------------------------------------------------- pruning


def test_pruning_stops_bad_trials_without_a_model(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """lr 1.0 diverges at once: once any trial is complete, such trials are pruned at their first validation."""
    space = _space(tmp_path, {"train.lr": {"type": "categorical", "choices": [1.0, 3.0e-3]}})
    summary = tune("sentiment", None, _base(tiny_bert, sentiment_data, **{"train.eval_every": 5}), space=space,
                   trials=3, out=tmp_path / "study", metric="loss", direction="minimize", prune_after=1, seed=1)
    rows = json.loads((tmp_path / "study" / "trials.json").read_text())["rows"]
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert summary["counts"].get("pruned", 0) == len(pruned) >= 1, rows
    for r in pruned:
        assert r["params"]["train.lr"] == 1.0
        run = Path(r["run_dir"])
        report = json.loads((run / "report.json").read_text())
        assert report["stop_reason"].startswith("pruned by Optuna at update")
        assert report["test"] is None
        assert not (run / "model").exists(), "a pruned trial must not leave a model"
        assert not (run / "best_model").exists()
    assert any(r["state"] == "complete" and r["params"]["train.lr"] == 3.0e-3 for r in rows)


# ------------------------------------------------------------------------------------------- workers


def test_two_worker_processes_share_one_study(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """Two processes started at once, 2 trials each, one SQLite storage: 4 distinct trials, none lost."""
    space, out = _space(tmp_path, SPACE), tmp_path / "study"
    cmd = [sys.executable, "-m", "nlpkit.tune", "sentiment", *_base(tiny_bert, sentiment_data), "--space",
           str(space), "--trials", "2", "--out", str(out), "--study", "shared", "--storage", str(tmp_path / "s.db")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)
    summary = json.loads((out / "trials.json").read_text())
    rows = summary["rows"]
    assert summary["study"] == "shared" and summary["storage"] == f"sqlite:///{tmp_path / 's.db'}"
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3]
    assert all(r["state"] == "complete" for r in rows), rows
    assert len({json.dumps(r["params"], sort_keys=True) for r in rows}) == 4, "workers drew the same values"
    assert len({r["run_dir"] for r in rows}) == 4
    assert all((Path(r["run_dir"]) / "model").is_dir() for r in rows)
    workers = [r["worker"] for r in rows]
    assert len(set(workers)) == 2 and all(workers.count(w) == 2 for w in workers), workers
    assert all("Study shared" in log and "this command ran 2" in log for log in logs), logs


@pytest.mark.multiproc
def test_trials_as_two_process_runs_under_accelerate_launch(tiny_bert: Path, sentiment_data: Path,
                                                            tmp_path: Path) -> None:
    """accelerate launch, 2 gloo processes: every trial is a 2-process run; the main process alone talks to Optuna
    and sends each trial's values and the pruning decision to the other (the group survives between trials)."""
    space, out = _space(tmp_path, {"train.lr": {"type": "categorical", "choices": [1.0, 3.0e-3]}}), tmp_path / "st"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "nlpkit.tune", "sentiment", *_base(tiny_bert, sentiment_data, **{"train.eval_every": 5}),
           "--space", str(space), "--trials", "3", "--out", str(out), "--metric", "loss", "--direction", "minimize",
           "--prune-after", "1", "--seed", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads((out / "trials.json").read_text())["rows"]
    assert [(r["number"], r["state"]) for r in rows] == [(0, "complete"), (1, "pruned"), (2, "complete")], rows
    for r in rows:
        report = json.loads((Path(r["run_dir"]) / "report.json").read_text())
        assert report["training"]["processes"] == 2
        assert report["config"]["train"]["lr"] == r["params"]["train.lr"]
        assert (Path(r["run_dir"]) / "model").is_dir() == (r["state"] == "complete")
