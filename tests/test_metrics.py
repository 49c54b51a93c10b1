"""nlpkit's local `evaluate` modules (nlpkit/metrics/*) against hand-computed values.

Every expected number here is worked out by hand (or by the wrapped library's own reference function), so a
wrong feature spec, a swapped argument or a wrong average shows up as a wrong number, not just as a crash.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import evaluate
import pytest
import sacrebleu

from nlpkit.metrics import METRICS_DIR, available_metrics, compute, load_metric, metric_path

EXPECTED_METRICS = [
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "chrf",
    "confusion_matrix",
    "multilabel",
    "per_class",
    "perplexity",
    "precision_recall_f1",
    "sacrebleu",
    "word_analogy",
    "word_similarity",
]

# ---------------------------------------------------------------------------------------------- loading


def test_available_metrics_lists_every_module() -> None:
    # the core's modules, plus those the task plugins ship in their own metrics/ folders
    assert set(EXPECTED_METRICS) <= set(available_metrics())
    assert all(metric_path(n).parent.parent.parent.name == "plugins" for n in set(available_metrics())
               - set(EXPECTED_METRICS))
    for name in EXPECTED_METRICS:
        assert metric_path(name) == METRICS_DIR / name
        assert (METRICS_DIR / name / f"{name}.py").is_file()


def test_metric_path_normalizes_and_rejects_unknown_names() -> None:
    assert metric_path("Precision-Recall-F1").name == "precision_recall_f1"
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'.*sacrebleu.*word_similarity"):
        metric_path("bleu")
    for bad in ["", "../metrics", "__pycache__", "accuracy/accuracy"]:
        with pytest.raises(ValueError):
            metric_path(bad)


@pytest.mark.parametrize("name", EXPECTED_METRICS)
def test_module_info_is_complete(name: str) -> None:
    module = load_metric(name)
    assert isinstance(module, evaluate.Metric)
    info = module.info
    assert info.description.strip() and info.citation.strip() and info.inputs_description.strip()
    assert "Returns:" in info.inputs_description and "Args:" in info.inputs_description
    assert info.features  # a Features or a list of Features options


def test_plain_evaluate_load_of_the_folder_works() -> None:
    """The folders are ordinary evaluate modules: usable without nlpkit's helpers."""
    module = evaluate.load(str(metric_path("accuracy")))
    assert module.compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}


def test_load_metric_returns_independent_instances() -> None:
    first, second = load_metric("accuracy"), load_metric("accuracy")
    assert first is not second and type(first) is type(second)
    first.add_batch(predictions=[1, 1], references=[1, 1])
    # `second` must not see the rows buffered in `first`.
    assert second.compute(predictions=[0], references=[1]) == {"accuracy": 0.0}
    assert first.compute() == {"accuracy": 1.0}


# ------------------------------------------------------------------------------------------- classification


