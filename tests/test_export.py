"""``nlpkit export --format onnx``: a trained classifier exported to ONNX (fp32 and int8) and run with ONNX Runtime
through ``nlpkit.pipeline``, with the same batching and post-processing as the PyTorch model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sentiment_overrides, sentiment_rows

import nlpkit
from nlpkit.artifacts import write_descriptor
from nlpkit.cli import console_main
from nlpkit.errors import ConfigError, ModelNotFoundError, UsageError
from nlpkit.inference import pad
from nlpkit.onnx_runtime import OnnxModel
from nlpkit.plugins.sentiment.export import DEFAULT_FALLBACK_MARGIN

pytest.importorskip("onnxruntime")
export = pytest.importorskip("nlpkit.export")

TEXTS = [t for t, _ in sentiment_rows(60, seed=7)] + ["", "   ", "great " * 200]
#: How far a row's top-two probability gap may move between batchings of the dynamic int8 graph (activations are
#: quantized with a scale taken from the whole batch); rows this close to a threshold may fall on either side.
#: Measured on the tiny model: under 1e-6 between the pipeline's batch and one batch in another order.
NOISE = 0.002


@pytest.fixture(scope="module")
def run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{"train.epochs": 4.0}))
    assert report["test"]["accuracy"] >= 0.9
    return report["run_dir"]


@pytest.fixture(scope="module")
def fp32(run: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "fp32"
    entry = export.export_model(run, out)
    assert entry["precision"] == "fp32" and entry["fused"], entry  # the tiny BERT's attention is fused too
    return out


def test_fp32_export_predicts_what_the_pytorch_model_does(run: str, fp32: Path) -> None:
    assert sorted(p.name for p in fp32.iterdir()) == ["config.json", "model.onnx", "nlpkit_task.json",
                                                      "tokenizer.json", "tokenizer_config.json"]
    assert not fp32.with_name("fp32.tmp").exists()
    torch_pipe, onnx_pipe = nlpkit.pipeline(run, device="cpu"), nlpkit.pipeline(str(fp32), threads=1)
    assert type(onnx_pipe.model).__name__ == "OnnxModel"
    ours, theirs = onnx_pipe(TEXTS, batch_size=8), torch_pipe(TEXTS, batch_size=8)
    assert [o["label"] for o in ours] == [t["label"] for t in theirs]
    assert ours[-3] == {"label": None, "score": None}  # blank texts: the same default as PyTorch
    for o, t in zip(ours, theirs):
        if t["score"] is not None:
            assert o["score"] == pytest.approx(t["score"], abs=1e-4)
    # top_k goes through the same post-processing: every label, best first, same scores
    ranked, expected = onnx_pipe(TEXTS[:5], top_k=None), torch_pipe(TEXTS[:5], top_k=None)
    assert [[p["label"] for p in r] for r in ranked] == [[p["label"] for p in r] for r in expected]
    # the model learned the planted words: the export keeps that, not just agreement on noise
    labels = dict(sentiment_rows(60, seed=7))
    assert sum(o["label"] == labels[t] for o, t in zip(ours, TEXTS[:60])) / 60 >= 0.9


def test_int8_export_is_smaller_and_agrees_on_most_labels(run: str, fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    # without a fallback the sensitive projections stay fp32 by default
    entry = export.export_model(run, out, quantize="int8", fallback_margin=0)
    assert entry["precision"] == "int8" and entry["quantization"]["nodes_kept_fp32"] > 0 and "fallback" not in entry
    assert not (out / "fallback.onnx").exists()
    everything = export.export_model(run, tmp_path / "all-int8", quantize="int8", keep_fp32="", fallback_margin=0)
    assert everything["quantization"]["nodes_kept_fp32"] == 0
    assert (tmp_path / "all-int8" / "model.onnx").stat().st_size < 0.6 * (fp32 / "model.onnx").stat().st_size
    ours = nlpkit.pipeline(str(out))(TEXTS[:60])
    theirs = nlpkit.pipeline(run, device="cpu")(TEXTS[:60])
    agree = sum(o["label"] == t["label"] for o, t in zip(ours, theirs)) / 60
    assert agree >= 0.9
    assert max(abs(o["score"] - t["score"]) for o, t in zip(ours, theirs)) > 0  # really quantized


def test_int8_fallback_rescores_close_calls_in_fp32(run: str, fp32: Path, tmp_path: Path) -> None:
    """--fallback-margin keeps the fp32 graph: rows within the gap get exactly the fp32 export's scores, rows
    outside it keep their int8 scores; a gap of 1 makes every label and score the fp32 export's."""
    int8 = export.export_model(run, tmp_path / "int8", quantize="int8", keep_fp32="", fallback_margin=0)
    kept = export.export_model(run, tmp_path / "fb", quantize="int8", keep_fp32="", fallback_margin=1.0)
    assert "fallback" not in int8 and kept["fallback"] == {"file": "fallback.onnx", "margin": 1.0}
    # the default int8 export of a single-label classifier: every MatMul int8, close calls (gap 0.2) in fp32
    default = export.export_model(run, tmp_path / "default", quantize="int8")
    assert default["fallback"] == {"file": "fallback.onnx", "margin": DEFAULT_FALLBACK_MARGIN}
    assert default["quantization"]["nodes_kept_fp32"] == 0
    assert (tmp_path / "fb" / "fallback.onnx").is_file()
    texts = TEXTS[:60]
    full = nlpkit.pipeline(str(fp32))(texts)
    plain = nlpkit.pipeline(str(tmp_path / "int8"))(texts)
    assert max(abs(p["score"] - f["score"]) for p, f in zip(plain, full)) > 1e-4  # int8 alone differs
    every = nlpkit.pipeline(str(tmp_path / "fb"))(texts)
    assert [e["label"] for e in every] == [f["label"] for f in full]
    assert max(abs(e["score"] - f["score"]) for e, f in zip(every, full)) < 1e-5
    # A real gap: only close calls (best probability under (1 + gap) / 2 for two labels) are re-scored. Dynamic
    # int8 quantizes activations with a scale taken from each batch, so a row's top-two gap moves a little with
    # the batch it runs in (its padding, its neighbours, the thread count): rows within NOISE of the gap may land
    # on either side of it, and only rows clearly inside or clearly outside it are held to one answer. The gap is
    # put where the int8 graph's gaps leave the widest space in their middle half (the tiny model's gaps are
    # close together), so that about half the rows are close calls and few or none are near the gap.
    gaps = np.array([2 * p["score"] - 1 for p in plain])  # the int8 graph's top-two gap of each row
    order = np.sort(gaps)
    quarter = len(order) // 4
    widest = quarter + int(np.argmax(np.diff(order[quarter:-quarter])))
    gap = float(order[widest] + order[widest + 1]) / 2
    clearly_close, clearly_not = gaps < gap - NOISE, gaps > gap + NOISE
    assert clearly_close.sum() >= quarter and clearly_not.sum() >= quarter  # both kinds, on this tiny model
    export.export_model(run, tmp_path / "gap", quantize="int8", keep_fp32="", fallback_margin=gap)
    mixed = nlpkit.pipeline(str(tmp_path / "gap"))(texts)
    for m, p, f, row_gap in zip(mixed, plain, full, gaps):
        candidates = [f] if row_gap < gap - NOISE else [p] if row_gap > gap + NOISE else [f, p]
        assert any(m["label"] == c["label"] and m["score"] == pytest.approx(c["score"], abs=1e-5)
                   for c in candidates)
    # the close calls really got the fp32 graph's scores, not their own int8 ones again
    assert max(abs(m["score"] - p["score"]) for m, p, close in zip(mixed, plain, clearly_close) if close) > 1e-4
    # the pipeline re-scores close calls after the first pass; a direct call does it inside each batch (here one
    # batch of every text, in the given order: another batching than the pipeline's): the same rows
    model = OnnxModel(tmp_path / "gap", fallback={"file": "fallback.onnx", "margin": gap})
    tokenizer = nlpkit.pipeline(str(tmp_path / "gap")).task.tokenizer
    input_ids, mask = pad(tokenizer(texts)["input_ids"], tokenizer.pad_token_id)
    raw = model(input_ids=input_ids, attention_mask=mask, fallback=False).logits
    close = model.close_calls(raw)
    assert set(np.flatnonzero(clearly_close)) <= set(close.tolist())
    assert not set(np.flatnonzero(clearly_not)) & set(close.tolist())
    inline = model(input_ids=input_ids, attention_mask=mask).logits
    assert torch.allclose(inline[close], model.run_fallback(input_ids[close], mask[close]).logits, atol=1e-5)
    rest = np.setdiff1d(np.arange(len(texts)), close)
    assert torch.equal(inline[rest], raw[rest])
    with pytest.raises(UsageError, match="fallback-margin"):
        export.export_model(run, tmp_path / "bad", fallback_margin=0.2)  # nothing to fall back from in fp32
    with pytest.raises(UsageError, match="fallback-margin"):
        export.export_model(run, tmp_path / "bad", quantize="int8", fallback_margin=1.5)
    assert not (tmp_path / "bad").exists()


