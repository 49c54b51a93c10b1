"""One loader (:func:`nlpkit.loader.load`): a plain run, a LoRA run and an ``nlpkit export`` all open through it,
from the task's ``build_model``, so ``nlpkit evaluate``, the demos and the pipeline work on any of them without
asking which runtime they hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import sentiment_overrides, sentiment_rows, write_csv
from tiny_generation import generation_overrides, play_corpus, tiny_llama
from tiny_translation import pairs, translation_overrides, write_folder

import nlpkit
from nlpkit import loader
from nlpkit.cli import console_main

pytest.importorskip("onnxruntime")
export = pytest.importorskip("nlpkit.export")

TEXTS = [t for t, _ in sentiment_rows(40, seed=11)]
FEW = pairs(8, seed=5)


@pytest.fixture(scope="module")
def run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{"train.epochs": 4.0}))
    assert report["test"]["accuracy"] >= 0.9
    return report["run_dir"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled file of the user's, in the run's columns."""
    return write_csv(tmp_path_factory.mktemp("scored") / "reviews.csv", sentiment_rows(50, seed=21))


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("tr")
    data = write_folder(tmp / "data", FEW, FEW, FEW)
    return nlpkit.train("translation", **translation_overrides(data, tmp / "run", **{
        "train.max_steps": 60, "train.eval_every": 60, "train.lr": 1e-2}))["run_dir"]


@pytest.fixture(scope="module")
def generation_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("gen")
    return nlpkit.train("generation", **generation_overrides(
        tiny_llama(tmp_path_factory), play_corpus(tmp / "plays"), tmp / "run",
        **{"train.max_steps": 10, "train.lr": 1e-2, "generate.max_new_tokens": 12}))["run_dir"]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Every :func:`nlpkit.loader.load` call: (the folder it opened, the model it returned)."""
    calls: list[tuple[str, object]] = []
    real = loader.load

    def recording(auto_class, path, *args, **kwargs):
        opened = real(auto_class, path, *args, **kwargs)
        calls.append((str(path), opened[0] if kwargs.get("output_loading_info") else opened))
        return opened

    monkeypatch.setattr(loader, "load", recording)
    return calls


def test_evaluate_on_an_export_gives_the_runs_metrics(run: str, scored: Path, tmp_path: Path) -> None:
    """``nlpkit evaluate EXPORT --data FILE``: an fp32 export scores the file as its PyTorch run does (the same
    predictions, so the same metrics); an int8 export (its close calls re-scored in fp32) within int8's
    agreement."""
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    export.export_model(run, fp32)
    export.export_model(run, int8, quantize="int8")
    want = nlpkit.evaluate(run, data=str(scored))
    got = nlpkit.evaluate(str(fp32), data=str(scored))
    assert want["samples"] == got["samples"] == 50 and want["accuracy"] >= 0.9
    for key, value in want.items():
        if isinstance(value, (int, float)) and key not in ("runtime_s", "samples_per_s"):  # timings differ
            assert got[key] == pytest.approx(value, abs=1e-5), key
    assert nlpkit.evaluate(str(int8), data=str(scored))["accuracy"] == pytest.approx(want["accuracy"], abs=0.04)

    # the command line: a report beside it, the export's metrics
    console_main(["evaluate", str(fp32), "--data", str(scored), "--out", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["test"]["accuracy"] == pytest.approx(want["accuracy"])


def test_a_plain_run_a_lora_run_and_an_export_open_through_the_one_loader(
        run: str, sentiment_data: Path, spy: list, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import PreTrainedModel

    from nlpkit.onnx_runtime import OnnxModel

    lora_run = nlpkit.train("sentiment", **sentiment_overrides(
        Path(run) / "model", sentiment_data, tmp_path / "lora",
        **{"train.lora": True, "lora.r": 4, "lora.target_modules": ["query", "value"], "train.epochs": 1.0}))["run_dir"]
    exported = tmp_path / "fp32"
    export.export_model(run, exported)
    spy.clear()  # training and exporting load models too: count only the pipelines below
    labels = dict(sentiment_rows(40, seed=11))
    answers = {}
    for name, folder, kind in (("plain", run, PreTrainedModel), ("lora", lora_run, PeftModel),
                               ("export", str(exported), OnnxModel)):
        pipe = nlpkit.pipeline(folder, device="cpu")
        path, opened = spy[-1]
        assert opened is pipe.model and isinstance(opened, kind), (name, type(opened))
        assert Path(path).resolve() in (Path(folder).resolve(), (Path(folder) / "model").resolve())
        answers[name] = pipe(TEXTS)
        # real predictions: the planted words, not noise
        assert sum(a["label"] == labels[t] for a, t in zip(answers[name], TEXTS)) / len(TEXTS) >= 0.9, name
    assert len(spy) == 3
    assert [a["label"] for a in answers["export"]] == [a["label"] for a in answers["plain"]]
    assert [a["score"] for a in answers["export"]] == pytest.approx([a["score"] for a in answers["plain"]], abs=1e-4)


def _handler(app, name: str):
    return next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == name)


def test_demo_handlers_answer_on_an_export_of_each_exportable_task(
        run: str, translation_run: str, generation_run: str, tmp_path: Path, spy: list) -> None:
    """``nlpkit demo EXPORT`` for sentiment, translation and generation: the page's handler gives what the
    PyTorch run's pipeline gives (fp32 export), and the export was opened by the one loader."""
    pytest.importorskip("gradio")
    from nlpkit.demo import build_app

    for task, source in (("sentiment", run), ("translation", translation_run), ("generation", generation_run)):
        folder = tmp_path / f"export-{task}"
        export.export_model(source, folder)
        torch_pipe = nlpkit.pipeline(source, device="cpu")
        spy.clear()
        app = build_app(folder)
        assert task in app.title
        assert len(spy) == 1 and Path(spy[0][0]).resolve() == folder.resolve() and loader.runs_on_onnx(spy[0][1])
        if task == "sentiment":
            shown = _handler(app, "classify")(TEXTS[0])
            assert shown == pytest.approx({p["label"]: p["score"] for p in torch_pipe(TEXTS[0], top_k=None)},
                                          abs=1e-4)
        elif task == "translation":
            text = FEW[0][0]
            got = _handler(app, "translate")(text, 2, 12, False, 1.0, 1.0)
            assert got == torch_pipe(text, num_beams=2, max_new_tokens=12, num_return_sequences=1) and got
        else:
            parts = list(_handler(app, "continue_prompt")("KING:", 12, False, 1.0, 1.0, 50, 1.0, None))
            assert parts and parts[-1] == torch_pipe("KING:", max_new_tokens=12)