def test_accuracy_hand_values() -> None:
    assert compute("accuracy", predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == {"accuracy": 0.75}
    assert compute("accuracy", predictions=["fresh", "rotten"], references=["fresh", "fresh"]) == {
        "accuracy": 0.5
    }
    weighted = compute("accuracy", predictions=[1, 0], references=[1, 1], sample_weight=[3.0, 1.0])
    assert weighted["accuracy"] == pytest.approx(0.75)


# refs / preds for 3 classes, worked by hand:
#   class 0: tp=1 fp=1 fn=1 -> P=1/2  R=1/2  F1=1/2
#   class 1: tp=2 fp=1 fn=0 -> P=2/3  R=1    F1=4/5
#   class 2: tp=1 fp=0 fn=1 -> P=1    R=1/2  F1=2/3
PRF_REFS = [0, 0, 1, 1, 2, 2]
PRF_PREDS = [0, 1, 1, 1, 2, 0]
PER_CLASS_P, PER_CLASS_R, PER_CLASS_F = [1 / 2, 2 / 3, 1.0], [1 / 2, 1.0, 1 / 2], [1 / 2, 4 / 5, 2 / 3]


def test_macro_precision_recall_f1_hand_values() -> None:
    result = compute("precision_recall_f1", predictions=PRF_PREDS, references=PRF_REFS)
    assert set(result) == {"precision", "recall", "f1"}
    assert result["precision"] == pytest.approx(sum(PER_CLASS_P) / 3)
    assert result["recall"] == pytest.approx(sum(PER_CLASS_R) / 3)
    assert result["f1"] == pytest.approx(sum(PER_CLASS_F) / 3)


def test_precision_recall_f1_per_class_labels_and_zero_division() -> None:
    per_class = compute("precision_recall_f1", predictions=PRF_PREDS, references=PRF_REFS, average=None)
    assert per_class["precision"] == pytest.approx(PER_CLASS_P)
    assert per_class["recall"] == pytest.approx(PER_CLASS_R)
    assert per_class["f1"] == pytest.approx(PER_CLASS_F)
    # A class absent from both sides scores 0 (zero_division=0, no warning) and still counts in the mean.
    with_absent = compute(
        "precision_recall_f1", predictions=PRF_PREDS, references=PRF_REFS, labels=[0, 1, 2, 3]
    )
    assert with_absent["f1"] == pytest.approx(sum(PER_CLASS_F) / 4)
    micro = compute("precision_recall_f1", predictions=PRF_PREDS, references=PRF_REFS, average="micro")
    assert micro["f1"] == pytest.approx(4 / 6)  # micro F1 = accuracy for single-label data


def test_confusion_matrix_follows_label_order() -> None:
    refs, preds = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    default = compute("confusion_matrix", predictions=preds, references=refs)
    assert default == {"confusion_matrix": [[1, 1, 0], [0, 1, 0], [1, 0, 2]], "labels": [0, 1, 2]}
    reordered = compute("confusion_matrix", predictions=preds, references=refs, labels=[2, 0, 1, 3])
    assert reordered["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert reordered["labels"] == [2, 0, 1, 3]
    normalized = compute("confusion_matrix", predictions=preds, references=refs, normalize="true")
    assert normalized["confusion_matrix"][2] == pytest.approx([1 / 3, 0.0, 2 / 3])
    named = compute("confusion_matrix", predictions=["a", "b"], references=["b", "b"], labels=["b", "a"])
    assert named["confusion_matrix"] == [[1, 1], [0, 0]]


def test_balanced_accuracy_is_the_mean_recall() -> None:
    # always the majority class of a 95/5 split: accuracy 0.95, balanced accuracy 0.5
    refs = [0] * 19 + [1]
    assert compute("accuracy", predictions=[0] * 20, references=refs)["accuracy"] == pytest.approx(0.95)
    assert compute("balanced_accuracy", predictions=[0] * 20, references=refs) == {"balanced_accuracy": 0.5}
    # recalls 1/2, 1, 1/2 (see PRF_* below)
    assert compute("balanced_accuracy", predictions=[0, 1, 1, 1, 2, 0], references=[0, 0, 1, 1, 2, 2])[
        "balanced_accuracy"] == pytest.approx(2 / 3)


def test_per_class_single_label_and_multi_hot() -> None:
    got = compute("per_class", predictions=PRF_PREDS, references=PRF_REFS, labels=[0, 1, 2, 3])
    assert got["precision"] == pytest.approx(PER_CLASS_P + [0.0])
    assert got["recall"] == pytest.approx(PER_CLASS_R + [0.0])
    assert got["f1"] == pytest.approx(PER_CLASS_F + [0.0])
    assert got["support"] == [2, 2, 2, 0]  # a class absent from the references keeps its row
    # multi-hot rows: label 0 tp=1 fp=1 fn=0; label 1 tp=1 fp=0 fn=1; label 2 never true, never predicted
    hot = compute("per_class", predictions=[[1, 1, 0], [1, 0, 0]], references=[[1, 1, 0], [0, 1, 0]])
    assert hot == {"precision": [0.5, 1.0, 0.0], "recall": [1.0, 0.5, 0.0], "f1": pytest.approx([2 / 3, 2 / 3, 0.0]),
                   "support": [1, 2, 0]}


def test_multilabel_hand_values() -> None:
    refs = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
    preds = [[1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]]
    got = compute("multilabel", predictions=preds, references=refs)
    # decisions: tp=4 (r0 l0, r1 l1, r2 l0, r2 l1), fp=1 (r2 l2), fn=1 (r0 l2)
    assert got["micro_precision"] == pytest.approx(4 / 5) and got["micro_recall"] == pytest.approx(4 / 5)
    assert got["micro_f1"] == pytest.approx(4 / 5)
    # per label F1: l0 = 1, l1 = 1, l2: tp=0 -> 0
    assert got["macro_f1"] == pytest.approx(2 / 3)
    # per example F1: 2/3, 1, 4/5, and 1 for the row with no true and no predicted label (exactly right)
    assert got["samples_f1"] == pytest.approx((2 / 3 + 1 + 4 / 5 + 1) / 4)
    missed = compute("multilabel", predictions=[[0, 0], [1, 0]], references=[[1, 0], [0, 0]])
    assert missed["samples_f1"] == 0.0  # a label missed, a label invented: both rows score 0
    assert got["subset_accuracy"] == pytest.approx(2 / 4)  # rows 1 and 3 are exactly right
    assert got["hamming_loss"] == pytest.approx(2 / 12)
    with pytest.raises(ValueError, match="one width"):
        load_metric("multilabel")._compute(predictions=[[1, 0]], references=[[1, 0, 0]])


def test_average_precision_single_and_multi_label() -> None:
    # class 1 ranked perfectly (AP 1); class 0: its two examples ranked 1st and 3rd -> AP (1 + 2/3) / 2
    scores = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]
    got = compute("average_precision", prediction_scores=scores, references=[0, 1, 0, 1])
    assert got["average_precision"] == pytest.approx([1.0, 1.0])
    got = compute("average_precision", prediction_scores=scores, references=[0, 1, 1, 0])
    assert got["average_precision"][0] == pytest.approx((1 + 2 / 3) / 2)
    hot = compute("average_precision", prediction_scores=[[0.9, 0.2], [0.1, 0.3]], references=[[1, 0], [0, 0]])
    assert hot["average_precision"] == [1.0, None]  # a label that never occurs has no AP, and stays out of the mean
    assert hot["macro_average_precision"] == 1.0


# ---------------------------------------------------------------------------------------------- translation


def test_sacrebleu_identical_sentence_is_100() -> None:
    result = compute(
        "sacrebleu", predictions=["the cat sat on the mat"], references=["the cat sat on the mat"]
    )
    assert result["score"] == pytest.approx(100.0)
    assert result["bp"] == 1.0 and result["counts"] == [6, 5, 4, 3] and result["totals"] == [6, 5, 4, 3]
    assert result["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_sacrebleu_hand_computed_ngram_precisions() -> None:
    # hyp "the cat sat on a mat" vs ref "the cat sat on the mat":
    # matching 1..4-grams 5/6, 3/5, 2/4, 1/3; equal lengths, so BP = 1.
    result = compute("sacrebleu", predictions=["the cat sat on a mat"], references=["the cat sat on the mat"])
    assert result["counts"] == [5, 3, 2, 1] and result["totals"] == [6, 5, 4, 3]
    expected = 100 * math.exp(sum(math.log(p) for p in [5 / 6, 3 / 5, 2 / 4, 1 / 3]) / 4)
    assert result["score"] == pytest.approx(expected)


def test_sacrebleu_several_references_and_options() -> None:
    hyps = ["the cat sat on the mat", "a quick brown fox jumps"]
    refs = [
        ["the cat is on the mat", "a cat sat on the mat"],
        ["the quick brown fox jumps", "a fast brown fox leaps"],
    ]
    ours = compute("sacrebleu", predictions=hyps, references=refs)
    theirs = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [r[1] for r in refs]])
    assert ours["score"] == pytest.approx(theirs.score)
    assert ours["signature"].startswith("nrefs:2|")
    # Ragged reference lists are padded with None, which sacreBLEU ignores.
    ragged = compute("sacrebleu", predictions=hyps, references=[refs[0], refs[1][:1]])
    theirs = sacrebleu.corpus_bleu(hyps, [[refs[0][0], refs[1][0]], [refs[0][1], None]])
    assert ragged["score"] == pytest.approx(theirs.score)
    assert ragged["signature"].startswith("nrefs:var|")
    lowered = compute(
        "sacrebleu", predictions=["The Cat Sat On The Mat"], references=["the cat sat on the mat"]
    )
    assert lowered["score"] < 100
    lowered = compute(
        "sacrebleu",
        predictions=["The Cat Sat On The Mat"],
        references=["the cat sat on the mat"],
        lowercase=True,
    )
    assert lowered["score"] == pytest.approx(100.0) and "case:lc" in lowered["signature"]
    char = compute("sacrebleu", predictions=hyps[:1], references=refs[0][:1], tokenize="char")
    assert "tok:char" in char["signature"]


