"""``nlpkit export`` of text generators: a translation encoder-decoder and a causal LM exported to ONNX (a KV-cache
decoding step, plus the encoder) and run through ``nlpkit.pipeline`` with transformers' ``generate()``: the same
translations and continuations as the PyTorch model, greedy, beam search, sampling, stop strings and streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_generation import generation_overrides, play_corpus, tiny_llama
from tiny_translation import pairs, translation_overrides, write_folder

import nlpkit
from nlpkit.cli import console_main
from nlpkit.errors import UsageError

pytest.importorskip("onnxruntime")
export = pytest.importorskip("nlpkit.export")

FEW = pairs(8, seed=5)


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny pre-norm (M2M100) translator that has learned 8 toy pairs exactly."""
    tmp = tmp_path_factory.mktemp("tr")
    data = write_folder(tmp / "d", FEW, FEW, FEW)
    report = nlpkit.train("translation", **translation_overrides(data, tmp / "run", **{
        "train.max_steps": 150, "train.eval_every": 150, "train.lr": 1e-2, "translation.label_smoothing": 0.0,
        "translation.scratch.d_model": 64, "translation.scratch.ffn_dim": 128, "translation.scratch.dropout": 0.0}))
    assert report["test"]["bleu"] == pytest.approx(100.0)
    return report["run_dir"]


@pytest.fixture(scope="module")
def generation_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("gen")
    report = nlpkit.train("generation", **generation_overrides(
        tiny_llama(tmp_path_factory), play_corpus(tmp / "plays"), tmp / "run",
        **{"train.max_steps": 40, "train.lr": 1e-2, "train.eval_every": 20}))
    return report["run_dir"]


def test_translation_export_translates_as_the_pytorch_model(translation_run: str, tmp_path: Path) -> None:
    entry = export.export_model(translation_run, tmp_path / "fp32")
    assert entry["kind"] == "seq2seq" and entry["graphs"] == ["encoder.onnx", "decoder.onnx"]
    assert entry["check"]["max_abs_logit_diff"] < 1e-3 and entry["check"]["greedy_agreement"] == 1.0
    torch_pipe = nlpkit.pipeline(translation_run, device="cpu")
    onnx_pipe = nlpkit.pipeline(str(tmp_path / "fp32"), threads=1)
    assert type(onnx_pipe.model).__name__ == "Seq2SeqLM"
    sources = [s for s, _ in FEW] + ["", "the cat"]
    for options in ({"num_beams": 1}, {"num_beams": 3}, {"num_beams": 3, "num_return_sequences": 2}):
        assert onnx_pipe(sources, batch_size=3, **options) == torch_pipe(sources, batch_size=3, **options), options
    assert onnx_pipe([s for s, _ in FEW], num_beams=3) == [t for _, t in FEW]  # what the model learned

    # int8: smaller graphs, still the learned translations on most pairs
    entry8 = export.export_model(translation_run, tmp_path / "int8", quantize="int8")
    size = {p: sum(f.stat().st_size for f in (tmp_path / p).glob("*.onnx")) for p in ("fp32", "int8")}
    assert size["int8"] < size["fp32"] * 0.75, size  # the embeddings (most of a tiny model) stay fp32
    got = nlpkit.pipeline(str(tmp_path / "int8"))([s for s, _ in FEW])
    assert sum(g == t for g, (_, t) in zip(got, FEW)) >= 6, got
    assert entry8["precision"] == "int8"


def test_causal_lm_export_generates_as_the_pytorch_model(generation_run: str, tmp_path: Path) -> None:
    entry = export.export_model(generation_run, tmp_path / "fp32")
    assert entry["kind"] == "causal_lm" and entry["graphs"] == ["decoder.onnx"]
    assert entry["check"]["max_abs_logit_diff"] < 1e-3
    torch_pipe = nlpkit.pipeline(generation_run, device="cpu")
    onnx_pipe = nlpkit.pipeline(str(tmp_path / "fp32"))
    prompts = ["KING:", "QUEEN: my lord, the", "", "A"]  # lengths differ: left padding inside a batch
    for options in ({}, {"num_beams": 2}, {"stop": ["\n"]}, {"do_sample": True, "seed": 3, "top_k": 20}):
        want = torch_pipe(prompts, batch_size=3, max_new_tokens=20, **options)
        assert onnx_pipe(prompts, batch_size=3, max_new_tokens=20, **options) == want, options
    assert any(len(t) > 5 for t in want)  # it did generate text
    streamed = "".join(onnx_pipe.task.stream("KING:", max_new_tokens=20))
    assert streamed == torch_pipe("KING:", max_new_tokens=20)
    descriptor = json.loads((tmp_path / "fp32" / "nlpkit_task.json").read_text())
    assert descriptor["onnx"]["kind"] == "causal_lm"


def test_generator_export_errors_and_command_line(generation_run: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="fallback"):
        export.export_model(generation_run, tmp_path / "x", quantize="int8", fallback_margin=0.2)
    assert not (tmp_path / "x").exists()
    # an int8 export that changes what the model generates is refused, and nothing is written
    monkeypatch.setattr(export, "_compare_generations",
                        lambda task, exported: {"max_abs_logit_diff": 9.0, "greedy_agreement": 0.25})
    with pytest.raises(UsageError, match="changes what this generation model generates: 25%"):
        export.export_model(generation_run, tmp_path / "bad-int8", quantize="int8")
    assert not (tmp_path / "bad-int8").exists() and not (tmp_path / "bad-int8.tmp").exists()
    monkeypatch.undo()
    assert console_main(["export", generation_run, "--out", str(tmp_path / "cli")]) in (0, None)
    assert (tmp_path / "cli" / "decoder.onnx").is_file()
    with pytest.raises(UsageError, match="runs on the CPU"):
        nlpkit.pipeline(str(tmp_path / "cli"), device="cuda")
