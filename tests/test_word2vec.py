"""word2vec end to end on tiny planted corpora: learning, reproducibility, continued training, formats,
pipeline, errors, benchmark scoring (checked against gensim's own) and the sentiment baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sentiment_rows, write_csv
from tiny_word2vec import GROUPS, planted_texts, w2v_overrides, write_corpus_file

import nlpkit
from nlpkit.config import ConfigError, load_config
from nlpkit.data import DataError
from nlpkit.plugins.word2vec import UnknownWordError
from nlpkit.registry import get_task

# Planted pairs: the two words of a pair are interchangeable (each appears only in its pair's own
# contexts), so each one's nearest neighbour must be the other.
PAIRS = {("alpha", "omega"): ["greek", "letter", "symbol"], ("salt", "pepper"): ["kitchen", "spice", "shaker"],
         ("bread", "butter"): ["bakery", "breakfast", "toast"]}


def pair_texts(n: int, seed: int = 1) -> list[str]:
    import random

    rng = random.Random(seed)
    texts = planted_texts(n, seed)
    for i in range(n // 2):
        (a, b), ctx = list(PAIRS.items())[i % len(PAIRS)]
        words = rng.sample(ctx, 3) + [rng.choice([a, b])] + rng.sample(["the", "a", "and", "of", "is"], 2)
        rng.shuffle(words)
        texts.append(" ".join(words) + ".")
    rng.shuffle(texts)
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus_file(tmp_path_factory.mktemp("w2v-data") / "corpus.txt", pair_texts(800))


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    # deterministic (one thread, fixed seed and hashing): two racing threads made the planted neighbours flaky
    return nlpkit.train("word2vec", **w2v_overrides(corpus, tmp_path_factory.mktemp("runs") / "w2v",
                                                    **{"train.deterministic": True}))


def test_planted_pairs_and_groups_are_nearest(trained: dict) -> None:
    pipe = nlpkit.pipeline(trained["run_dir"])
    for a, b in PAIRS:
        assert pipe(a, topn=1)[0]["word"] == b, f"{a}: {pipe(a, topn=3)}"
        assert pipe(b, topn=1)[0]["word"] == a
    for words in GROUPS.values():
        for w in words:
            top = [n["word"] for n in pipe(w, topn=5)]
            assert sum(t in words for t in top) >= 4, f"{w}: {top}"


def test_run_folder_and_formats(trained: dict) -> None:
    """Every format is written and loads with plain gensim / safetensors to the same vectors; no vectors.kv
    pickle is written, and the temporary files of the atomic writes are gone."""
    from gensim.models import KeyedVectors, Word2Vec
    from safetensors.numpy import load_file

    run = Path(trained["run_dir"])
    model_dir = run / "model"
    for name in ("report.json", "report.md", "config.yaml", "pca_words.png", "corpus.txt", "model/word2vec.model",
                 "model/vectors.safetensors", "model/vocab.json", "model/vectors.txt", "model/vectors.bin",
                 "model/nlpkit_task.json"):
        assert (run / name).exists(), name
    assert not (model_dir / "vectors.kv").exists()
    assert not [p.name for p in model_dir.iterdir() if p.name.endswith(".tmp")]
    kv = nlpkit.pipeline(str(run)).task.model
    full = Word2Vec.load(str(model_dir / "word2vec.model"))  # plain gensim: no nlpkit objects pickled
    vocab = json.loads((model_dir / "vocab.json").read_text())
    assert vocab["words"] == kv.index_to_key == full.wv.index_to_key
    assert vocab["counts"] == [full.wv.get_vecattr(w, "count") for w in full.wv.index_to_key]
    assert np.array_equal(load_file(str(model_dir / "vectors.safetensors"))["vectors"], full.wv.vectors)
    txt = KeyedVectors.load_word2vec_format(str(model_dir / "vectors.txt"))
    binary = KeyedVectors.load_word2vec_format(str(model_dir / "vectors.bin"), binary=True)
    assert full.hashfxn is hash
    for other in (txt, binary, full.wv):
        assert other.index_to_key == kv.index_to_key
        np.testing.assert_allclose(other.vectors, kv.vectors, atol=1e-5)
    report = json.loads((run / "report.json").read_text())
    assert report["main_metric"] == "analogy_accuracy"
    assert {"wordsim353_spearman", "simlex999_spearman", "analogy_oov_rate"} <= set(report["test"])
    assert report["training"]["vocab_size"] == len(kv) and report["training"]["words_per_s"] > 0
    md = (run / "report.md").read_text()
    assert "Nearest neighbours of probe words" in md and "pca_words.png" in md
    assert "library_name: gensim" in (model_dir / "README.md").read_text()


def test_pipeline_modes(trained: dict) -> None:
    pipe = nlpkit.pipeline(trained["run_dir"])
    task = pipe.task
    vec = pipe("cat", mode="vector")
    assert len(vec) == 16 and np.allclose(vec, task.model["cat"])
    assert pipe("CAT", mode="vector") == vec  # normalised like the training text
    same, other = pipe(["cat dog", ("cat", "apple")], mode="similarity")
    assert same > other
    answer = pipe("cat dog apple", mode="analogy", topn=3)
    assert len(answer) == 3 and not {"cat", "dog", "apple"} & {a["word"] for a in answer}
    assert answer == task.analogy("cat", "dog", "apple", topn=3)
    text = pipe("The cat and the DOG! zzzunknown", mode="text")
    np.testing.assert_allclose(text, np.mean([task.model[w] for w in ("the", "cat", "and", "the", "dog")], 0),
                               rtol=1e-5)
    assert pipe("zzz qqq", mode="text") is None
    with pytest.raises(ValueError, match="mode"):
        pipe("cat", mode="nope")


def test_unknown_word_message(trained: dict) -> None:
    pipe = nlpkit.pipeline(trained["run_dir"])
    with pytest.raises(KeyError) as info:
        pipe("catt")
    err = info.value
    assert isinstance(err, UnknownWordError) and err.word == "catt"
    assert str(err).startswith("'catt' is not in the vocabulary") and "cat" in err.suggestions


def test_evaluate_reloads_the_same_scores(trained: dict) -> None:
    again = nlpkit.evaluate(trained["run_dir"])
    for key, value in trained["test"].items():
        if isinstance(value, float) and not np.isnan(value):
            assert again[key] == pytest.approx(value), key


def test_reproducible_mode_gives_identical_vectors(corpus: Path, tmp_path: Path) -> None:
    """Two deterministic runs give bit-identical vectors, also in another process with another hash seed."""
    det = {"train.deterministic": True, "w2v.epochs": 5, "w2v.sample": 1e-3}
    runs = [nlpkit.train("word2vec", **w2v_overrides(corpus, tmp_path / f"r{i}", **det)) for i in range(2)]
    a, b = (nlpkit.pipeline(r["run_dir"]).task.model for r in runs)
    assert runs[0]["training"]["workers"] == 1
    assert a.index_to_key == b.index_to_key and np.array_equal(a.vectors, b.vectors)
    # a fresh interpreter with a different PYTHONHASHSEED (Python's hash() differs) trains the same vectors
    code = ("import sys, nlpkit, json; sys.path.insert(0, 'tests'); from tiny_word2vec import w2v_overrides; "
            "from pathlib import Path; "
            f"nlpkit.train('word2vec', **w2v_overrides(Path({str(corpus)!r}), Path({str(tmp_path / 'r2')!r}), "
            f"**{det!r}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])
    c = nlpkit.pipeline(str(tmp_path / "r2")).task.model
    assert a.index_to_key == c.index_to_key and np.array_equal(a.vectors, c.vectors)


def test_continued_training_grows_the_vocabulary(trained: dict, tmp_path: Path) -> None:
    new = [f"the zebra and the lion {w} giraffe" for w in GROUPS["animals"]] * 20
    data = write_corpus_file(tmp_path / "more.txt", new)
    before = trained["training"]["vocab_size"]
    report = nlpkit.train("word2vec", **w2v_overrides(data, tmp_path / "more", init_from=trained["run_dir"],
                                                      **{"w2v.epochs": 3}))
    assert report["training"]["vocab_size"] == before + 3 == before + report["training"]["vocab_added"]
    pipe = nlpkit.pipeline(report["run_dir"])
    assert len(pipe("zebra", mode="vector")) == 16
    assert pipe("cat", mode="vector")  # old words are kept
    with pytest.raises(FileNotFoundError, match="full word2vec model"):
        nlpkit.train("word2vec", **w2v_overrides(data, tmp_path / "x", init_from=str(tmp_path / "nothing")))


@pytest.mark.parametrize("kind", ["empty", "binary", "latin1", "no-words"])
def test_bad_corpus_gives_a_clear_error(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "latin1":
        path.write_bytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1"))
    else:
        path.write_text("!!! ... ???\n--- ***\n")
    with pytest.raises(DataError) as info:
        nlpkit.train("word2vec", **w2v_overrides(path, tmp_path / "run"))
    msg = str(info.value)
    assert str(path) in msg
    expected = {"empty": "empty", "binary": "binary", "latin1": "UTF-8", "no-words": "no words"}[kind]
    assert expected in msg


def test_cli_reports_bad_corpus_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nlpkit.cli import main

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        main("word2vec", [f"data.source={empty}", f"output_dir={tmp_path / 'run'}", "reference_vectors="])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error:") and str(empty) in err[-1] and "is empty" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="no training objective"):
        nlpkit.train("word2vec", **{"w2v.negative": 0, "w2v.hs": False})
    with pytest.raises(ConfigError, match="w2v.epochs"):
        nlpkit.train("word2vec", **{"train.epochs": 3.0})
    with pytest.raises(ConfigError, match="kind"):
        nlpkit.train("word2vec", **{"w2v.kind": "glove"})


def test_fasttext_answers_unseen_words(corpus: Path, tmp_path: Path) -> None:
    report = nlpkit.train("word2vec", **w2v_overrides(corpus, tmp_path / "ft", **{
        "w2v.kind": "fasttext", "w2v.bucket": 5000, "w2v.epochs": 10}))
    pipe = nlpkit.pipeline(report["run_dir"])
    assert "catss" not in pipe.task.model.key_to_index
    assert len(pipe("catss", mode="vector")) == 16  # from character n-grams, no error
    assert pipe("cat", topn=1)[0]["word"] in GROUPS["animals"]
    # the saved n-gram vectors answer an unseen word exactly as the trained model did
    from gensim.models import FastText

    trained_ft = FastText.load(str(Path(report["run_dir"]) / "model/word2vec.model"))
    np.testing.assert_allclose(pipe("catss", mode="vector"), trained_ft.wv["catss"], rtol=1e-6)


def test_benchmark_scores_equal_gensims(tmp_path: Path) -> None:
    """Our batched benchmark code gives gensim's evaluate_word_analogies / evaluate_word_pairs numbers."""
    from gensim.models import KeyedVectors

    from nlpkit.plugins.word2vec.benchmarks import benchmark_vectors, load_analogies, load_word_pairs
    from nlpkit.plugins.word2vec.catalog import gensim_benchmark_path

    rng = np.random.default_rng(0)
    questions = load_analogies()
    words = sorted({w for q in questions for w in (q.a, q.b, q.c, q.expected)}
                   | {w for name in ("wordsim353", "simlex999") for p in load_word_pairs(name) for w in p[:2]})
    words = [w for i, w in enumerate(words) if i % 7]  # leave some words out: OOV handling is compared too
    vecs = {w: rng.normal(size=24) for w in words}
    # plant the capital -> country relation so a real share of analogies is answered right
    shift = rng.normal(size=24) * 2
    for q in questions:
        if q.section.startswith("capital") and q.a in vecs and q.b in vecs:
            vecs[q.b] = vecs[q.a] + shift + rng.normal(size=24) * 0.05
    kv = KeyedVectors(24)
    kv.add_vectors(list(vecs), np.array(list(vecs.values()), dtype=np.float32))
    ours = benchmark_vectors(kv)
    score, _ = kv.evaluate_word_analogies(str(gensim_benchmark_path("google-analogies")))
    assert ours["analogy_accuracy"] > 0.05
    assert ours["analogy_accuracy"] == pytest.approx(score, abs=1e-9)
    for name in ("wordsim353", "simlex999"):
        pearson, spearman, oov = kv.evaluate_word_pairs(str(gensim_benchmark_path(name)))
        assert ours[f"{name}_spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
        assert ours[f"{name}_oov_rate"] * 100 == pytest.approx(oov, abs=1e-9)


def test_sentiment_baseline_beats_chance(tmp_path: Path) -> None:
    """Vectors trained on the unlabelled sentiment texts + logistic regression, on the sentiment split."""
    from nlpkit.plugins.word2vec.baseline import run_baseline

    rows = sentiment_rows(600, seed=1)
    data = tmp_path / "sent.csv"
    write_csv(data, rows)
    texts = write_corpus_file(tmp_path / "texts.txt", [t for t, _ in rows])
    w2v = nlpkit.train("word2vec", **w2v_overrides(texts, tmp_path / "vec", **{"w2v.vector_size": 32}))
    report = run_baseline(w2v["run_dir"], overrides={"data.source": str(data)}, output_dir=str(tmp_path / "bl"))
    assert report["task"] == "sentiment" and report["model"] == f"word-vectors:{w2v['run_dir']}"
    assert report["test"]["accuracy"] >= 0.75, report["test"]
    assert {"macro_f1", "macro_precision", "macro_recall", "confusion_matrix"} <= set(report["test"])
    # the split is the sentiment task's: same sizes as its own load_data with the same settings
    sentiment = get_task("sentiment")
    ds = sentiment(load_config(sentiment.Config, None, {"data.source": str(data)})).load_data().splits
    assert report["data_sizes"] == {k: len(v) for k, v in ds.items()}
    assert (tmp_path / "bl/report.md").exists()


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(get_task("word2vec").presets()))
def test_presets_are_valid(name: str) -> None:
    """Every preset loads, passes the checks, and says how to launch it."""
    from nlpkit.plugins.word2vec import Word2VecConfig, check_config

    preset = get_task("word2vec").presets()[name]
    check_config(load_config(Word2VecConfig, preset))
    assert f"tasks/word2vec.py {name}" in preset.read_text()