def test_chrf_matches_sacrebleu_corpus_chrf() -> None:
    hyps = ["the cat sat on the mat", "le chat est assis"]
    refs = ["the cat is on the mat", "le chat s'est assis"]
    ours = compute("chrf", predictions=hyps, references=refs)
    assert ours["score"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert ours["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|")
    plus = compute("chrf", predictions=hyps, references=[[r] for r in refs], word_order=2)
    assert plus["score"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score)
    assert "nw:2" in plus["signature"] and plus["word_order"] == 2
    identical = compute("chrf", predictions=["same text"], references=["same text"])
    assert identical["score"] == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------------- generation


def test_perplexity_is_token_weighted() -> None:
    # 1 token with nll 2.0 and 2 tokens with total nll 4.0: 3 tokens, 6.0 nats -> loss 2.0, ppl e^2.
    result = compute("perplexity", nll_sum=[2.0, 4.0], n_tokens=[1, 2])
    assert result == {"perplexity": pytest.approx(math.e**2), "loss": pytest.approx(2.0), "tokens": 3}
    # Not the mean of per-example perplexities (e^2 and e^0.5 would average to something else).
    uneven = compute("perplexity", nll_sum=[2.0, 1.0], n_tokens=[1, 2])
    assert uneven["loss"] == pytest.approx(1.0) and uneven["perplexity"] == pytest.approx(math.e)
    with pytest.raises(ValueError, match="no scored tokens"):
        compute("perplexity", nll_sum=[0.0], n_tokens=[0])


# ---------------------------------------------------------------------------------------------- word vectors


def test_word_similarity_monotone_and_oov() -> None:
    monotone = compute("word_similarity", predictions=[0.1, 0.2, 0.5, 0.9], references=[1.0, 3.0, 4.0, 9.5])
    assert monotone["spearman"] == pytest.approx(1.0)
    assert monotone["oov_rate"] == 0.0 and monotone["pairs"] == 4
    reversed_ = compute("word_similarity", predictions=[0.9, 0.5, 0.2, 0.1], references=[1.0, 3.0, 4.0, 9.5])
    assert reversed_["spearman"] == pytest.approx(-1.0)
    nan = float("nan")
    with_oov = compute(
        "word_similarity", predictions=[0.1, nan, 0.5, None, 0.9], references=[1.0, 7.0, 2.0, 8.0, 4.0]
    )
    assert with_oov["oov_rate"] == pytest.approx(2 / 5) and with_oov["pairs"] == 3
    assert with_oov["spearman"] == pytest.approx(1.0)
    # Pearson on the 3 kept pairs (0.1, 1), (0.5, 2), (0.9, 4), by hand:
    # centered x = -.4, 0, .4; centered y = -4/3, -1/3, 5/3.
    cov, var_y = (0.4 * 4 / 3 + 0.4 * 5 / 3), (16 + 1 + 25) / 9
    assert with_oov["pearson"] == pytest.approx(cov / math.sqrt(0.32 * var_y))
    too_few = compute("word_similarity", predictions=[0.3, nan], references=[1.0, 2.0])
    assert math.isnan(too_few["spearman"]) and too_few["pairs"] == 1 and too_few["oov_rate"] == 0.5


def test_word_analogy_counts_oov_separately() -> None:
    result = compute(
        "word_analogy",
        predictions=["queen", "", "paris", "rome", None],
        references=["queen", "berlin", "Paris", "madrid", "tokyo"],
    )
    # 3 answered, 2 correct ("Paris" matches "paris" case-insensitively); 2 of 5 questions unanswered.
    assert result == {
        "accuracy": pytest.approx(2 / 3),
        "accuracy_all": pytest.approx(2 / 5),
        "oov_rate": pytest.approx(2 / 5),
        "questions": 5,
        "answered": 3,
    }
    strict = compute("word_analogy", predictions=["paris"], references=["Paris"], ignore_case=False)
    assert strict["accuracy"] == 0.0
    nothing = compute("word_analogy", predictions=["", ""], references=["a", "b"])
    assert nothing["accuracy"] == 0.0 and nothing["oov_rate"] == 1.0


# ---------------------------------------------------------------------------------------------- add_batch

# name -> (first batch, second batch, compute kwargs); the batches hold the metric's input columns.
BATCHED_CASES: dict[str, tuple[dict[str, list], dict[str, list], dict[str, Any]]] = {
    "accuracy": (
        {"predictions": [0, 1, 1], "references": [0, 1, 0]},
        {"predictions": [2], "references": [2]},
        {},
    ),
    "precision_recall_f1": (
        {"predictions": PRF_PREDS[:4], "references": PRF_REFS[:4]},
        {"predictions": PRF_PREDS[4:], "references": PRF_REFS[4:]},
        {},
    ),
    "confusion_matrix": (
        {"predictions": [0, 1], "references": [0, 0]},
        {"predictions": [2, 1], "references": [2, 1]},
        {"labels": [2, 1, 0]},
    ),
    "balanced_accuracy": (
        {"predictions": [0, 1, 1], "references": [0, 1, 0]},
        {"predictions": [2], "references": [2]},
        {},
    ),
    "per_class": (
        {"predictions": PRF_PREDS[:4], "references": PRF_REFS[:4]},
        {"predictions": PRF_PREDS[4:], "references": PRF_REFS[4:]},
        {"labels": [0, 1, 2]},
    ),
    "multilabel": (
        {"predictions": [[1, 0, 0], [0, 1, 0]], "references": [[1, 0, 1], [0, 1, 0]]},
        {"predictions": [[1, 1, 1]], "references": [[1, 1, 0]]},
        {},
    ),
    "average_precision": (
        {"prediction_scores": [[0.9, 0.1], [0.2, 0.8]], "references": [0, 1]},
        {"prediction_scores": [[0.6, 0.4], [0.3, 0.7]], "references": [1, 0]},
        {},
    ),
    "sacrebleu": (
        {"predictions": ["the cat sat on a mat"], "references": [["the cat sat on the mat", "a cat sat"]]},
        {"predictions": ["a dog ran home"], "references": [["the dog ran home", "a dog went home"]]},
        {},
    ),
    "chrf": (
        {"predictions": ["the cat sat on a mat"], "references": ["the cat sat on the mat"]},
        {"predictions": ["a dog ran home"], "references": ["the dog ran home"]},
        {"word_order": 2},
    ),
    "perplexity": ({"nll_sum": [2.0, 4.5], "n_tokens": [1, 3]}, {"nll_sum": [0.5], "n_tokens": [2]}, {}),
    "word_similarity": (
        {"predictions": [0.1, float("nan")], "references": [1.0, 2.0]},
        {"predictions": [0.7, 0.4], "references": [3.0, 5.0]},
        {},
    ),
    "word_analogy": (
        {"predictions": ["queen", ""], "references": ["queen", "man"]},
        {"predictions": ["paris"], "references": ["rome"]},
        {},
    ),
}


def test_batched_cases_cover_every_metric() -> None:
    assert sorted(BATCHED_CASES) == EXPECTED_METRICS


@pytest.mark.parametrize("name", EXPECTED_METRICS)
def test_add_batch_twice_equals_one_compute(name: str) -> None:
    first, second, kwargs = BATCHED_CASES[name]
    whole = {key: first[key] + second[key] for key in first}
    expected = load_metric(name).compute(**whole, **kwargs)

    module = load_metric(name)
    module.add_batch(**first)
    module.add_batch(**second)
    got = module.compute(**kwargs)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, nan_ok=True), key
        else:
            assert got[key] == value, key


