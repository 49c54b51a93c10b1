"""Generation end to end on a tiny local Llama: learning, perplexity, LoRA, masking, batched generation, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_generation import SAMPLE_INPUTS, generation_overrides, play_corpus, play_text, tiny_llama

import nlpkit
from nlpkit import causal_lm
from nlpkit.causal_lm import IGNORE_INDEX
from nlpkit.errors import UsageError
from nlpkit.registry import get_task

PRESETS = get_task("generation").presets()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory)


@pytest.fixture(scope="module")
def plays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return play_corpus(tmp_path_factory.mktemp("plays"))


@pytest.fixture(scope="module")
def trained_run(tiny_model: Path, plays: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs") / "gen"
    return nlpkit.train("generation", **generation_overrides(tiny_model, plays, out, **{
        "train.max_steps": 40, "train.lr": 1e-2, "train.eval_every": 20}))


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------ learning


def test_fine_tuning_lowers_held_out_perplexity(trained_run: dict) -> None:
    """Held-out plays (whole plays, disjoint from training) get a much lower perplexity than untuned."""
    summary = trained_run["perplexity_before_after"]["test"]
    assert summary["fine_tuned"] < 0.2 * summary["untuned"]
    assert summary["relative_drop"] == pytest.approx(1 - summary["fine_tuned"] / summary["untuned"])
    assert trained_run["test"]["perplexity"] == summary["fine_tuned"]
    held = trained_run["data_notes"]["held-out play"]
    assert len(held["test"]) == 2 and len(held["validation"]) == 1
    assert not set(held["test"]) & set(held["validation"])
    assert trained_run["training"]["tokens_per_s"] > 0
    assert [s["prompt"] for s in trained_run["samples"]] == ["KING.\n", "QUEEN."]
    md = (Path(trained_run["run_dir"]) / "report.md").read_text()
    assert "Perplexity before and after fine-tuning" in md and "Sample continuations" in md


@pytest.mark.slow  # > 30 s on 2 cores: runs in CI's slow stage (pytest -m slow)
def test_overfits_a_short_text_to_perplexity_near_one(tiny_model: Path, tmp_path: Path) -> None:
    text = play_text(4, seed=3)
    for split in ("train", "validation", "test"):
        _write_jsonl(tmp_path / "data" / f"{split}.jsonl", [{"text": text}])
    report = nlpkit.train("generation", **generation_overrides(tiny_model, tmp_path / "data", tmp_path / "run", **{
        "data.split_by": None, "data.block_size": 64, "train.max_steps": 150, "train.lr": 2e-2,
        "train.batch_size": 2, "train.eval_every": 1000, "sample_prompts": []}))
    assert report["baseline"]["test"]["perplexity"] > 100
    assert report["test"]["perplexity"] < 1.5
    # and it reproduces the memorised text greedily
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    prompt = text.split("\n")[0] + "\n"  # a whole line: a prompt ending inside a word would be unseen tokens
    assert pipe(prompt, max_new_tokens=12, return_full_text=True).startswith(text[: len(prompt) + 12])


def test_perplexity_is_token_weighted_and_batch_independent(trained_run: dict) -> None:
    """Same perplexity with eval batches of 1 and of 8 (padding and batching change nothing)."""
    a = nlpkit.evaluate(trained_run["run_dir"], **{"train.eval_batch_size": 1})
    b = nlpkit.evaluate(trained_run["run_dir"], **{"train.eval_batch_size": 8})
    assert a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-5)
    assert a["perplexity"] == pytest.approx(trained_run["test"]["perplexity"], rel=1e-5)
    assert a["tokens"] == trained_run["test"]["tokens"]
    # exp(sum nll / sum tokens), not a mean of per-block perplexities
    assert a["perplexity"] == pytest.approx(math.exp(a["loss"]))


# ------------------------------------------------------------------------------------------ LoRA


def test_lora_trains_only_adapters_and_merges(tiny_model: Path, plays: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    lora = {"train.lora": True, "lora.r": 4, "lora.alpha": 8, "lora.target_modules": ["q_proj", "v_proj"],
            "train.max_steps": 20, "train.lr": 2e-2, "sample_prompts": []}
    report = nlpkit.train("generation", **generation_overrides(tiny_model, plays, tmp_path / "a", **lora))
    assert report["test"]["perplexity"] < report["baseline"]["test"]["perplexity"]
    model_dir = tmp_path / "a" / "model"
    saved = load_file(str(model_dir / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved), "only adapter weights are saved"
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in saved.items()), "adapters trained"
    assert "trainable parameters" in report["data_notes"]

    # the base weights under the adapter are the untouched originals
    adapted, tok = causal_lm.load_causal_lm(str(tmp_path / "a"))
    original = AutoModelForCausalLM.from_pretrained(tiny_model)
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in adapted.state_dict().items() if "lora_" not in k}
    for name, weight in original.state_dict().items():
        assert torch.equal(base[name], weight), f"{name} changed"

    # merged into a plain model: no adapter left, same outputs
    batch = causal_lm.collate_causal([{"input_ids": tok(play_text(3, seed=9))["input_ids"]}], tok.pad_token_id)
    with torch.no_grad():
        expected = adapted(input_ids=batch["input_ids"]).logits
    merged = causal_lm.merge_lora(str(tmp_path / "a"), tmp_path / "merged")
    assert not hasattr(merged, "peft_config") and not (tmp_path / "merged" / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=batch["input_ids"]).logits, expected, atol=1e-5)

    # lora.merge=true saves the merged plain model directly; it scores like the adapter run
    report_m = nlpkit.train("generation", **generation_overrides(tiny_model, plays, tmp_path / "b",
                                                                 **lora, **{"lora.merge": True}))
    assert (tmp_path / "b" / "model" / "model.safetensors").exists()
    assert not (tmp_path / "b" / "model" / "adapter_config.json").exists()
    assert report_m["test"]["perplexity"] == pytest.approx(report["test"]["perplexity"], rel=1e-4)
    again = nlpkit.evaluate(str(tmp_path / "b"))
    assert again["perplexity"] == pytest.approx(report_m["test"]["perplexity"], rel=1e-5)


@pytest.mark.slow  # > 30 s on 2 cores: runs in CI's slow stage (pytest -m slow)
def test_lora_best_model_is_reloaded(tiny_model: Path, plays: Path, tmp_path: Path) -> None:
    """The shared loop's best-model reload works for adapters: pick the *worst* checkpoint on purpose."""
    report = nlpkit.train("generation", **generation_overrides(tiny_model, plays, tmp_path / "run", **{
        "train.lora": True, "train.max_steps": 8, "train.eval_every": 4, "train.lr": 2e-2,
        "train.greater_is_better": True, "sample_prompts": []}))
    evals = {h["step"]: h["eval_perplexity"] for h in report["history"] if "eval_perplexity" in h}
    assert evals[4] > evals[8] and report["best"]["step"] == 4
    assert report["validation"]["perplexity"] == pytest.approx(evals[4], rel=1e-5)


