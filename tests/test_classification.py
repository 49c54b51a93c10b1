"""Classification beyond one balanced label: multi-label, class weights for a rare class, every label's score.

All on the tiny local BERT: a multi-label fixture whose labels are planted words, a 95/5 fixture whose rare class
can only be caught with class weights, and the binary sentiment fixture for ``top_k``.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FILLER, sentiment_overrides, sentiment_rows

import nlpkit
from nlpkit.config import load_config
from nlpkit.errors import ConfigError, DataError, UsageError
from nlpkit.plugins.sentiment import SentimentTask
from nlpkit.plugins.sentiment.task import class_weights
from nlpkit.plugins.sentiment.thresholds import tune_thresholds

# Each label is planted by one of its words; a text has each label with probability 0.4 (some have none).
CUES = {"anger": ["awful", "terrible"], "boredom": ["boring", "dull"], "joy": ["great", "wonderful"]}


def multi_label_rows(n: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [name for name in CUES if rng.random() < 0.4]
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 6))]
        for name in labels:
            words.insert(rng.randint(0, len(words)), rng.choice(CUES[name]))
        rows.append((" ".join(words), labels))
    return rows


def write_formats(folder: Path, splits: dict[str, list[tuple[str, list[str]]]]) -> dict[str, Path]:
    """The same multi-label data three ways: a list column (jsonl), a '|'-joined string (csv), 0/1 columns (csv)."""
    out = {}
    for form in ("lists", "joined", "columns"):
        (folder / form).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            texts = [t for t, _ in rows]
            if form == "lists":
                pd.DataFrame({"text": texts, "label": [labels for _, labels in rows]}).to_json(
                    folder / form / f"{split}.jsonl", orient="records", lines=True)
            elif form == "joined":
                pd.DataFrame({"text": texts, "label": ["|".join(labels) for _, labels in rows]}).to_csv(
                    folder / form / f"{split}.csv", index=False)
            else:
                pd.DataFrame({"text": texts, **{name: [int(name in labels) for _, labels in rows] for name in CUES}}
                             ).to_csv(folder / form / f"{split}.csv", index=False)
        out[form] = folder / form
    return out


FORM_OPTIONS = {"lists": {"problem_type": "auto"},
                "joined": {"problem_type": "multi_label", "data.label_delimiter": "|"},
                "columns": {"problem_type": "multi_label", "data.label_columns": list(CUES)}}


@pytest.fixture(scope="module")
def one_layer_bert(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bert's tokenizer with a 1-layer, width-64, 4-head encoder without dropout. The 2-layer width-32 one
    learns one planted label at a time (a multi-label head needs several directions at once) and often gets stuck
    on the first; this one learns all three in a few hundred updates."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("one-layer-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert / name).exists():
            shutil.copy(tiny_bert / name, out / name)
    vocab = json.loads((tiny_bert / "config.json").read_text())["vocab_size"]
    config = BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def multi_label_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    splits = {"train": multi_label_rows(320, 1), "validation": multi_label_rows(80, 2),
              "test": multi_label_rows(100, 3)}
    return write_formats(tmp_path_factory.mktemp("multi-label"), splits)


@pytest.fixture(scope="module")
def multi_label_run(one_layer_bert: Path, multi_label_data: dict[str, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs") / "multi-label"
    return nlpkit.train("sentiment", **sentiment_overrides(one_layer_bert, multi_label_data["joined"], out, **{
        **FORM_OPTIONS["joined"], "train.epochs": 16.0, "train.batch_size": 16, "train.lr": 2e-3,
        "train.eval_every": 80, "thresholds": "per_label"}))


def _task(**overrides: object) -> SentimentTask:
    return SentimentTask(load_config(SentimentTask.Config, None, {"trackers": [], **overrides}))


# ---------------------------------------------------------------------------------------------- multi-label data


def test_the_three_label_formats_give_the_same_targets(multi_label_data: dict[str, Path]) -> None:
    loaded = {form: _task(**{"data.source": str(path), **FORM_OPTIONS[form]}).load_data()
              for form, path in multi_label_data.items()}
    expected = [[int(name in labels) for name in CUES] for _, labels in multi_label_rows(100, 3)]
    for form, data in loaded.items():
        assert data.info.labels == list(CUES), form
        assert data.info.problem_type == "multi_label", form
        assert data.splits["test"]["labels"][:] == expected, form
        assert data.splits["train"].column_names == ["text", "labels"], form
        assert data.info.label_counts == loaded["lists"].info.label_counts
    # a list column under problem_type=single_label is refused with the fix; auto (the default) detects it
    with pytest.raises(ConfigError, match="holds lists.*problem_type=multi_label"):
        _task(**{"data.source": str(multi_label_data["lists"]), "problem_type": "single_label"}).load_data()


def test_multi_label_errors_name_the_row(tmp_path: Path) -> None:
    rows = multi_label_rows(40, 5)
    pd.DataFrame({"text": [t for t, _ in rows], "label": ["|".join(lab) for _, lab in rows]}).to_csv(
        tmp_path / "train.csv", index=False)
    test = pd.DataFrame({"text": ["a film", "a dull film"], "label": ["joy", "boredom|sadness"]})
    test.to_csv(tmp_path / "test.csv", index=False)
    test.to_csv(tmp_path / "validation.csv", index=False)
    with pytest.raises(DataError, match=r"validation\.csv line 3 \(row 2, validation split\): label 'sadness'.*"
                                          r"not one of the known"):
        _task(**{"data.source": str(tmp_path), **FORM_OPTIONS["joined"]}).load_data()
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"text": ["x", "y", "z"], "anger": [1, 0, 2], "joy": [0, 1, 0]}).to_csv(bad / "d.csv", index=False)
    for split in ("train", "validation", "test"):
        (bad / f"{split}.csv").write_text((bad / "d.csv").read_text())
    (bad / "d.csv").unlink()
    with pytest.raises(DataError, match=r"train\.csv line 4 \(row 3, train split\): label column 'anger' holds 2; "
                                          r"expected 0 or 1"):
        _task(**{"data.source": str(bad), "problem_type": "multi_label",
                 "data.label_columns": ["anger", "joy"]}).load_data()


def test_multi_hot_targets_stay_vectorized_at_scale() -> None:
    """A million rows of '|'-joined labels become multi-hot rows in seconds (Arrow and numpy, no row loop)."""
    from datasets import Dataset, DatasetDict

    from nlpkit.plugins.sentiment.labels import multi_hot, multi_label_names

    rng = np.random.default_rng(0)
    names = np.array(["anger", "boredom", "joy", "fear"])
    picks = rng.random((1_000_000, 4)) < 0.3
    joined = ["|".join(names[row]) for row in picks[:1000]] * 1000  # 1,000 patterns repeated: cheap to build
    ds = DatasetDict({"train": Dataset.from_dict({"text": ["t"] * len(joined), "label": joined})})
    start = time.perf_counter()
    labels = multi_label_names(ds["train"], column="label", delimiter="|")
    out = multi_hot(ds, labels, "big", column="label", delimiter="|")
    seconds = time.perf_counter() - start
    assert labels == sorted(names)
    hot = np.asarray(out["train"].with_format("numpy")["labels"][:1000])
    assert (hot == picks[:1000][:, np.argsort(names)]).all()
    assert seconds < 15, f"multi-hot of 1M rows took {seconds:.1f} s"


# ---------------------------------------------------------------------------------------------- multi-label model


def test_multi_label_learns_the_planted_labels(multi_label_run: dict) -> None:
    test = multi_label_run["test"]
    assert test["micro_f1"] >= 0.9, test
    assert test["macro_f1"] >= 0.85 and test["samples_f1"] >= 0.85
    assert test["subset_accuracy"] >= 0.7 and test["hamming_loss"] <= 0.1
    assert multi_label_run["main_metric"] == "micro_f1"  # the default `accuracy` means micro-F1 for multi-label
    assert test["labels"] == list(CUES) and len(test["thresholds"]) == 3


def test_thresholds_are_saved_and_used_by_the_pipeline(multi_label_run: dict, tmp_path: Path) -> None:
    import shutil

    run = Path(multi_label_run["run_dir"])
    descriptor = json.loads((run / "model" / "nlpkit_task.json").read_text())
    thresholds = descriptor["info"]["thresholds"]
    assert descriptor["info"]["problem_type"] == "multi_label" and len(thresholds) == 3
    assert all(0 < t < 1 for t in thresholds)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["decision_thresholds"] == dict(zip(CUES, thresholds))
    assert multi_label_run["test"]["thresholds"] == thresholds
    assert "decision thresholds" in multi_label_run["data_notes"]

    texts = [t for t, _ in multi_label_rows(30, 9)]
    pipe = nlpkit.pipeline(str(run), device="cpu")
    every = pipe(texts, top_k=None)
    got = pipe(texts)
    for labels, scores in zip(got, every):
        by_name = {s["label"]: s["score"] for s in scores}
        expected = [name for name, t in zip(CUES, thresholds) if by_name[name] >= t]
        assert sorted(p["label"] for p in labels) == sorted(expected)
        assert [p["score"] for p in labels] == sorted((p["score"] for p in labels), reverse=True)
    assert pipe("") == [] and pipe("a great film")[0]["label"] == "joy"
    # the pipeline reads the saved thresholds: raise them all to 0.99 in a copy and fewer labels come out
    copy = tmp_path / "model"
    shutil.copytree(run / "model", copy)
    descriptor["info"]["thresholds"] = [0.99] * 3
    (copy / "nlpkit_task.json").write_text(json.dumps(descriptor))
    strict = nlpkit.pipeline(str(copy), device="cpu")(texts)
    for labels, scores in zip(strict, every):
        assert [p["label"] for p in labels] == [s["label"] for s in scores if s["score"] >= 0.99]
    assert sum(map(len, strict)) < sum(map(len, got))


def test_multi_label_model_loads_in_plain_transformers(multi_label_run: dict) -> None:
    from transformers import pipeline

    model_dir = Path(multi_label_run["run_dir"]) / "model"
    assert json.loads((model_dir / "config.json").read_text())["problem_type"] == "multi_label_classification"
    hf = pipeline("text-classification", model=str(model_dir), top_k=None, device="cpu")
    ours = nlpkit.pipeline(str(model_dir), device="cpu")
    texts = ["the plot was dull and awful", "a great film", "the film"]
    for theirs, mine in zip(hf(texts), ours(texts, top_k=None)):
        assert [p["label"] for p in theirs] == [p["label"] for p in mine]
        assert [p["score"] for p in theirs] == pytest.approx([p["score"] for p in mine], abs=1e-5)
    best = {p["label"] for p in hf(["the plot was dull and awful"])[0] if p["score"] > 0.5}
    assert best == {"anger", "boredom"}


def test_multi_label_re_evaluates_and_reports(multi_label_run: dict) -> None:
    run = Path(multi_label_run["run_dir"])
    again = nlpkit.evaluate(str(run))
    assert again["micro_f1"] == pytest.approx(multi_label_run["test"]["micro_f1"])
    report = (run / "report.md").read_text()
    assert "## Per-class metrics (test)" in report and "threshold" in report
    assert "## Precision-recall curves (test)" in report and (run / "precision_recall.png").stat().st_size > 0
    saved = json.loads((run / "report.json").read_text())
    assert saved["test"]["per_class"]["support"] == [sum(name in lab for _, lab in multi_label_rows(100, 3))
                                                      for name in CUES]


def test_threshold_tuning_maximises_f1_and_prefers_one_half() -> None:
    # perfectly separated scores: every threshold in (0.2, 0.8] is best -> 0.5
    probs = np.array([[0.9, 0.1], [0.1, 0.85], [0.2, 0.15], [0.85, 0.2]])
    targets = np.array([[1, 0], [0, 1], [0, 0], [1, 0]])
    assert tune_thresholds(probs, targets) == [0.5, 0.5]
    # label 0's positives score 0.3-0.4, its negatives 0.1: only a low threshold finds them
    probs = np.array([[0.35, 0.9], [0.3, 0.1], [0.1, 0.8], [0.4, 0.2], [0.1, 0.1]])
    targets = np.array([[1, 1], [1, 0], [0, 1], [1, 0], [0, 0]])
    per_label = tune_thresholds(probs, targets, per_label=True)
    assert 0.1 < per_label[0] <= 0.3 and per_label[1] == 0.5
    glob = tune_thresholds(probs, targets)
    assert glob[0] == glob[1] and 0.1 < glob[0] <= 0.3  # one value for both, best micro-F1 (5/5 found, 0 wrong)


# ---------------------------------------------------------------------------------------------- class weights


def test_class_weights_auto_and_explicit() -> None:
    # 95/5: inverse frequency, normalised so the average weight over the examples is 1
    assert class_weights("auto", [380, 20], 400, multi_label=False) == [pytest.approx(400 / 760), 10.0]
    assert sum(w * n for w, n in zip(class_weights("auto", [380, 20], 400, False), [380, 20])) == pytest.approx(400)
    assert class_weights("auto", [100, 25], 200, multi_label=True) == [1.0, 7.0]  # negatives / positives
    assert class_weights([1, 3], [5, 5], 10, multi_label=False) == [1.0, 3.0]
    assert class_weights(None, [5, 5], 10, multi_label=False) is None
    with pytest.raises(ConfigError, match="3 values but there are 2 labels"):
        class_weights([1, 2, 3], [5, 5], 10, multi_label=False)
    with pytest.raises(ConfigError, match="train.class_weights='often'"):
        _task(**{"train.class_weights": "often"})


RARE_CUE = "superb"


def rare_rows(n_common: int, n_rare: int, seed: int, cue_twins: int = 0) -> list[tuple[str, str]]:
    """``n_common`` common texts without the cue word, ``n_rare`` rare texts with it, and ``cue_twins`` copies of
    every rare text labelled common. The twins make the cue ambiguous (a text with it is rare 1 time in
    ``1 + cue_twins``), and, being the very same texts, leave nothing else to learn: unweighted, the best guess
    for a text with the cue is `common` (the rare class is never predicted); weighted by inverse frequency, it
    is `rare`."""
    rng = random.Random(seed)

    def text(cue: bool) -> str:
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))]
        if cue:
            words.insert(rng.randint(0, len(words)), RARE_CUE)
        return " ".join(words)

    rare = [text(True) for _ in range(n_rare)]
    rows = [(text(False), "common") for _ in range(n_common)] + [(t, "rare") for t in rare]
    rows += [(t, "common") for t in rare for _ in range(cue_twins)]
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def rare_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_csv

    out = tmp_path_factory.mktemp("rare")
    write_csv(out / "train.csv", rare_rows(340, 20, seed=1, cue_twins=2))  # 5% rare
    write_csv(out / "validation.csv", rare_rows(85, 5, seed=2, cue_twins=2))
    write_csv(out / "test.csv", rare_rows(160, 20, seed=3) + [(t, "common") for t, _ in rare_rows(0, 20, seed=4)])
    return out


def test_a_rare_class_is_learned_with_class_weights_and_missed_without(tiny_bert: Path, rare_data: Path,
                                                                      tmp_path: Path) -> None:
    def train(weights: str | None) -> dict:
        return nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, rare_data, tmp_path / f"run-{weights}", **{
            "train.epochs": 8.0, "train.eval_every": 10**6, "train.class_weights": weights, "seed": 0}))["test"]

    plain, weighted = train(None), train("auto")
    rare = plain["labels"].index("rare")
    recall = {"plain": plain["per_class"]["recall"][rare], "weighted": weighted["per_class"]["recall"][rare]}
    print(f"rare-class recall: without weights {recall['plain']:.2f}, with {recall['weighted']:.2f}")
    assert recall["plain"] <= 0.2, plain["per_class"]  # the rare class is (almost) never predicted
    assert recall["weighted"] >= 0.8, weighted["per_class"]  # found, at the price of false alarms on the cue
    assert recall["weighted"] - recall["plain"] >= 0.6
    assert plain["balanced_accuracy"] <= 0.6 < 0.8 <= weighted["balanced_accuracy"]
    assert plain["accuracy"] >= 0.85  # plain accuracy hides the miss: the majority alone is 90% of the test set


# ---------------------------------------------------------------------------------------------- every score


@pytest.fixture(scope="module")
def binary_run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs") / "binary"
    return nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{"train.epochs": 4.0}))


def test_top_k_gives_every_score_best_first(binary_run: dict) -> None:
    from transformers import pipeline

    clf = nlpkit.pipeline(binary_run["run_dir"], device="cpu")
    texts = [t for t, _ in sentiment_rows(12, seed=4)] + [""]
    default = clf(texts)
    every = clf(texts, top_k=None)
    assert every == clf(texts, top_k=0) == clf(texts, top_k=5)  # 0 (the CLI's "all") and k > labels: every label
    for one, ranked in zip(default[:-1], every[:-1]):
        assert [p["label"] for p in ranked][0] == one["label"] and ranked[0]["score"] == pytest.approx(one["score"])
        assert sorted(p["label"] for p in ranked) == ["negative", "positive"]
        assert ranked[0]["score"] >= ranked[1]["score"] and sum(p["score"] for p in ranked) == pytest.approx(1.0)
    assert [r[:1] for r in every] == clf(texts, top_k=1)
    assert default[-1] == {"label": None, "score": None} and every[-1] == []
    hf = pipeline("text-classification", model=binary_run["run_dir"] + "/model", top_k=None, device="cpu")
    for theirs, mine in zip(hf(texts[:-1]), every[:-1]):
        assert [p["label"] for p in theirs] == [p["label"] for p in mine]
        assert [p["score"] for p in theirs] == pytest.approx([p["score"] for p in mine], abs=1e-5)
    for bad in (-1, "all", 1.5):
        with pytest.raises(UsageError, match="top_k"):
            clf(texts, top_k=bad)


def test_predict_file_with_top_k_writes_label_and_score_lists(binary_run: dict, tmp_path: Path) -> None:
    from nlpkit.cli import console_main

    rows = sentiment_rows(30, seed=8)
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(30), "text": [t for t, _ in rows]}).to_csv(src, index=False)
    console_main(["predict", binary_run["run_dir"], "--input", str(src), "--output", str(tmp_path / "all.csv"),
                  "--top-k", "0"])
    console_main(["predict", binary_run["run_dir"], "--input", str(src), "--output", str(tmp_path / "one.csv")])
    every, one = pd.read_csv(tmp_path / "all.csv"), pd.read_csv(tmp_path / "one.csv")
    assert list(every.columns) == ["id", "text", "labels", "scores"]
    assert list(one.columns) == ["id", "text", "label", "score"]
    labels, scores = every["labels"].map(json.loads), every["scores"].map(json.loads)
    assert all(sorted(x) == ["negative", "positive"] for x in labels)
    assert [x[0] for x in labels] == one["label"].tolist()
    assert [x[0] for x in scores] == pytest.approx(one["score"].tolist(), abs=1e-5)


def test_single_label_report_has_the_per_class_table_and_pr_curves(binary_run: dict) -> None:
    run = Path(binary_run["run_dir"])
    test = binary_run["test"]
    assert 0 <= test["balanced_accuracy"] <= 1 and test["macro_average_precision"] > 0.9
    assert test["per_class"]["support"] == [25, 25]  # the 50 test texts, half of each
    report = (run / "report.md").read_text()
    assert "## Per-class metrics (test)" in report and "| negative |" in report
    assert "## Precision-recall curves (test)" in report and (run / "precision_recall.png").stat().st_size > 0
    assert "## Confusion matrix (test)" in report
