"""Third-party task plugins: a task package living outside ``nlpkit`` (examples/nlpkit-text-regression), installed
for real with pip, registers through the ``nlpkit.tasks`` entry-point group and honours the task contract;
a plugin missing a required hook fails at registration, naming the hook."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_csv

import nlpkit
from nlpkit import registry
from nlpkit.cli import console_main
from nlpkit.errors import ContractError
from nlpkit.task import Task
from nlpkit.testing import check_task_contract

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nlpkit-text-regression"
PACKAGE = "nlpkit_text_regression"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package pip-installed (offline, no dependencies) into a fresh folder; returns that folder."""
    # Built from a copy, so the build leaves no build/ or *.egg-info in the repository.
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("src") / EXAMPLE.name,
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--root-user-action=ignore", "--no-deps", "--no-build-isolation", "--no-index",
                    "--no-cache-dir", "--target", str(target), str(source)],
                   check=True, timeout=120)
    assert (target / PACKAGE / "presets" / "quick.yaml").is_file(), "presets not packaged"
    return target


@pytest.fixture
def plugin_on_path(installed_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed plugin importable for one test; afterwards nlpkit knows only what it knew before."""
    monkeypatch.syspath_prepend(str(installed_plugin))
    # get_task caches the classes it loads; a copy keeps text_regression out of the other tests' registry.
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    yield installed_plugin
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Train on one torch thread, as the suite's xdist workers do (conftest): with ``-n 0`` on a busy 2-core
    machine two threads per process made the tiny model's updates ~10x slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("NLPKIT_CPU_THREADS", "1")  # read by nlpkit.runner.use_cpu_cores
    yield
    torch.set_num_threads(before)


def test_installed_plugin_registers_and_honours_the_contract(plugin_on_path: Path, tiny_task_config,
                                                             one_torch_thread: None) -> None:
    assert "text_regression" in nlpkit.available_tasks()  # found through the entry point, nothing imported yet
    cls = nlpkit.get_task("text_regression")
    assert cls.__module__.startswith(PACKAGE) and Path(sys.modules[PACKAGE].__file__).is_relative_to(plugin_on_path)
    assert set(cls.presets()) == {"quick"}

    overrides, inputs = tiny_task_config("text_regression")  # tests/tiny_text_regression.py
    report = check_task_contract("text_regression", overrides, inputs)

    # rmse is the best-model metric, lower is better
    assert report["main_metric"] == "rmse" and report["best"]["metric"] == "rmse"
    assert set(report["test"]) >= {"mse", "rmse", "mae", "pearson", "spearman"}
    # it learned: far below always predicting the training mean, and the predictions rank the texts well
    data = Path(overrides["data.source"])
    train, test = (_scores(data / f"{split}.csv") for split in ("train", "test"))
    mean = sum(train) / len(train)
    baseline = math.sqrt(sum((s - mean) ** 2 for s in test) / len(test))
    print(f"\ntext_regression test: {report['test']} | training-mean rmse {baseline:.4f}")
    assert report["test"]["rmse"] < 0.5 * baseline
    assert report["test"]["spearman"] > 0.9
    run = Path(report["run_dir"])
    assert (run / "predicted_vs_true.png").is_file()
    assert "## Predicted vs true scores" in (run / "report.md").read_text()
    # the pipeline serves scores on the data's scale (standardization undone); blank texts get None
    pipe = nlpkit.pipeline(str(run), device="cpu")
    good, bad, blank = pipe(["great wonderful superb film", "awful boring dull film", " "])
    assert blank == {"score": None}
    assert good["score"] > 1.0 > -1.0 > bad["score"]


def _scores(path: Path) -> list[float]:
    with path.open(newline="") as fh:
        return [float(row["score"]) for row in csv.DictReader(fh)]


def test_plugin_missing_a_required_hook_fails_at_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))

    class NoEvalStep(Task):
        """Everything the shared loop needs except eval_step."""

        def load_data(self): ...
        def build_model(self, info): ...
        def encode(self, batch): ...
        def collate(self, features): ...
        def compute_metrics(self, outputs): ...
        def predict(self, inputs, batch_size=64, **kwargs): ...

    with pytest.raises(ContractError, match="eval_step") as err:
        nlpkit.registry.register_task("broken")(NoEvalStep)
    assert "compute_metrics" not in str(err.value)  # only what is missing is named
    assert "broken" not in nlpkit.available_tasks()


def test_nlpkit_tasks_lists_the_installed_plugin(plugin_on_path: Path, capsys: pytest.CaptureFixture) -> None:
    console_main(["tasks"])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith("text_regression")] == ["text_regression"]
    assert any("Text regression" in ln for ln in lines)
    # its presets are found by name, beside the plugin's module
    console_main(["train", "text_regression", "quick", "--print-config", "data.source=reviews.csv"])
    printed = capsys.readouterr().out
    assert "task: text_regression" in printed and "max_train_samples: 2000" in printed


def test_plugin_data_errors_name_the_row(plugin_on_path: Path, tmp_path: Path) -> None:
    from nlpkit.config import load_config
    from nlpkit.errors import DataError

    cls = nlpkit.get_task("text_regression")
    rows = [("great film", 1.5), ("dull film", "high"), ("fine", 0)]
    data = write_csv(tmp_path / "scores.csv", rows * 4, ("text", "score"))
    task = cls(load_config(cls.Config, None, {"data.source": str(data), "data.test_size": 2,
                                              "data.validation_size": 2}))
    with pytest.raises(DataError, match=r"row \d+: score 'high' in column 'score' is not a finite number"):
        task.load_data()
