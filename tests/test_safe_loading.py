"""Loading someone else's run never runs their code.

Each crafted file below writes a marker file when it is loaded the unsafe way (unpickled, or its Python module
imported). nlpkit must refuse it with a clear error and the marker must not exist; where there is an opt-in,
the same file then loads and the marker appears, which proves the test can fail.
"""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import sentiment_overrides
from tiny_word2vec import planted_texts, w2v_overrides, write_corpus_file

import nlpkit
from nlpkit.errors import UnsafeFileError
from nlpkit.plugins.word2vec.vectors import is_own_pickle


class Touch:
    """Unpickles by calling ``exec`` (a builtin, so no module of this test is needed) on code that creates
    ``marker``: what a malicious pickle does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return builtins.exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)


def crafted_kv(path: Path, marker: Path) -> None:
    """A real gensim KeyedVectors pickle with one extra attribute that runs code when unpickled."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(4)
    kv.add_vectors(["cat", "dog", "car"], np.eye(3, 4, dtype=np.float32))
    kv.payload = Touch(marker)
    kv.save(str(path))


def crafted_run(root: Path, marker: Path, *, with_bin: bool = False) -> Path:
    """A folder laid out like an nlpkit word2vec run saved before vectors.safetensors existed: model/ holds a
    (crafted) vectors.kv and word2vec.model and a descriptor whose saved config claims trust_pickle=true."""
    model = root / "model"
    model.mkdir(parents=True)
    crafted_kv(model / "vectors.kv", marker)
    (model / "word2vec.model").write_bytes(pickle.dumps(Touch(marker)))
    if with_bin:
        from gensim.models import KeyedVectors

        kv = KeyedVectors(4)
        kv.add_vectors(["cat", "dog", "car"], np.eye(3, 4, dtype=np.float32))
        kv.save_word2vec_format(str(model / "vectors.bin"), binary=True)
    descriptor = {"task": "word2vec", "config": {"task": "word2vec", "trust_pickle": True}, "info": {},
                  "kind": "word2vec"}
    (model / "nlpkit_task.json").write_text(json.dumps(descriptor))
    return root


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran"


# --------------------------------------------------------------------------------------------- word2vec


def test_crafted_word2vec_run_is_refused_and_loads_only_with_trust_pickle(tmp_path: Path, marker: Path) -> None:
    run = crafted_run(tmp_path / "run", marker)
    for load in (lambda: nlpkit.pipeline(str(run)), lambda: nlpkit.evaluate(str(run)),
                 lambda: nlpkit.pipeline("word2vec", model=str(run / "model" / "vectors.kv"))):
        with pytest.raises(UnsafeFileError) as info:
            load()
        msg = str(info.value)
        assert "vectors.kv" in msg and "pickle" in msg and "trust_pickle=true" in msg
        assert "trust_pickle=True" in msg  # the Python spelling of the opt-in too
        assert not marker.exists(), "a crafted pickle ran code"
    pipe = nlpkit.pipeline(str(run), trust_pickle=True)  # the explicit opt-in: gensim unpickles the file
    assert marker.exists()
    assert pipe("cat", topn=1)[0]["word"] in {"dog", "car"}


def test_crafted_full_model_is_refused_for_continued_training(tmp_path: Path, marker: Path) -> None:
    run = crafted_run(tmp_path / "run", marker)
    data = write_corpus_file(tmp_path / "more.txt", planted_texts(20))
    with pytest.raises(UnsafeFileError, match="word2vec.model"):
        nlpkit.train("word2vec", **w2v_overrides(data, tmp_path / "more", init_from=str(run)))
    assert not marker.exists()


def test_old_run_with_word2vec_binary_loads_it_without_the_pickle(tmp_path: Path, marker: Path) -> None:
    run = crafted_run(tmp_path / "run", marker, with_bin=True)
    pipe = nlpkit.pipeline(str(run))
    assert pipe.task.model.index_to_key == ["cat", "dog", "car"]
    assert not marker.exists()


@pytest.mark.parametrize("name", ["vectors.kv", "old.model", "vectors.pkl"])
def test_pickle_files_are_refused_by_name(tmp_path: Path, marker: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(UnsafeFileError, match=name):
        nlpkit.pipeline("word2vec", model=str(path))
    assert not marker.exists()


def test_word2vec_text_and_binary_files_load_without_opt_in(tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    kv = KeyedVectors(4)
    kv.add_vectors(["cat", "dog", "car"], np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 1, 0]], np.float32))
    for name, binary in (("v.txt", False), ("v.vec", False), ("v.bin", True)):
        kv.save_word2vec_format(str(tmp_path / name), binary=binary)
        pipe = nlpkit.pipeline("word2vec", model=str(tmp_path / name))
        assert pipe("cat", topn=1)[0]["word"] == "dog"


