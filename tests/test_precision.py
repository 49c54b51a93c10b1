"""The ``model`` config section (model=<name> shorthand, dtype, quantization) and the precision weights are loaded
in, for training, evaluation and the pipeline of every transformer task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import sentiment_overrides
from safetensors import safe_open
from tiny_generation import build_tiny_llama
from tiny_translation import build_tiny_marian

import nlpkit
from nlpkit.config import ModelConfig, RunConfig, load_config, model_name, to_dict
from nlpkit.errors import ConfigError
from nlpkit.modeling import load_kwargs


def test_model_shorthand_in_every_form(tmp_path: Path) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text("model: from-preset\ntrain:\n  lr: 0.001\n")
    assert load_config(RunConfig, preset).model.name == "from-preset"
    assert load_config(RunConfig, None, ["model=cli"]).model.name == "cli"
    assert load_config(RunConfig, None, {"model": "api"}).model.name == "api"
    # the shorthand and section keys mix, in any order
    cfg = load_config(RunConfig, preset, ["model.dtype=bf16", "model=cli"])
    assert (cfg.model.name, cfg.model.dtype) == ("cli", "bfloat16")
    cfg = load_config(RunConfig, None, {"model": "api", "model.quantization": "none", "model.trust_remote_code": True})
    assert cfg.model.name == "api" and cfg.model.trust_remote_code
    # an older run's saved config: model a string, generation's attn_implementation at the top
    old = load_config(RunConfig, {"model": "old-run", "attn_implementation": "eager", "train": {"lr": 0.1}})
    assert (old.model.name, old.model.attn_implementation) == ("old-run", "eager")
    assert model_name(to_dict(old)) == "old-run" and model_name({"model": "plain"}) == "plain"
    assert model_name(old) == "old-run"
    # the default of a task
    assert nlpkit.get_task("sentiment").Config().model.name == "minilm-l6"


def test_bad_model_values_name_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"model.dtype='int4'.*auto, bfloat16, float16, float32"):
        load_config(RunConfig, None, ["model.dtype=int4"])
    with pytest.raises(ConfigError, match=r"model.quantization='2bit'.*none, 4bit, 8bit"):
        load_config(RunConfig, None, ["model.quantization=2bit"])
    with pytest.raises(ConfigError, match="Unknown config key `model.dtyp`"):
        load_config(RunConfig, None, ["model.dtyp=bfloat16"])


def test_load_kwargs() -> None:
    # trust_remote_code is always explicit (False unless asked): left unset, transformers would prompt on stdin
    assert load_kwargs(ModelConfig(name="x")) == {"dtype": torch.float32, "trust_remote_code": False}
    kw = load_kwargs(ModelConfig(name="x", dtype="float16", trust_remote_code=True, revision="v1",
                                 attn_implementation="eager"))
    assert kw == {"dtype": torch.float16, "trust_remote_code": True, "revision": "v1", "attn_implementation": "eager"}


def _dtypes(model: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters()}


def test_sentiment_dtype_in_training_and_pipeline(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "run", **{
        "model.dtype": "bfloat16", "train.max_steps": 3}))
    assert report["test"]["samples"] == 50
    with safe_open(str(tmp_path / "run" / "model" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # trained and saved in bfloat16

    default = nlpkit.pipeline("sentiment", model=str(tiny_bert), device="cpu")
    assert _dtypes(default.model) == {torch.float32}
    half = nlpkit.pipeline("sentiment", model=str(tiny_bert), device="cpu", dtype="bfloat16")
    assert _dtypes(half.model) == {torch.bfloat16}
    texts = ["a great and wonderful film", "dull boring mess", "fine"]
    full, reduced = default(texts), half(texts)
    assert [o["score"] for o in reduced] == pytest.approx([o["score"] for o in full], abs=0.02)
    # the head is untrained: a row whose two classes are within bfloat16's rounding may fall either way
    assert all(r["label"] == f["label"] for r, f in zip(reduced, full) if f["score"] > 0.52)


def test_generation_and_translation_pipelines_load_in_bfloat16(tmp_path: Path) -> None:
    llama = build_tiny_llama(tmp_path / "llama")
    pipe = nlpkit.pipeline("generation", model=str(llama), device="cpu", dtype="bfloat16")
    assert _dtypes(pipe.model) == {torch.bfloat16}
    assert isinstance(pipe("ROMEO.\n", max_new_tokens=5), str)
    assert _dtypes(nlpkit.pipeline("generation", model=str(llama), device="cpu").model) == {torch.float32}

    marian = build_tiny_marian(tmp_path / "marian")
    pipe = nlpkit.pipeline("translation", model=str(marian), device="cpu", dtype="bfloat16")
    assert _dtypes(pipe.model) == {torch.bfloat16}
    assert isinstance(pipe("the cat sleeps", max_new_tokens=5), str)
