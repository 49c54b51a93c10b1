"""Tiny generation setup: a 2-layer, width-32 Llama with a byte-level BPE tokenizer trained on fixture text.

Used by the contract test (``tiny_overrides``/``SAMPLE_INPUTS``) and by ``tests/test_generation.py``. The model
is built from a config (no downloads), saved once per test session and loaded through ``from_pretrained``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

# A made-up play in Shakespeare's layout (speaker in capitals, then the speech); repeated structure that a
# tiny model learns quickly.
SPEAKERS = ["KING", "QUEEN", "FOOL", "HAMLET", "ROMEO", "JULIET"]
WORDS = ["my", "lord", "the", "good", "night", "sweet", "love", "thou", "art", "a", "fair", "day", "and", "I",
         "shall", "come", "to", "thee", "with", "all", "speed", "what", "is", "this", "noble", "friend"]

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")

SAMPLE_INPUTS = ["KING.\nMy lord", "", "thou art a fair day and I shall come " * 8, "QUEEN."]

_BUILT: dict[str, Path] = {}


def play_text(n_lines: int, seed: int) -> str:
    """A fixture 'play': speaker lines and short speeches."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        lines.append(f"{rng.choice(SPEAKERS)}.")
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + ".")
        lines.append("")
    return "\n".join(lines)


def build_tiny_llama(out: Path) -> Path:
    """Train a byte-level BPE tokenizer on fixture text and save it with a 2-layer width-32 Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [play_text(30, seed=s) for s in range(20)] + ["user assistant system " + " ".join(WORDS)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=512)
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model folder, built once per test session."""
    if "llama" not in _BUILT:
        _BUILT["llama"] = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    return _BUILT["llama"]


def play_corpus(folder: Path, n_plays: int = 8, lines: int = 40) -> Path:
    """A jsonl corpus with one row per play (columns play, text), like the `shakespeare` catalog corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plays.jsonl"
    with path.open("w") as fh:
        for i in range(n_plays):
            fh.write(json.dumps({"play": f"play_{i}", "text": play_text(lines, seed=100 + i)}) + "\n")
    return path


def generation_overrides(model: Path, data: Path, out: Path, **extra: object) -> dict:
    """Config for a quick tiny generation run (held-out plays, small blocks, few prompts)."""
    cfg = {"model": str(model), "data.source": str(data), "output_dir": str(out), "trackers": [],
           "data.split_by": "play", "data.test_size": 2, "data.validation_size": 1, "data.block_size": 32,
           "data.max_eval_tokens": None, "train.batch_size": 8, "train.eval_batch_size": 8, "train.lr": 3e-3,
           "train.warmup_ratio": 0.0, "train.log_every": 2, "generate.max_new_tokens": 8,
           "sample_prompts": ["KING.\n", "QUEEN."]}
    cfg.update(extra)
    return cfg


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    model = tiny_llama(request.getfixturevalue("tmp_path_factory"))
    data = play_corpus(tmp_path / "data")
    return generation_overrides(model, data, tmp_path / "run", **{"train.max_steps": 6})