def test_export_and_predict_from_the_command_line(run: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli-export"
    console_main(["export", run, "--out", str(out)])
    assert "label agreement 100%" in capsys.readouterr().out
    console_main(["export", run, "--out", str(tmp_path / "cli-int8"), "--quantize", "int8"])
    said = capsys.readouterr().out
    assert "int8" in said and "fp32 fallback fallback.onnx" in said  # the kept graph's size is said too
    console_main(["predict", str(out), "a great and moving film", "dull and boring"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = nlpkit.pipeline(run, device="cpu")(["a great and moving film", "dull and boring"])
    assert [x["output"]["label"] for x in lines] == [e["label"] for e in expected]


def test_bad_exports_are_clear_errors_and_write_nothing(run: str, fp32: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError, match="not an nlpkit run"):
        export.export_model(tmp_path, tmp_path / "x")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        export.export_model(tmp_path / "missing", tmp_path / "x")
    other = tmp_path / "word2vec-run"
    other.mkdir()
    write_descriptor(other, "word2vec", {"task": "word2vec"})
    with pytest.raises(UsageError, match=r"word2vec model; nlpkit export handles .*sentiment.*translation"):
        export.export_model(other, tmp_path / "x")
    with pytest.raises(UsageError, match="already an ONNX export"):
        export.export_model(fp32, tmp_path / "x")
    with pytest.raises(UsageError, match="--quantize 'int4'"):
        export.export_model(run, tmp_path / "x", quantize="int4")
    with pytest.raises(UsageError, match="own model"):
        export.export_model(run, Path(run) / "model")
    with pytest.raises(UsageError, match="--overwrite"):
        export.export_model(run, fp32)  # an earlier export: only with --overwrite (force=True)
    kept = tmp_path / "my-notes"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an nlpkit ONNX export"):
        export.export_model(run, kept, force=True)  # --force never deletes a folder that is not an export
    assert (kept / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="valid regular expression"):
        export.export_model(run, tmp_path / "x", quantize="int8", keep_fp32="(")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()

    # a failure half-way (here: in quantization) leaves neither the folder nor its temporary copy
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_quantize", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_model(run, tmp_path / "y", quantize="int8")
    assert not (tmp_path / "y").exists() and not (tmp_path / "y.tmp").exists()


def test_onnx_pipeline_errors(fp32: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="runs on the CPU"):
        nlpkit.pipeline(str(fp32), device="cuda")
    with pytest.raises(UsageError, match="precision was fixed"):
        nlpkit.pipeline(str(fp32), dtype="bfloat16")
    with pytest.raises(UsageError, match="threads=0"):
        nlpkit.pipeline(str(fp32), threads=0)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'nlpkit-hf\[onnx\]'"):
        nlpkit.pipeline(str(fp32))