def test_evaluate_on_a_generator_export_gives_the_runs_metrics(translation_run: str, generation_run: str,
                                                               tmp_path: Path) -> None:
    """A translator's export is scored with teacher-forced NLL too (its decoder inputs are the labels shifted
    right, as transformers makes them) and its BLEU from generate(); a causal LM's perplexity likewise."""
    for name, source in (("translation", translation_run), ("generation", generation_run)):
        folder = tmp_path / name
        export.export_model(source, folder)
        data = json.loads((Path(source) / "model" / "nlpkit_task.json").read_text())["config"]["data"]["source"]
        want = nlpkit.evaluate(source)
        got = nlpkit.evaluate(str(folder), **{"data.source": data})
        assert want["samples"] == got["samples"] > 0
        for key, value in want.items():
            if isinstance(value, (int, float)) and key not in ("runtime_s", "samples_per_s"):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5), (name, key)
    assert want["loss"] > 0 and got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-5)


def test_place_keeps_an_export_on_the_cpu_with_its_threads(run: str, tmp_path: Path) -> None:
    export.export_model(run, tmp_path / "fp32")
    pipe = nlpkit.pipeline(str(tmp_path / "fp32"), threads=1)
    assert pipe.model.threads == 1 and pipe.model.session.get_session_options().intra_op_num_threads == 1
    before = pipe(TEXTS[:5])
    loader.place(pipe.model, threads=2)  # the sessions open again with two threads: the same answers
    assert pipe.model.session.get_session_options().intra_op_num_threads == 2
    assert pipe(TEXTS[:5]) == before
    assert pipe.model.device == torch.device("cpu")