@pytest.mark.slow  # > 30 s on 2 cores: runs in CI's slow stage (pytest -m slow)
def test_lora_with_gradient_checkpointing_trains(tiny_model: Path, plays: Path, tmp_path: Path) -> None:
    report = nlpkit.train("generation", **generation_overrides(tiny_model, plays, tmp_path / "run", **{
        "train.lora": True, "train.gradient_checkpointing": True, "train.max_steps": 10, "train.lr": 2e-2,
        "sample_prompts": []}))
    assert report["test"]["perplexity"] < report["baseline"]["test"]["perplexity"]


# ------------------------------------------------------------------------------------------ masking


def test_chat_masking_scores_only_assistant_replies(tiny_model: Path) -> None:
    _, tok = causal_lm.load_causal_lm(str(tiny_model))
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "good night"},
            {"role": "assistant", "content": "sweet love"}, {"role": "user", "content": "what is this"},
            {"role": "assistant", "content": "a fair day"}]
    enc = causal_lm.encode_chat(tok, [conv], max_length=256)
    ids, labels = enc["input_ids"][0], enc["labels"][0]
    assert tok.decode(ids) == tok.apply_chat_template(conv, tokenize=False)
    scored = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX])
    assert scored == "sweet love<|im_end|>\na fair day<|im_end|>\n"
    unscored = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE_INDEX])
    assert "good night" in unscored and "be brief" in unscored and "sweet" not in unscored


def test_prompt_response_masking(tiny_model: Path) -> None:
    _, tok = causal_lm.load_causal_lm(str(tiny_model))
    enc = causal_lm.encode_prompt_response(tok, ["KING.\nMy lord,", "QUEEN."], [" good night", " sweet"], 64)
    for ids, labels, resp in zip(enc["input_ids"], enc["labels"], [" good night", " sweet"], strict=True):
        n_prompt = labels.index(next(lab for lab in labels if lab != IGNORE_INDEX))
        assert all(lab == IGNORE_INDEX for lab in labels[:n_prompt])
        assert tok.decode(labels[n_prompt:], skip_special_tokens=True) == resp
        assert labels[-1] == tok.eos_token_id and ids[n_prompt:] == labels[n_prompt:]
    # too long: the prompt loses its start, the response keeps its room
    enc = causal_lm.encode_prompt_response(tok, ["my lord " * 50], [" good night"], 16)
    kept = [lab for lab in enc["labels"][0] if lab != IGNORE_INDEX]
    assert len(enc["input_ids"][0]) == 16 and tok.decode(kept, skip_special_tokens=True) == " good night"


