"""A stranger's run or export, tried as an attacker would (issue 19, items 1-5).

Loading or evaluating a folder someone else made must not run its code (a prompt answered by piped input
included), write outside it through links planted in it, put its control characters into a report, resolve its
saved config's interpolations, or read files it names outside itself. Each crafted folder below does one of
these on the code before the fix; the tests check that nlpkit refuses, with a one-line error, and that nothing
happened (a marker file absent, a file outside untouched).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sentiment_overrides, sentiment_rows

import nlpkit
from nlpkit.cli import console_main
from nlpkit.errors import UnsafeFileError

REPO = Path(nlpkit.__file__).resolve().parents[1]  # the tree under test, for the subprocesses


@pytest.fixture(scope="module")
def run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{"train.max_steps": 4}))
    return out


@pytest.fixture(scope="module")
def export(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from nlpkit.export import export_model

    out = tmp_path_factory.mktemp("exports") / "fp32"
    export_model(str(run), out)
    return out


def copy(folder: Path, to: Path) -> Path:
    return Path(shutil.copytree(folder, to, symlinks=True))


def nlpkit_cli(args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess:
    """``nlpkit ARGS`` in a new process with ``stdin`` piped in, as a user's shell pipeline runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NLPKIT_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "nlpkit.cli", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def plant_code(folder: Path, marker: Path) -> Path:
    """Give the model folder ``folder`` modules of its own, mapped from an ``auto_map`` in config.json and
    tokenizer_config.json under a model type transformers does not know: transformers then asks on stdin
    whether to run them unless ``trust_remote_code`` is passed. Each module creates ``marker`` when imported."""
    for module in ("configuration_x", "modeling_x", "tokenization_x"):
        (folder / f"{module}.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="x-bert", auto_map={
        "AutoConfig": "configuration_x.XConfig",
        "AutoModelForSequenceClassification": "modeling_x.XForSequenceClassification"})
    (folder / "config.json").write_text(json.dumps(config))
    if (folder / "tokenizer_config.json").exists():
        tok = json.loads((folder / "tokenizer_config.json").read_text())
        tok.update(tokenizer_class="XTokenizer", auto_map={"AutoTokenizer": ["tokenization_x.XTokenizer", None]})
        (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    return folder


# ----------------------------------------------------------------------------- 1. writes through planted links


def test_evaluate_never_writes_through_links_planted_in_the_run(run: Path, tmp_path: Path) -> None:
    crafted = copy(run, tmp_path / "crafted")
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    report_dir = crafted / "eval-own-test"
    report_dir.mkdir()
    for name in (".report.md.tmp", ".report.json.tmp", ".learning_curve.tmp.png", ".confusion_matrix.tmp.png"):
        (report_dir / name).symlink_to(victim)
    console_main(["evaluate", str(crafted)])
    assert victim.read_text() == "the user's file\n"
    assert "# nlpkit report" in (report_dir / "report.md").read_text()
    assert not (report_dir / "report.md").is_symlink()


def test_evaluate_refuses_a_report_folder_that_is_a_link(run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    crafted = copy(run, tmp_path / "crafted")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (crafted / "eval-own-test").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SystemExit) as exit_info:
        console_main(["evaluate", str(crafted)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "eval-own-test" in err and "symbolic link" in err and "Traceback" not in err
    assert list(elsewhere.iterdir()) == []


def test_a_model_folder_link_in_a_report_folder_is_refused(run: Path, tmp_path: Path) -> None:
    """The model card goes into the report folder's model/, when there is one: not through a link."""
    crafted = copy(run, tmp_path / "crafted")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (crafted / "eval-own-test").mkdir()
    (crafted / "eval-own-test" / "model").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        nlpkit.evaluate(str(crafted), out_dir=str(crafted / "eval-own-test"))
    assert list(elsewhere.iterdir()) == []


def test_control_characters_from_labels_do_not_reach_the_report(tiny_bert: Path, tmp_path: Path) -> None:
    """A label with a carriage return must not start a line of its own in report.md or the model card (which
    Python's .pth reader, among others, would take as a line, and run when it starts with 'import ')."""
    payload = "negative\rimport pathlib; pathlib.Path('pwned').touch()\u2028import os"
    rows = [{"text": t, "label": y if y == "positive" else payload} for t, y in sentiment_rows(60)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, data, tmp_path / "run", **{"train.max_steps": 2}))
    assert payload in nlpkit.pipeline(str(tmp_path / "run")).task.labels  # the label really is the model's
    for path in (tmp_path / "run" / "report.md", tmp_path / "run" / "model" / "README.md"):
        text = path.read_text()
        assert "\r" not in text and "\u2028" not in text, path
        # (the model card's own usage example has an "import nlpkit" line: only the label's lines count)
        assert not [line for line in text.splitlines() if line.lstrip().startswith(("import pathlib", "import os"))
                    ], path
    assert "negative\\rimport pathlib" in (tmp_path / "run" / "report.md").read_text()  # shown, escaped
    assert json.loads((tmp_path / "run" / "report.json").read_text())  # JSON escapes them itself


# ----------------------------------------------------------------------------- 2, 3. remote code


def test_onnx_export_with_its_own_code_is_refused_even_when_stdin_says_yes(export: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    crafted = plant_code(copy(export, tmp_path / "crafted-export"), marker)
    done = nlpkit_cli(["predict", str(crafted)], "y\ny\ngreat film\n", tmp_path)
    assert not marker.exists(), "the export's own code ran"
    assert done.returncode == 2, done.stderr[-2000:]
    assert "auto_map" in done.stderr and "trust_remote_code" in done.stderr and "Traceback" not in done.stderr


def test_lora_base_folder_shipped_in_the_run_is_checked_for_code(tiny_bert: Path, sentiment_data: Path,
                                                                 tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    run = tmp_path / "lora-run"
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, run, **{
        "train.lora": True, "lora.r": 2, "lora.target_modules": ["query", "value"], "train.max_steps": 2}))
    base = plant_code(copy(tiny_bert, run / "base"), marker)
    adapter_config = run / "model" / "adapter_config.json"
    config = json.loads(adapter_config.read_text())
    config["base_model_name_or_path"] = str(base)
    adapter_config.write_text(json.dumps(config))
    done = nlpkit_cli(["predict", str(run)], "y\ny\ny\ngreat film\n", tmp_path)
    assert not marker.exists(), "the LoRA base folder's own code ran"
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(base) in done.stderr and "trust_remote_code" in done.stderr and "Traceback" not in done.stderr
    # named relative to the adapter, a base that leaves its folder is refused too
    config["base_model_name_or_path"] = "../base"
    adapter_config.write_text(json.dumps(config))
    with pytest.raises(UnsafeFileError, match="not a plain name inside it"):
        nlpkit.pipeline(str(run))
    assert not marker.exists()


def test_hub_ids_and_auto_classes_get_an_explicit_trust_remote_code(tiny_bert: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Auto class nlpkit opens gets trust_remote_code=False from the one loader, so transformers never falls
    back to asking on stdin (a hub id reaches the same prompt as a folder)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    seen: list[tuple[str, object]] = []
    for cls in (AutoConfig, AutoTokenizer, AutoModelForSequenceClassification):
        original = cls.from_pretrained.__func__

        def spy(klass: type, *args: object, _original=original, **kwargs: object) -> object:
            seen.append((klass.__name__, kwargs.get("trust_remote_code", "unset")))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    nlpkit.pipeline("sentiment", model=str(tiny_bert))(["a great film"])
    assert seen and all(flag is False for _, flag in seen), seen


# ----------------------------------------------------------------------------- 4. saved configs are data


def test_descriptor_interpolations_are_not_resolved(run: Path, tmp_path: Path, sentiment_data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nlpkit.evaluation import evaluate_run

    monkeypatch.setenv("SECRET", "s3cr3t-token-value")
    crafted = copy(run, tmp_path / "crafted")
    descriptor_file = crafted / "model" / "nlpkit_task.json"
    descriptor = json.loads(descriptor_file.read_text())
    descriptor["config"]["output_dir"] = "${oc.env:SECRET}"
    descriptor["config"]["data"]["source"] = str(sentiment_data)
    descriptor_file.write_text(json.dumps(descriptor))
    task, _ = evaluate_run(str(crafted))
    assert task.cfg.output_dir == "${oc.env:SECRET}"
    console_main(["evaluate", str(crafted)])
    for name in ("report.json", "report.md"):
        text = (crafted / "eval-own-test" / name).read_text()
        assert "s3cr3t-token-value" not in text, name
    assert json.loads((crafted / "eval-own-test" / "report.json").read_text())["config"]["output_dir"] == \
        "${oc.env:SECRET}"


def test_a_saved_config_reloads_its_literal_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yaml of a run re-loads (as a preset) with the values it holds, not re-interpreted."""
    from nlpkit.config import load_config, save_config
    from nlpkit.registry import get_task

    monkeypatch.setenv("SECRET", "s3cr3t-token-value")
    schema = get_task("sentiment").Config
    cfg = load_config(schema, None, {"output_dir": "\\${oc.env:SECRET}"})  # the user's own escaped literal
    assert cfg.output_dir == "${oc.env:SECRET}"
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(schema, tmp_path / "config.yaml").output_dir == "${oc.env:SECRET}"


# ----------------------------------------------------------------------------- 5. files named must stay inside


@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_export_fallback_graph_outside_the_export_is_refused(export: Path, tmp_path: Path, where: str) -> None:
    crafted = copy(export, tmp_path / "crafted")
    outside = tmp_path / "outside.onnx"
    shutil.copy(export / "model.onnx", outside)
    descriptor_file = crafted / "nlpkit_task.json"
    descriptor = json.loads(descriptor_file.read_text())
    descriptor["onnx"]["fallback"] = {"file": str(outside) if where == "absolute" else "../outside.onnx",
                                      "margin": 0.2}
    descriptor_file.write_text(json.dumps(descriptor))
    with pytest.raises(UnsafeFileError, match="outside.onnx"):
        nlpkit.pipeline(str(crafted))


def test_a_graph_linked_from_outside_the_export_is_refused(export: Path, tmp_path: Path) -> None:
    crafted = copy(export, tmp_path / "crafted")
    outside = tmp_path / "elsewhere" / "model.onnx"
    outside.parent.mkdir()
    (crafted / "model.onnx").rename(outside)
    (crafted / "model.onnx").symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="outside"):
        nlpkit.pipeline(str(crafted))
    # a link that stays inside the export is followed
    (crafted / "model.onnx").unlink()
    outside.rename(crafted / "graph.onnx")
    (crafted / "model.onnx").symlink_to("graph.onnx")
    assert nlpkit.pipeline(str(crafted))(["a great film"])[0]["label"] in ("positive", "negative")


def test_run_weights_linked_from_outside_the_run_are_refused(run: Path, tmp_path: Path) -> None:
    crafted = copy(run, tmp_path / "crafted")
    outside = tmp_path / "elsewhere" / "model.safetensors"
    outside.parent.mkdir()
    (crafted / "model" / "model.safetensors").rename(outside)
    (crafted / "model" / "model.safetensors").symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="model.safetensors"):
        nlpkit.pipeline(str(crafted))


def test_word2vec_vectors_linked_from_outside_the_run_are_refused(tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    from nlpkit.plugins.word2vec.vectors import save_vectors

    kv = KeyedVectors(4)
    kv.add_vectors(["cat", "dog", "car"], np.eye(3, 4, dtype=np.float32))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save_vectors(kv, elsewhere)
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "vectors.safetensors").symlink_to(elsewhere / "vectors.safetensors")
    shutil.copy(elsewhere / "vocab.json", model / "vocab.json")
    (model / "nlpkit_task.json").write_text(json.dumps({"task": "word2vec", "config": {"task": "word2vec"},
                                                        "info": {}, "kind": "word2vec"}))
    with pytest.raises(UnsafeFileError, match="vectors.safetensors"):
        nlpkit.pipeline(str(tmp_path / "run"))
    (model / "vectors.safetensors").unlink()
    shutil.copy(elsewhere / "vectors.safetensors", model / "vectors.safetensors")
    assert nlpkit.pipeline(str(tmp_path / "run"))("cat", topn=1)[0]["word"] in ("dog", "car")


def test_atomic_dir_leaves_what_it_did_not_create(tmp_path: Path) -> None:
    """`nlpkit export --out X` (atomic_dir) deleted an unrelated X.tmp/ beside X: temporaries are unique and
    created exclusively, and a target that is a link is refused."""
    from nlpkit.artifacts import atomic_dir

    mine = tmp_path / "X.tmp"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for content in ("first", "second"):
        with atomic_dir(tmp_path / "X") as tmp:
            (tmp / "file.txt").write_text(content)
    assert (tmp_path / "X" / "file.txt").read_text() == "second"
    assert (mine / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "X.tmp"]
    (tmp_path / "link").symlink_to(mine, target_is_directory=True)
    with pytest.raises(UnsafeFileError):
        with atomic_dir(tmp_path / "link"):
            pass
    assert (mine / "keep.txt").read_text() == "mine"
