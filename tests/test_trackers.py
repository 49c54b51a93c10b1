"""Experiment trackers: runs recorded for real into a local MLflow store and read back with MLflow's own client;
trackers named but not installed fail before training; tracker names and tags reach every tracker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import sentiment_overrides
from tiny_word2vec import planted_texts, w2v_overrides, write_corpus_file

import nlpkit
from nlpkit.errors import ConfigError
from nlpkit.trackers import check_trackers, init_kwargs

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SQLite MLflow store, set as the standard MLFLOW_TRACKING_URI, shared by this module's tests (each
    records into its own experiment; creating the database takes seconds). The working directory moves there
    too: MLflow keeps a database store's artifacts under ``./mlruns``."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for var in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS", "MLFLOW_NESTED_RUN"):
            mp.delenv(var, raising=False)
        mp.chdir(folder)
        yield uri


def only_run(uri: str, experiment: str):
    """The one run of ``experiment`` in the store at ``uri``, read back through MLflow's client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment named {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for f in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_sentiment_run_is_recorded_in_mlflow(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                             mlflow_store: str) -> None:
    """Experiment = tracker.project, run = tracker.run_name, tags, the config as params, every logged step of
    train/loss, validation and test metrics, and the report, plots, config and model card as artifacts."""
    run_dir = tmp_path / "run"
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, run_dir, **{
        "trackers": ["tensorboard", "mlflow"], "tracker.project": "nlpkit-tests", "tracker.run_name": "tiny-bert",
        "tracker.tags": {"team": "nlp", "data": "planted"}, "train.eval_every": 10}))
    client, run = only_run(mlflow_store, "nlpkit-tests")
    assert run.info.run_name == "tiny-bert" and run.info.status == "FINISHED"
    assert run.data.tags["team"] == "nlp" and run.data.tags["data"] == "planted"

    params = run.data.params
    assert float(params["train.lr"]) == 3e-3 and params["task"] == "sentiment"
    assert params["tracker.project"] == "nlpkit-tests" and params["data.source"] == str(sentiment_data)

    logged_losses = [h for h in report["history"] if "loss" in h]
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in loss] == [h["step"] for h in logged_losses]  # one point per logged update
    assert [m.value for m in loss] == pytest.approx([h["loss"] for h in logged_losses], abs=1e-4)  # report rounds
    assert len(client.get_metric_history(run.info.run_id, "train/lr")) == len(loss)
    evals = [h for h in report["history"] if "eval_accuracy" in h]
    accuracy = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert len(accuracy) == len(evals) >= 2
    assert run.data.metrics["test/accuracy"] == pytest.approx(report["test"]["accuracy"])

    files = artifact_paths(client, run.info.run_id)
    assert {"report.json", "report.md", "learning_curve.png", "confusion_matrix.png", "config.yaml",
            "model/README.md"} <= files
    local = Path(client.download_artifacts(run.info.run_id, "report.json", str(tmp_path)))
    assert json.loads(local.read_text())["test"] == json.loads((run_dir / "report.json").read_text())["test"]
    # TensorBoard still writes into the run folder
    assert list((run_dir / "logs").rglob("events.out.tfevents*"))


def test_defaults_name_the_run_after_task_and_folder(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                                    mlflow_store: str) -> None:
    """No tracker.* options: the experiment is the task's name, the run the run folder's name, no tags."""
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "my-run", **{
        "trackers": ["mlflow"], "train.max_steps": 2}))
    _, run = only_run(mlflow_store, "sentiment")
    assert run.info.run_name == "my-run"
    assert not {k for k in run.data.tags if not k.startswith("mlflow.")}


def test_failed_run_is_closed_as_failed(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                        mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails after its trackers started ends its MLflow run as FAILED and leaves none active, so the
    next run in the same process (a sweep's next trial) can start one."""
    from nlpkit.plugins.sentiment.task import SentimentTask

    # an unknown metric now fails before the run starts; without the declared names it fails at the first
    # validation, after the trackers started: the failure this test needs
    monkeypatch.setattr(SentimentTask, "metric_names", ())
    with pytest.raises(ConfigError, match="metric_for_best"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "bad", **{
            "trackers": ["mlflow"], "tracker.project": "failing", "train.max_steps": 2,
            "train.metric_for_best": "no_such_metric"}))
    _, run = only_run(mlflow_store, "failing")
    assert run.info.status == "FAILED"
    assert mlflow.active_run() is None


def test_missing_tracker_fails_before_training(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate alone would warn and log nothing; nlpkit stops before any work and says what to install."""
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_mlflow_available", lambda: False)
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"mlflow, which is not installed: pip install \"nlpkit-hf\[mlflow\]\""):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, run_dir,
                                                        trackers=["tensorboard", "mlflow"]))
    assert not (run_dir / "model").exists() and not (run_dir / "config.yaml").exists()


def test_unknown_tracker_lists_the_known_ones(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown tracker 'mlfow'.*Did you mean 'mlflow'\?.*Known trackers: .*"
                                          r"tensorboard.*wandb"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "run",
                                                        trackers=["mlfow"]))
    assert not (tmp_path / "run").exists()
    check_trackers([])  # no tracker: nothing to check
    check_trackers(["tensorboard", "mlflow"])


def test_names_and_tags_in_each_trackers_own_arguments() -> None:
    """accelerate's init_kwargs: W&B gets name= and list tags (its project is accelerate's project_name, no longer
    the run folder); MLflow run_name= and dict tags; only the named trackers get an entry."""
    kw = init_kwargs(["tensorboard", "wandb", "mlflow", "clearml"], "run-1", {"team": "nlp", "baseline": ""})
    assert kw == {"wandb": {"name": "run-1", "tags": ["team=nlp", "baseline"]},
                  "mlflow": {"run_name": "run-1", "tags": {"team": "nlp", "baseline": ""}},
                  "clearml": {"task_name": "run-1", "tags": ["team=nlp", "baseline"]}}
    assert init_kwargs(["tensorboard"], "run-1", {}) == {}


def test_word2vec_logs_its_benchmarks_to_mlflow(tmp_path: Path, mlflow_store: str) -> None:
    """word2vec trains with gensim, not the shared loop, and still records its config, its benchmark metrics and
    its report in the tracker."""
    data = write_corpus_file(tmp_path / "corpus.txt", planted_texts(300))
    report = nlpkit.train("word2vec", **w2v_overrides(data, tmp_path / "w2v-run", **{
        "w2v.epochs": 5, "trackers": ["mlflow"], "tracker.tags": {"kind": "tiny"}}))
    client, run = only_run(mlflow_store, "word2vec")
    assert run.info.run_name == "w2v-run" and run.info.status == "FINISHED" and run.data.tags["kind"] == "tiny"
    assert run.data.params["w2v.vector_size"] == "16" and run.data.params["w2v.min_count"] == "1"
    numeric = {k for k, v in report["test"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert "analogy_accuracy" in numeric
    assert {k.removeprefix("test/") for k in run.data.metrics} == numeric
    files = artifact_paths(client, run.info.run_id)
    assert {"report.json", "report.md", "config.yaml"} <= files
    assert {Path(p).name for p in (tmp_path / "w2v-run").glob("*.png")} <= files
