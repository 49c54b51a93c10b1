"""Tiny translation setup: a rule-based English->French toy language, data files, and tiny local models.

The toy language reorders adjectives after nouns (``the red cat sleeps`` -> ``le chat rouge dort``), so a
model has to learn more than a word-for-word lookup. Models are built from configs (Marian, T5) with a
tokenizer trained here on the fixture text and saved, then loaded through the real ``from_pretrained`` path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

NOUNS = {"cat": "chat", "dog": "chien", "bird": "oiseau", "horse": "cheval", "king": "roi", "child": "enfant"}
ADJECTIVES = {"red": "rouge", "big": "grand", "small": "petit", "old": "vieux", "happy": "heureux"}
VERBS = {"sleeps": "dort", "eats": "mange", "runs": "court", "sings": "chante", "waits": "attend"}

SAMPLE_INPUTS = ["the red cat sleeps", "the old king eats and the small dog runs", "", "the happy bird sings"]


def pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (english, french) toy pairs: one or two clauses joined by and/et."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        en, fr = [], []
        for _ in range(rng.choice([1, 1, 2])):
            noun, adj, verb = rng.choice(list(NOUNS)), rng.choice(list(ADJECTIVES)), rng.choice(list(VERBS))
            en.append(f"the {adj} {noun} {verb}")
            fr.append(f"le {NOUNS[noun]} {ADJECTIVES[adj]} {VERBS[verb]}")
        out.append((" and ".join(en), " et ".join(fr)))
    return out


def write_jsonl(path: Path, rows: list[tuple[str, str]], src: str = "en", tgt: str = "fr") -> Path:
    """Rows in the Hugging Face translation form: ``{"translation": {"en": ..., "fr": ...}}``."""
    with path.open("w") as fh:
        for s, t in rows:
            fh.write(json.dumps({"translation": {src: s, tgt: t}}) + "\n")
    return path


def write_folder(path: Path, train: list, validation: list, test: list) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        write_jsonl(path / f"{name}.jsonl", rows)
    return path


def corpus() -> list[str]:
    """Every word of the toy language, for tokenizer training."""
    words = list(NOUNS) + list(NOUNS.values()) + list(ADJECTIVES) + list(ADJECTIVES.values())
    words += list(VERBS) + list(VERBS.values()) + ["the", "le", "and", "et"]
    prefix = "translate English to French: translate French to English:"  # T5's task prefixes
    return [s for p in pairs(300, seed=9) for s in p] + [" ".join(words), prefix]


def tiny_tokenizer(vocab_size: int = 120):
    from nlpkit.plugins.translation.tokenizer import train_shared_tokenizer

    return train_shared_tokenizer(corpus(), vocab_size=vocab_size, algorithm="bpe", model_max_length=64)


def build_tiny_marian(out: Path) -> Path:
    """A 1+1-layer, width-32 MarianMTModel with a shared BPE tokenizer, saved to ``out``."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    tok = tiny_tokenizer()
    config = MarianConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        forced_eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_t5(out: Path) -> Path:
    """A 1+1-layer, width-32 T5ForConditionalGeneration (pad=0 starts the decoder, as in T5), saved to ``out``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tiny_tokenizer()
    config = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


SCRATCH_TINY = {
    "model": "scratch",
    "translation.scratch.vocab_size": 120,
    "translation.scratch.tokenizer": "bpe",
    "translation.scratch.d_model": 32,
    "translation.scratch.encoder_layers": 1,
    "translation.scratch.decoder_layers": 1,
    "translation.scratch.attention_heads": 2,
    "translation.scratch.ffn_dim": 64,
    "translation.scratch.max_positions": 64,
}


def translation_overrides(data: Path, out: Path, **extra: object) -> dict:
    """Config for a quick tiny translation run (from-scratch tiny Marian unless ``model`` is given)."""
    cfg = {
        **SCRATCH_TINY,
        "data.source": str(data),
        "output_dir": str(out),
        "trackers": [],
        "train.batch_size": 8,
        "train.eval_batch_size": 8,
        "train.lr": 3e-3,
        "train.epochs": 1.0,
        "train.log_every": 2,
        "train.warmup_ratio": 0.0,
        "generate.max_new_tokens": 24,
    }
    cfg.update(extra)
    return cfg


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    data = write_folder(tmp_path / "data", pairs(64, 1), pairs(12, 2), pairs(13, 3))
    return translation_overrides(data, tmp_path / "run", **{"train.max_steps": 6})


def build_tiny_causal(out: Path) -> Path:
    """A 2-layer, width-32 Llama with a byte-level BPE tokenizer (newlines survive, as in real causal LMs)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    eot = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = corpus() + ["Translate English to French.\nEnglish: the cat\nFrench: le chat"] * 20
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(vocab_size=400, special_tokens=[eot], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eot, eos_token=eot, unk_token=eot, model_max_length=256
    )
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out
