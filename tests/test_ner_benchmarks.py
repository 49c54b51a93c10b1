"""Smoke tests of the ner benchmarks on a tiny trained run: the CRF baseline on the same split, and the span
throughput comparison with transformers' token-classification pipeline (PyTorch and ONNX exports)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_benchmarks_smoke import run_main, table_rows
from tiny_ner import ner_data, ner_overrides, tiny_ner_model

import nlpkit


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("ner-bench")
    report = nlpkit.train("ner", **ner_overrides(tiny_ner_model(base / "model"), ner_data(base / "data"), base / "run",
                                                 **{"train.epochs": 3.0}))
    return report["run_dir"]


def test_ner_baseline(tiny_run: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_main("ner_baseline", [tiny_run, "--iterations", "30", "--json", str(tmp_path / "crf.json")], capsys)
    assert len(table_rows(out, "nlpkit, ")) == 1
    crf = table_rows(out, "CRF (sklearn-crfsuite")
    assert len(crf) == 1 and float(crf[0][1]) > 0.8  # planted names: a CRF over word features learns them too
    assert "CRF baseline fit" in out and (tmp_path / "crf.json").exists()


def test_ner_infer(tiny_run: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    out = run_main("ner_infer", ["--model", tiny_run, "--texts", "40", "--rounds", "2", "--min-seconds", "0",
                                 "--int8-keep-fp32", "", "--batch-size", "8", "--threads", "1",
                                 "--export-dir", str(tmp_path / "exports")], capsys)
    rows = {r[0]: r for r in table_rows(out, "nlpkit") + table_rows(out, "transformers.pipeline")}
    assert set(rows) == {"transformers.pipeline", "nlpkit PyTorch", "nlpkit ONNX fp32", "nlpkit ONNX int8",
                         "nlpkit ONNX int8, nothing kept fp32"}
    assert "median of 2 rounds" in out and out.count("x, ") >= 4  # every pipeline's two per-round ratios
    assert rows["nlpkit PyTorch"][3] == "100.00%"  # identical spans to transformers' grouping
    assert rows["nlpkit ONNX fp32"][3] == "100.00%"