@pytest.mark.multiproc
def test_two_processes_train_once(corpus: Path, tmp_path: Path) -> None:
    """Under 2 accelerate processes the main process trains and the other waits: one corpus, one report."""
    run = tmp_path / "run"
    overrides = [f"{k}={json.dumps(v) if isinstance(v, list) else v}"
                 for k, v in w2v_overrides(corpus, run, **{"w2v.epochs": 3}).items()]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           "29547", str(REPO / "tasks/word2vec.py"), *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["training"]["processes"] == 2
    assert proc.stderr.count("Tokenizing: 100%") == 1  # only one process read and tokenized the corpus
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "config.yaml", "corpus.txt", "model", "pca_words.png", "report.json", "report.md"]


@pytest.mark.slow
def test_default_run_on_news_articles(tmp_path: Path) -> None:
    """The default config on the real corpus (a few minutes on 2 cores): beats chance clearly on every
    benchmark and is reported beside GloVe."""
    report = nlpkit.train("word2vec", output_dir=str(tmp_path / "run"))
    test, ref = report["test"], report["reference"]["test"]
    assert report["training"]["corpus_words"] > 2_000_000
    # measured on the default run: analogy 0.12 (54% of questions OOV), WordSim353 0.49, SimLex-999 0.25
    assert test["analogy_accuracy"] > 0.08 and test["wordsim353_spearman"] > 0.4
    assert test["simlex999_spearman"] > 0.1
    assert ref["analogy_accuracy"] > 0.4  # glove-6b-50d
    pipe = nlpkit.pipeline(report["run_dir"])
    assert {"lawmakers", "congressional", "legislature"} & {n["word"] for n in pipe("congress", topn=10)}