@pytest.mark.slow  # > 30 s on 2 cores: runs in CI's slow stage (pytest -m slow)
def test_chat_data_trains_with_loss_on_replies_only(tiny_model: Path, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"{w} my lord"}, {"role": "assistant", "content": "good night"}]}
            for w in ["what", "sweet", "noble", "fair", "come", "speed"] * 4]
    for split in ("train", "validation", "test"):
        _write_jsonl(tmp_path / "chat" / f"{split}.jsonl", rows)
    report = nlpkit.train("generation", **generation_overrides(tiny_model, tmp_path / "chat", tmp_path / "run", **{
        "data.split_by": None, "train.max_steps": 40, "train.lr": 2e-2, "sample_prompts": []}))
    assert report["data_notes"]["format"] == "chat"
    # perplexity is over reply tokens only ("good night<|im_end|>\n" per conversation), and learned
    assert report["test"]["tokens"] == 24 * 4
    assert report["test"]["perplexity"] < 1.5
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    assert pipe([[{"role": "user", "content": "noble my lord"}]], max_new_tokens=6)[0].startswith("good night")


def test_prompt_response_data_and_bad_rows(tiny_model: Path, tmp_path: Path) -> None:
    from nlpkit.data import DataError

    rows = [{"prompt": "Q: " + w + "\nA:", "response": " " + w.upper()} for w in ["lord", "night", "love", "day"] * 5]
    for split in ("train", "validation", "test"):
        _write_jsonl(tmp_path / "pr" / f"{split}.jsonl", rows)
    report = nlpkit.train("generation", **generation_overrides(tiny_model, tmp_path / "pr", tmp_path / "run", **{
        "data.split_by": None, "train.max_steps": 5, "sample_prompts": []}))
    assert report["data_notes"]["format"] == "prompt_response"
    _write_jsonl(tmp_path / "bad" / "train.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}] * 10)
    with pytest.raises(DataError, match="no assistant message"):
        nlpkit.train("generation", **generation_overrides(tiny_model, tmp_path / "bad" / "train.jsonl",
                                                          tmp_path / "bad_run", **{"data.split_by": None}))


# ------------------------------------------------------------------------------------------ generation


def test_batched_and_single_greedy_outputs_match(trained_run: dict) -> None:
    pipe = nlpkit.pipeline(trained_run["run_dir"], device="cpu")
    prompts = SAMPLE_INPUTS + [play_text(2, seed=s)[: 5 + 7 * s] for s in range(7)]
    batched = pipe(prompts, batch_size=4, max_new_tokens=24)
    single = [pipe(p, max_new_tokens=24) for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1, "outputs depend on the prompt"
    # and equal transformers' own unpadded greedy generate
    model, tok = pipe.task.model, pipe.task.tokenizer
    for p, out in zip(prompts[:4], batched, strict=False):
        ids = tok(p, return_tensors="pt").input_ids if p else torch.tensor([[tok.bos_token_id]])
        ref = model.generate(ids, max_new_tokens=24, do_sample=False)
        assert tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True) == out


def test_stop_strings_cut_output(trained_run: dict) -> None:
    pipe = nlpkit.pipeline(trained_run["run_dir"], device="cpu")
    prompts = ["KING.\n", "QUEEN.\nMy lord", "FOOL."]
    full = pipe(prompts, max_new_tokens=30)
    cut = pipe(prompts, max_new_tokens=30, stop=["\n"])
    assert any("\n" in f for f in full)
    for f, c in zip(full, cut, strict=True):
        assert "\n" not in c and c == f.split("\n")[0]
    # streaming yields the same text, stop string withheld
    assert "".join(pipe.task.stream("QUEEN.\nMy lord", max_new_tokens=30, stop=["\n"])) == cut[1]
    assert "".join(pipe.task.stream("KING.\n", max_new_tokens=30)) == full[0]


def test_sampling_controls(trained_run: dict) -> None:
    pipe = nlpkit.pipeline(trained_run["run_dir"], device="cpu")
    opts = {"do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 0.95, "max_new_tokens": 16}
    a = pipe(["KING.\n", "QUEEN."], seed=1, num_return_sequences=3, **opts)
    assert a == pipe(["KING.\n", "QUEEN."], seed=1, num_return_sequences=3, **opts), "seeded sampling repeats"
    assert len(a) == 2 and all(len(x) == 3 for x in a)
    assert len({t for x in a for t in x}) > 1
    low = pipe("KING.\n", do_sample=True, temperature=1e-4, seed=3, max_new_tokens=16)
    assert low == pipe("KING.\n", max_new_tokens=16), "near-zero temperature is greedy"
    rep = pipe("KING.\n", max_new_tokens=24, repetition_penalty=5.0)
    assert rep != pipe("KING.\n", max_new_tokens=24)
    # no_repeat_ngram_size: the plain greedy output repeats token pairs, the blocked one never does
    model, tok = pipe.task.model, pipe.task.tokenizer
    prompt = tok("KING.\n", return_tensors="pt")

    def new_tokens(**options: int) -> list[int]:
        gc = causal_lm.generation_config(model, tok, max_new_tokens=40, **options)
        out = model.generate(**prompt, generation_config=gc)
        return out[0, prompt["input_ids"].shape[1]:].tolist()

    def repeats(ids: list[int]) -> int:
        pairs = list(zip(ids, ids[1:]))
        return len(pairs) - len(set(pairs))

    assert repeats(new_tokens()) > 0 and repeats(new_tokens(no_repeat_ngram_size=2)) == 0
    assert pipe("KING.\n", max_new_tokens=40, no_repeat_ngram_size=2) != pipe("KING.\n", max_new_tokens=40)
    with pytest.raises(ValueError, match="do_sample"):
        pipe("KING.", num_return_sequences=2)
    with pytest.raises(UsageError, match="Unknown generation option"):
        pipe("KING.", max_tokens=3)


def test_pipeline_takes_any_causal_lm_folder(tiny_model: Path) -> None:
    pipe = nlpkit.pipeline(str(tiny_model), device="cpu")  # a plain model folder: task guessed from config
    assert pipe.task.name == "generation"
    out = nlpkit.pipeline("generation", model=str(tiny_model), device="cpu")("KING.", max_new_tokens=5)
    assert out == pipe("KING.", max_new_tokens=5) and isinstance(out, str)


def test_cli_generate_streams(trained_run: dict, capsys: pytest.CaptureFixture) -> None:
    from nlpkit.cli import console_main

    expected = nlpkit.pipeline(trained_run["run_dir"], device="cpu")("KING.\n", max_new_tokens=12)
    console_main(["generate", trained_run["run_dir"], "KING.\n", "--max-new-tokens", "12", "--stream"])
    assert capsys.readouterr().out == "KING.\n" + expected + "\n"
    console_main(["generate", trained_run["run_dir"], "KING.\n", "--max-new-tokens", "12", "--stop", "\\n"])
    assert capsys.readouterr().out == "KING.\n" + expected.split("\n")[0] + "\n"
    with pytest.raises(SystemExit):
        console_main(["generate", trained_run["run_dir"], "KING.", "--num-return-sequences", "2"])
    assert "do_sample" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load(name: str) -> None:
    from nlpkit.config import load_config
    from nlpkit.plugins.generation import GenerationConfig

    preset = PRESETS[name]
    text = preset.read_text()
    assert "accelerate launch" in text.splitlines()[0] + text.splitlines()[1], "launch line in the header"
    cfg = load_config(GenerationConfig, preset)
    assert cfg.task == "generation"


def test_bad_format_is_a_clear_error(tiny_model: Path, plays: Path, tmp_path: Path) -> None:
    from nlpkit.data import DataError

    with pytest.raises(DataError, match="data.format"):
        nlpkit.train("generation", **generation_overrides(tiny_model, plays, tmp_path / "r", **{"data.format": "x"}))


# ------------------------------------------------------------------------------------------ real model


@pytest.mark.slow
def test_default_config_on_smollm2_few_steps(tmp_path: Path) -> None:
    """The real default (smollm2-135m on held-out Shakespeare plays), shortened to a few updates."""
    report = nlpkit.train("generation", output_dir=str(tmp_path / "run"), trackers=[], **{
        "train.max_steps": 3, "data.max_eval_tokens": 1024, "sample_prompts": ["ROMEO.\n"],
        "generate.max_new_tokens": 8})
    before = report["baseline"]["test"]["perplexity"]
    assert 5 < before < 200, "the untuned model already knows English"
    assert report["test"]["perplexity"] < before
    held = report["data_notes"]["held-out play"]
    assert len(held["test"]) == 3 and set(held["test"]).isdisjoint(held["validation"])
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    assert isinstance(pipe("Once upon a time", max_new_tokens=10), str)
