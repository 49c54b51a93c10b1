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
    assert entry["check"]["max_abs_diff"] < 1e-3 and entry["check"]["greedy_agreement"] == 1.0
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
    assert entry["check"]["max_abs_diff"] < 1e-3
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
    monkeypatch.setattr(export, "_check",
                        lambda task, spec, exported: {"max_abs_diff": 9.0, "greedy_agreement": 0.25})
    with pytest.raises(UsageError, match="changes what this generation model predicts: 25% greedy_agreement"):
        export.export_model(generation_run, tmp_path / "bad-int8", quantize="int8")
    assert not (tmp_path / "bad-int8").exists() and not (tmp_path / "bad-int8.tmp").exists()
    monkeypatch.undo()
    assert console_main(["export", generation_run, "--out", str(tmp_path / "cli")]) in (0, None)
    assert (tmp_path / "cli" / "decoder.onnx").is_file()
    with pytest.raises(UsageError, match="runs on the CPU"):
        nlpkit.pipeline(str(tmp_path / "cli"), device="cuda")


def _tiny(name: str):
    import transformers as tf

    common = {"vocab_size": 64, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
    seq2seq = {"d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
               "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
               "max_position_embeddings": 128, **common}
    return {
        "marian": lambda: tf.MarianMTModel(tf.MarianConfig(**seq2seq)),
        "bart": lambda: tf.BartForConditionalGeneration(tf.BartConfig(**seq2seq)),
        "t5": lambda: tf.T5ForConditionalGeneration(tf.T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                                num_decoder_layers=2, num_heads=4, **common)),
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4,
                                                         n_positions=128, pad_token_id=0, eos_token_id=1)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=1)),
    }[name]()


@pytest.mark.parametrize("name", ["marian", "bart", "t5", "gpt2", "qwen2"])
def test_graphs_match_pytorch_at_every_cache_length(name: str, tmp_path: Path) -> None:
    """Other architectures than the runs above: the graphs are traced at one prompt and cache length, and must
    give the PyTorch logits at others (positions and masks are not fixed by the trace), and the same beams."""
    import torch

    from nlpkit.onnx_generation import _cache_of, export_generator, open_generator

    torch.manual_seed(0)
    model = _tiny(name).eval()
    for p in model.parameters():  # large random weights: outputs that depend on every position
        torch.nn.init.normal_(p, std=0.3)
    info = export_generator(model, tmp_path, 17)
    model.config.save_pretrained(tmp_path)
    onnx = open_generator(tmp_path, info["kind"])
    with torch.inference_mode():
        if info["kind"] == "seq2seq":
            src = torch.tensor([[5, 6, 7, 1, 0, 0, 0], [8, 9, 10, 11, 12, 13, 1]])
            inputs = {"input_ids": src, "attention_mask": (src != 0).long()}
            dec = torch.randint(3, 60, (2, 12))
            ref = model(**inputs, decoder_input_ids=dec).logits
            first = onnx(**inputs, decoder_input_ids=dec[:, :5])
            rest = onnx(**inputs, decoder_input_ids=dec, cache=_cache_of(first))
            gen = {"num_beams": 2}
        else:
            ids = torch.tensor([[0, 0, 0, 5, 6, 7, 9, 3, 4, 8, 2, 5], [8, 9, 10, 11, 12, 13, 14, 3, 4, 8, 2, 5]])
            inputs = {"input_ids": ids[:, :5], "attention_mask": (ids[:, :5] != 0).long()}
            mask = (ids != 0).long()
            # positions count real tokens only, as generate() gives them to a left-padded batch
            ref = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
            first = onnx(**inputs)
            rest = onnx(input_ids=ids[:, 5:], attention_mask=mask, cache=_cache_of(first))
            gen = {"do_sample": False, "pad_token_id": 0}
        got = torch.cat([first.logits, rest.logits], dim=1)
        keep = inputs["attention_mask"] if info["kind"] == "causal_lm" else None
        if keep is not None:  # a left-padded position's logits are not used: compare real tokens only
            mask = torch.cat([keep, torch.ones((2, 7), dtype=torch.long)], dim=1).bool()
            ref, got = ref[mask], got[mask]
        assert (ref - got).abs().max().item() < 1e-4
        assert torch.equal(model.generate(**inputs, max_new_tokens=12, **gen),
                           onnx.generate(**inputs, max_new_tokens=12, **gen))