def test_own_run_loads_without_opt_in_with_the_trained_neighbours(tmp_path: Path) -> None:
    """A run nlpkit trains loads with no opt-in from vectors.safetensors, with the neighbours the trained
    in-memory model gave (the report's), and its full model is recorded as nlpkit's own for init_from."""
    from gensim.models import Word2Vec

    data = write_corpus_file(tmp_path / "corpus.txt", planted_texts(300))
    report = nlpkit.train("word2vec", **w2v_overrides(data, tmp_path / "run", **{"w2v.epochs": 10}))
    model_dir = Path(report["run_dir"]) / "model"
    assert not (model_dir / "vectors.kv").exists()
    pipe = nlpkit.pipeline(report["run_dir"])
    for word, expected in report["neighbours"].items():
        got = pipe(word, topn=len(expected))
        assert [g["word"] for g in got] == [w for w, _ in expected], word
        np.testing.assert_allclose([g["score"] for g in got], [s for _, s in expected], atol=6e-5)  # 4 places
    full = Word2Vec.load(str(model_dir / "word2vec.model"))
    assert np.array_equal(pipe.task.model.vectors, full.wv.vectors)
    for word in ("dog", "banana", "bus"):  # unrounded, against the model gensim itself saved
        assert pipe(word, topn=5) == [{"word": w, "score": pytest.approx(s, abs=1e-6)}
                                      for w, s in full.wv.most_similar(word, topn=5)]
    assert is_own_pickle(model_dir / "word2vec.model")
    # a tampered full model is no longer nlpkit's own
    tampered = tmp_path / "copy" / "model"
    tampered.mkdir(parents=True)
    (tampered / "word2vec.model").write_bytes((model_dir / "word2vec.model").read_bytes() + b"\0")
    assert not is_own_pickle(tampered / "word2vec.model")


# --------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_with_a_crafted_pickle_is_refused(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                                     marker: Path) -> None:
    """accelerate unpickles the scheduler state (custom_checkpoint_0.pkl) with weights_only=False: nlpkit
    reads it weights-only first, so a crafted one is an error, not code run. A genuine checkpoint resumes."""
    import torch

    common = {"train.max_steps": 4, "train.save_every": 2, "train.eval_every": 4, "train.keep_checkpoints": 5}
    run = tmp_path / "run"
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, run, **common,
                                                    **{"train.stop_after_steps": 2}))
    ckpt = run / "checkpoint-2"
    assert (ckpt / "custom_checkpoint_0.pkl").exists()
    good = ckpt / "custom_checkpoint_0.pkl"
    saved = good.read_bytes()
    torch.save({"state": Touch(marker)}, good)
    with pytest.raises(UnsafeFileError, match="custom_checkpoint_0.pkl"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, run, **common, resume="auto"))
    assert not marker.exists()
    good.write_bytes(saved)  # the genuine file resumes
    resumed = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, run, **common,
                                                              resume="auto"))
    assert resumed["training"]["updates"] == 4
    torch.load(good, weights_only=True)  # plain values: what accelerate's loader will now accept


# --------------------------------------------------------------------------------------------- remote code


def code_folder(tiny_bert: Path, root: Path, marker: Path) -> Path:
    """The tiny BERT whose config.json / tokenizer_config.json map the auto classes to modules of its own; each
    module creates ``marker`` when imported."""
    import shutil

    folder = shutil.copytree(tiny_bert, root)
    for module in ("configuration_x", "modeling_x", "tokenization_x"):
        (folder / f"{module}.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig",
                          "AutoModelForSequenceClassification": "modeling_x.XForSequenceClassification"}
    (folder / "config.json").write_text(json.dumps(config))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    return folder


def test_model_code_never_runs_unless_asked(tiny_bert: Path, sentiment_data: Path, tmp_path: Path,
                                            marker: Path) -> None:
    folder = code_folder(tiny_bert, tmp_path / "custom", marker)
    with pytest.raises(UnsafeFileError) as info:
        nlpkit.pipeline("sentiment", model=str(folder))
    msg = str(info.value)
    assert str(folder) in msg and "modeling_x.py" in msg and "model.trust_remote_code=true" in msg
    with pytest.raises(UnsafeFileError):  # training loads the model the same way
        nlpkit.train("sentiment", **sentiment_overrides(folder, sentiment_data, tmp_path / "run"))
    assert not marker.exists(), "a model folder's own code ran"
    # the opt-in hands the folder to transformers with trust_remote_code=True: it imports the modules
    with pytest.raises(Exception):  # noqa: B017 - the stub modules define no classes; importing them is the point
        nlpkit.pipeline("sentiment", model=str(folder), **{"model.trust_remote_code": True})
    assert marker.exists()


def test_a_run_folder_cannot_opt_itself_in_to_remote_code(tiny_bert: Path, tmp_path: Path, marker: Path) -> None:
    """A descriptor whose saved config says model.trust_remote_code=true does not count: trust is the caller's."""
    run = tmp_path / "run"
    folder = code_folder(tiny_bert, run / "model", marker)
    descriptor = {"task": "sentiment", "config": {"task": "sentiment", "model": {
        "name": str(folder), "trust_remote_code": True}}, "info": {"labels": ["neg", "pos"]}}
    (folder / "nlpkit_task.json").write_text(json.dumps(descriptor))
    with pytest.raises(UnsafeFileError, match="trust_remote_code"):
        nlpkit.pipeline(str(run))
    assert not marker.exists()


def test_own_pickle_record_survives_an_unwritable_or_damaged_cache(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving a run never fails over the record: the pickle is then simply not nlpkit's own."""
    from nlpkit.plugins.word2vec.vectors import own_pickles_file, record_own_pickle

    pickle_file = tmp_path / "word2vec.model"
    pickle_file.write_bytes(b"bytes")
    monkeypatch.setenv("NLPKIT_CACHE", str(pickle_file / "cache"))  # under a file: cannot be created
    record_own_pickle(pickle_file)
    assert not is_own_pickle(pickle_file)
    monkeypatch.setenv("NLPKIT_CACHE", str(tmp_path / "cache"))
    own_pickles_file().parent.mkdir()
    own_pickles_file().write_text("{not json")
    assert not is_own_pickle(pickle_file)
    record_own_pickle(pickle_file)
    assert is_own_pickle(pickle_file)
