"""Packing of instruction data (``data.packing``): several examples per row, no attention or loss across them.

The proof that nothing crosses an example boundary: the summed loss of packed rows equals the summed loss of
the same examples padded one per row (to float tolerance), with sdpa and eager attention; and it does not when
the position ids run on across examples or a full attention mask is given (then attention leaks).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_generation import generation_overrides, tiny_llama

import nlpkit
from nlpkit import causal_lm
from nlpkit.causal_lm import IGNORE_INDEX
from nlpkit.errors import ConfigError

WORDS = ["my", "lord", "the", "good", "night", "sweet", "love", "thou", "art", "a", "fair", "day"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory)


def _rows(n: int) -> list[dict[str, str]]:
    """Prompt/response pairs of very different lengths (2 to ~40 tokens)."""
    return [{"prompt": f"Q: {WORDS[i % 12]} {WORDS[(i * 7) % 12]}\nA:",
             "response": " " + " ".join(WORDS[: 1 + (i * 5) % 12] * (1 + i % 3))} for i in range(n)]


def _encoded(tokenizer, n: int = 12) -> dict[str, list[list[int]]]:
    rows = _rows(n)
    return causal_lm.encode_prompt_response(tokenizer, [r["prompt"] for r in rows], [r["response"] for r in rows], 64)


def _batch(features: dict[str, list[list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    keys = list(features)
    return causal_lm.collate_causal([dict(zip(keys, values)) for values in zip(*features.values())], pad_id)


def test_first_fit_packing_rows() -> None:
    feats = {"input_ids": [[1] * 5, [2] * 9, [3] * 3, [4] * 6, [5] * 12], "labels": [[7] * 5, [8] * 9, [9] * 3,
                                                                                     [10] * 6, [11] * 12]}
    packed = causal_lm.pack_examples(feats, capacity=12)
    # longest first, each into the first row with room: [5]*12 | [2]*9 + [3]*3 | [4]*6 + [1]*5
    assert packed["input_ids"] == [[5] * 12, [2] * 9 + [3] * 3, [4] * 6 + [1] * 5]
    assert packed["position_ids"] == [list(range(12)), list(range(9)) + list(range(3)),
                                      list(range(6)) + list(range(5))]
    # each example's first label is -100: nothing is predicted from the previous example's last token
    assert packed["labels"][1] == [IGNORE_INDEX] + [8] * 8 + [IGNORE_INDEX] + [9] * 2
    assert sorted(x for row in packed["input_ids"] for x in row) == sorted(x for ids in feats["input_ids"] for x in ids)
    with pytest.raises(ConfigError, match="data.max_length"):
        causal_lm.pack_examples(feats, capacity=1)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(tiny_model: Path, attn: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    # The tiny architecture with 10x the usual initial weights: an untrained width-32 model is close to uniform
    # over its vocabulary whatever the context, which would hide a leak; this one depends on context strongly.
    config = AutoConfig.from_pretrained(tiny_model, initializer_range=0.2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()
    tok = causal_lm.load_tokenizer(str(tiny_model))
    feats = _encoded(tok)
    unpacked = _batch(feats, tok.pad_token_id)
    packed_feats = causal_lm.pack_examples(feats, capacity=64)
    packed = _batch(packed_feats, tok.pad_token_id)
    assert len(packed_feats["input_ids"]) < len(feats["input_ids"]) / 2  # several examples share each row
    assert "attention_mask" not in packed
    assert causal_lm.count_targets(packed) == causal_lm.count_targets(unpacked)
    with torch.no_grad():
        loose = causal_lm.causal_lm_loss(model, unpacked, num_items_in_batch=1)  # summed over target tokens
        tight = causal_lm.causal_lm_loss(model, packed, num_items_in_batch=1)
        torch.testing.assert_close(tight, loose, rtol=1e-5, atol=0.0)
        # corpus perplexity from packed evaluation rows is the same as from one example per row
        nll_p, n_p = causal_lm.token_nll(model, packed)
        nll_u, n_u = causal_lm.token_nll(model, unpacked)
        assert n_p.sum() == n_u.sum()
        torch.testing.assert_close(nll_p.sum(), nll_u.sum(), rtol=1e-5, atol=0.0)

        # The test can fail: positions that run on across examples, or a full attention mask, let attention
        # cross example boundaries (and shift positions), and the loss changes.
        running = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"]))
        leaky = causal_lm.causal_lm_loss(model, running, num_items_in_batch=1)
        assert (leaky - loose).abs() > 1e-3 * loose, (leaky, loose)
        masked = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                       attention_mask=torch.ones_like(packed["input_ids"]), use_cache=False).logits
        masked_loss = torch.nn.functional.cross_entropy(masked[:, :-1].flatten(0, 1).float(),
                                                        packed["labels"][:, 1:].flatten(), reduction="sum")
        assert (masked_loss - loose).abs() > 1e-3 * loose, (masked_loss, loose)


def _write_split_files(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_training_with_packing(tiny_model: Path, tmp_path: Path) -> None:
    data = _write_split_files(tmp_path / "pr", _rows(48))
    common = {"data.split_by": None, "data.max_length": 64, "train.max_steps": 12, "train.lr": 1e-2,
              "train.batch_size": 2, "sample_prompts": []}
    packed = nlpkit.train("generation", **generation_overrides(tiny_model, data, tmp_path / "packed", **{
        **common, "data.packing": True}))
    plain = nlpkit.train("generation", **generation_overrides(tiny_model, data, tmp_path / "plain", **common))
    assert "packing" in packed["data_notes"]
    # every response token is still scored once in evaluation, and the packed run learns
    assert packed["test"]["tokens"] == plain["test"]["tokens"]
    assert packed["test"]["perplexity"] < 0.5 * packed["baseline"]["test"]["perplexity"]
    with pytest.raises(ConfigError, match="data.packing"):
        nlpkit.train("generation", **generation_overrides(tiny_model, tmp_path / "pr", tmp_path / "text", **{
            **common, "data.format": "text", "data.packing": True}))