# ---------------------------------------------------------------------------------------------- concurrency

_LOAD_ALL = textwrap.dedent(
    """
    import importlib.util, pathlib, sys, time
    barrier, rank, world, init = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    # Run nlpkit/metrics/__init__.py alone (it needs only evaluate): nlpkit/__init__'s imports would slow us.
    spec = importlib.util.spec_from_file_location("nlpkit_metrics_alone", init)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    (barrier / rank).touch()  # importing evaluate is slow: start loading only once every process is ready
    deadline = time.time() + 60
    while len(list(barrier.iterdir())) < world and time.time() < deadline:
        time.sleep(0.002)
    for name in m.available_metrics():
        m.load_metric(name)
    assert m.compute("accuracy", predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}
    print("ok")
    """
)


@pytest.mark.multiproc
def test_concurrent_first_loads_offline(tmp_path: Path) -> None:
    """Two offline processes loading every module at once into an empty modules cache both succeed."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    world, init_file = 2, METRICS_DIR / "__init__.py"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOAD_ALL, str(barrier), str(rank), str(world), str(init_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert out.strip().endswith("ok"), out
    copied = {p.name for p in (tmp_path / "modules" / "evaluate_modules" / "metrics").iterdir() if p.is_dir()}
    assert copied == set(available_metrics())  # the core's and the plugins' modules
