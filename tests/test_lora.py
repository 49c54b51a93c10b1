"""LoRA for every transformer task (nlpkit.lora): what trains, what is saved, plain-peft loading, merging, QLoRA's
error without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import sentiment_overrides, sentiment_rows, write_csv
from safetensors.torch import load_file
from tiny_translation import build_tiny_causal, build_tiny_marian, pairs, translation_overrides, write_folder

import nlpkit
from nlpkit.config import LoraOptions, RunConfig, load_config
from nlpkit.errors import ConfigError
from nlpkit.lora import apply_lora, merge_lora

SMALL_LORA = {"train.lora": True, "lora.r": 4, "lora.alpha": 16, "lora.dropout": 0.0}


@pytest.fixture(scope="module")
def sentiment_base(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fully fine-tuned tiny sentiment model: the pretrained base that LoRA adapts below."""
    out = tmp_path_factory.mktemp("sentiment-base")
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out / "run", **{"train.epochs": 6.0}))
    return out / "run" / "model"


@pytest.fixture(scope="module")
def flipped_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted-word data with the labels swapped: the base model scores ~0 on it until it is adapted."""
    out = tmp_path_factory.mktemp("flipped")
    swap = {"positive": "negative", "negative": "positive"}
    for name, n, seed in (("train", 160, 1), ("validation", 40, 2), ("test", 50, 3)):
        write_csv(out / f"{name}.csv", [(t, swap[y]) for t, y in sentiment_rows(n, seed=seed)])
    return out


def _sentiment_lora(base: Path, data: Path, out: Path, **extra: object) -> dict:
    return nlpkit.train("sentiment", **sentiment_overrides(base, data, out, **{
        **SMALL_LORA, "lora.target_modules": ["query", "value"], "train.lr": 1e-2, "train.epochs": 2.0, **extra}))


def test_sentiment_lora_learns_saves_adapter_and_head_and_loads_in_plain_peft(
        sentiment_base: Path, flipped_data: Path, tmp_path: Path) -> None:
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification

    before = nlpkit.evaluate(str(sentiment_base), **{"data.source": str(flipped_data)})
    report = _sentiment_lora(sentiment_base, flipped_data, tmp_path / "run")
    assert before["accuracy"] < 0.2 and report["test"]["accuracy"] > 0.9  # it learned the swapped labels

    # only the adapters (query/value) and the classification head train: counted in the report
    lora_params = 2 * 2 * (32 * 4 + 4 * 32)  # 2 layers x (query, value) x (A + B)
    head_params = 32 * 2 + 2
    assert report["data_notes"]["trainable parameters"].startswith(f"{lora_params + head_params:,} of ")

    model_dir = tmp_path / "run" / "model"
    saved = load_file(str(model_dir / "adapter_model.safetensors"))
    assert all("lora_" in k or "classifier" in k for k in saved) and any("classifier" in k for k in saved)
    assert not (model_dir / "model.safetensors").exists()

    # plain peft finds the base model the adapter records; its predictions are the pipeline's
    texts = [t for t, _ in sentiment_rows(30, seed=7)]
    pipe = nlpkit.pipeline(str(tmp_path / "run"), device="cpu")
    ours = pipe(texts)
    peft_model = AutoPeftModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    enc = pipe.task.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = peft_model(**enc).logits.softmax(-1)
    labels = pipe.task.labels
    assert [o["label"] for o in ours] == [labels[i] for i in probs.argmax(-1).tolist()]
    assert [o["score"] for o in ours] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-5)

    # merged into a plain classifier (adapters folded in, the trained head kept): the same predictions
    merged = merge_lora(peft_model)
    assert not hasattr(merged, "peft_config")
    with torch.no_grad():
        assert torch.allclose(merged(**enc).logits.softmax(-1), probs, atol=1e-5)

    # lora.merge=true saves that plain model; transformers alone loads it
    _sentiment_lora(sentiment_base, flipped_data, tmp_path / "merged", **{"lora.merge": True})
    merged_dir = tmp_path / "merged" / "model"
    assert (merged_dir / "model.safetensors").exists() and not (merged_dir / "adapter_config.json").exists()
    plain = AutoModelForSequenceClassification.from_pretrained(merged_dir).eval()
    with torch.no_grad():
        assert torch.allclose(plain(**enc).logits.softmax(-1), probs, atol=1e-5)  # same seed, same training
    assert [o["label"] for o in nlpkit.pipeline(str(tmp_path / "merged"), device="cpu")(texts)] == \
        [o["label"] for o in ours]


def test_new_classification_head_trains_in_full(tiny_bert: Path) -> None:
    """A head that from_pretrained initialises afresh is found and trained in full beside the adapters."""
    from transformers import AutoModelForSequenceClassification

    from nlpkit.lora import new_modules

    model, loading = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3,
                                                                        output_loading_info=True)
    assert new_modules(loading) == ["classifier"]
    wrapped = apply_lora(model, LoraOptions(r=2, target_modules=["query"]), "SEQ_CLS",
                         modules_to_save=new_modules(loading))
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier.modules_to_save" in n for n in trainable)
    assert any("classifier" in n for n in trainable)


@pytest.fixture(scope="module")
def toy_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("toy-pairs"), pairs(64, 1), pairs(12, 2), pairs(13, 3))


@pytest.mark.parametrize("kind", ["seq2seq", "decoder_only"])
def test_translation_lora_adapter_loads_in_plain_peft(kind: str, toy_pairs: Path, tmp_path: Path) -> None:
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM

    base = (build_tiny_marian if kind == "seq2seq" else build_tiny_causal)(tmp_path / "base")
    report = nlpkit.train("translation", **translation_overrides(toy_pairs, tmp_path / "run", model=str(base), **{
        **SMALL_LORA, "lora.r": 8, "train.max_steps": 12, "train.lr": 1e-2, "generate.max_new_tokens": 12,
        "generate.num_beams": 1}))
    assert "(LoRA)" in report["data_notes"]["trainable parameters"]
    model_dir = tmp_path / "run" / "model"
    saved = load_file(str(model_dir / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in saved.items()), "adapters trained"
    first = report["history"][0]["loss"]
    assert min(h["loss"] for h in report["history"] if "loss" in h) < first  # the adapted model fits better

    texts = [s for s, _ in pairs(6, seed=9)]
    pipe = nlpkit.pipeline(str(tmp_path / "run"), device="cpu")
    ours = pipe(texts, batch_size=2)
    auto = AutoPeftModelForSeq2SeqLM if kind == "seq2seq" else AutoPeftModelForCausalLM
    plain = auto.from_pretrained(str(model_dir)).eval()
    gen = pipe.task.cfg.generate
    assert pipe.task.backend.translate(plain, texts, gen, 2) == pipe.task.backend.translate(pipe.model, texts, gen, 2)
    assert [t[0] for t in pipe.task.backend.translate(plain, texts, gen, 2)] == ours

    # merged: a plain model with the adapter's outputs
    enc = pipe.task.tokenizer(texts[:2], return_tensors="pt", padding=True)
    extra = {"decoder_input_ids": torch.zeros((2, 3), dtype=torch.long)} if kind == "seq2seq" else {}
    with torch.no_grad():
        expected = plain(**enc, **extra).logits
        got = merge_lora(plain)(**enc, **extra).logits
    assert torch.allclose(got, expected, atol=1e-4)


def test_translation_lora_needs_a_pretrained_model() -> None:
    from nlpkit.plugins.translation import TranslationConfig

    with pytest.raises(ConfigError, match="train.lora=true adapts a pretrained model"):
        load_config(TranslationConfig, overrides={"train.lora": True})


def test_quantized_weights_train_only_with_lora() -> None:
    from types import SimpleNamespace

    from nlpkit.lora import check_trainable

    def cfg(lora: bool) -> SimpleNamespace:  # the config cannot hold 4bit on a machine without CUDA
        return SimpleNamespace(model=SimpleNamespace(quantization="4bit"), train=SimpleNamespace(lora=lora))

    with pytest.raises(ConfigError, match="training needs train.lora=true"):
        check_trainable(cfg(False))
    check_trainable(cfg(True))


def test_lora_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="lora.r=0"):
        load_config(RunConfig, overrides={"lora.r": 0})
    with pytest.raises(ConfigError, match="lora.dropout"):
        load_config(RunConfig, overrides=["lora.dropout=1.5"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without a CUDA GPU")
@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantization_without_cuda_is_a_clear_error_before_any_data(bits: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.quantization=.*CUDA GPU.*bitsandbytes|CUDA GPU"):
        load_config(RunConfig, overrides=[f"model.quantization={bits}"])
    # raised when the config is built: the missing data folder and model are never reached
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        nlpkit.train("sentiment", **{"model.quantization": bits, "train.lora": True, "trackers": [],
                                     "data.source": str(tmp_path / "no-such-data"), "model.name": "no-such-model",
                                     "output_dir": str(tmp_path / "run")})
    assert not (tmp_path / "run").exists()
