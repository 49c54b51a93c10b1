"""Sentiment end to end on a tiny local BERT: learning, saving, reloading, reports, pipelines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import sentiment_overrides, sentiment_rows, write_csv

import nlpkit


@pytest.fixture(scope="module")
def trained_run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    return nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{
        "train.epochs": 6.0, "train.eval_every": 40, "trackers": ["tensorboard"]}))


def test_learns_the_planted_words(trained_run: dict) -> None:
    """Loss falls and held-out accuracy is far above chance (the planted words decide the label)."""
    losses = [h["loss"] for h in trained_run["history"] if "loss" in h]
    assert losses[-1] < losses[0] * 0.5
    assert trained_run["test"]["accuracy"] >= 0.9
    assert trained_run["test"]["samples"] == 50  # exactly the test split, no duplicated tail


def test_overfits_a_small_set_to_accuracy_one(tiny_bert: Path, tmp_path: Path) -> None:
    rows = sentiment_rows(16, seed=7)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        write_csv(data / f"{split}.csv", rows)
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, data, tmp_path / "run", **{
        "train.epochs": 40.0, "train.batch_size": 4, "train.eval_every": 1000}))
    assert report["test"]["accuracy"] == 1.0
    assert report["test"]["loss"] < 0.2


def test_run_folder_contents(trained_run: dict) -> None:
    run = Path(trained_run["run_dir"])
    for name in ("config.yaml", "report.json", "report.md", "learning_curve.png", "confusion_matrix.png",
                 "model/README.md", "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (run / name).exists(), name
    card = (run / "model/README.md").read_text()
    assert card.startswith("---") and "model-index" in card and "accuracy" in card
    assert "library_name: transformers" in card
    saved = json.loads((run / "report.json").read_text())
    assert saved["test"]["accuracy"] == trained_run["test"]["accuracy"]
    assert saved["versions"]["torch"] and saved["training"]["samples_per_s"] > 0
    assert saved["config"]["train"]["epochs"] == 6.0
    assert list((run / "logs").rglob("events.out.tfevents*")), "TensorBoard events were not written"
    assert not list(run.glob("checkpoint-*/*.tmp"))


def test_saved_model_loads_with_plain_transformers(trained_run: dict) -> None:
    """The saved folder is a normal HF model: AutoModel and transformers.pipeline load it and agree."""
    from transformers import AutoModelForSequenceClassification, pipeline

    model_dir = Path(trained_run["run_dir"]) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    hf = pipeline("text-classification", model=str(model_dir), device="cpu")
    ours = nlpkit.pipeline(trained_run["run_dir"], device="cpu")
    texts = [t for t, _ in sentiment_rows(30, seed=11)]
    assert [p["label"] for p in hf(texts)] == [p["label"] for p in ours(texts)]


def test_pipeline_batched_equals_single_and_keeps_order(trained_run: dict) -> None:
    clf = nlpkit.pipeline(trained_run["run_dir"], device="cpu")
    texts = [t for t, _ in sentiment_rows(25, seed=5)] + ["", "   ", "great " * 500]
    batched = clf(texts, batch_size=4)
    single = [clf(t) for t in texts]
    assert [b["label"] for b in batched] == [s["label"] for s in single]
    for b, s in zip(batched, single):
        if b["score"] is not None:
            assert abs(b["score"] - s["score"]) < 1e-5
    assert batched[25] == {"label": None, "score": None}  # empty text: no prediction, no crash
    assert batched[27]["label"] == "positive"  # truncated long text still classified
    assert nlpkit.pipeline("sentiment", model=trained_run["run_dir"] + "/model", device="cpu")(texts[0])["label"]


def test_evaluate_reproduces_the_reported_test_metrics(trained_run: dict) -> None:
    metrics = nlpkit.evaluate(trained_run["run_dir"])
    assert metrics["accuracy"] == pytest.approx(trained_run["test"]["accuracy"])
    assert metrics["samples"] == 50


def test_compare_runs(trained_run: dict, tmp_path: Path) -> None:
    from nlpkit.cli import console_main

    console_main(["report", trained_run["run_dir"], trained_run["run_dir"], "--out", str(tmp_path)])
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert len(data["runs"]) == 2 and data["runs"][0]["test"]["accuracy"] == trained_run["test"]["accuracy"]
    assert "accuracy" in (tmp_path / "comparison.md").read_text()


def test_weights_change_and_loss_uses_all_labels(trained_run: dict, tiny_bert: Path) -> None:
    from safetensors.torch import load_file

    before = load_file(str(tiny_bert / "model.safetensors"))
    after = load_file(str(Path(trained_run["run_dir"]) / "model/model.safetensors"))
    key = next(k for k in after if k.endswith("embeddings.word_embeddings.weight"))
    base_key = next(k for k in before if k.endswith("embeddings.word_embeddings.weight"))
    assert not torch.allclose(before[base_key], after[key])
