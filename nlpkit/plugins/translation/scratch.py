"""The from-scratch model (``model=scratch``): a small encoder-decoder Transformer over a shared tokenizer.

Saved as a standard Hugging Face model (``M2M100`` for pre-layer-norm, ``MarianMTModel`` for post-layer-norm),
so a trained run reloads with ``AutoModelForSeq2SeqLM`` like any pretrained translation model.
"""

from __future__ import annotations

import logging
from typing import Any

from nlpkit.errors import ConfigError
from nlpkit.plugins.translation.config import ScratchConfig

logger = logging.getLogger("nlpkit.translation")


def build_scratch_model(s: ScratchConfig, tokenizer: Any) -> Any:
    """A freshly initialised encoder-decoder of shape ``s`` for ``tokenizer``'s shared vocabulary."""
    from transformers import (
        GenerationConfig,
        M2M100Config,
        M2M100ForConditionalGeneration,
        MarianConfig,
        MarianMTModel,
    )

    tok = tokenizer
    shape = dict(
        vocab_size=len(tok),
        d_model=s.d_model,
        encoder_layers=s.encoder_layers,
        decoder_layers=s.decoder_layers,
        encoder_attention_heads=s.attention_heads,
        decoder_attention_heads=s.attention_heads,
        encoder_ffn_dim=s.ffn_dim,
        decoder_ffn_dim=s.ffn_dim,
        dropout=s.dropout,
        attention_dropout=s.attention_dropout,
        activation_dropout=0.0,
        max_position_embeddings=s.max_positions,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        scale_embedding=True,
        tie_word_embeddings=True,
        init_std=s.init_std or s.d_model**-0.5,
    )
    if s.architecture == "pre_norm":
        # The same Transformer (sinusoidal positions, scaled, shared and tied embeddings) with layer norm
        # before each block and a final one after each stack (Xiong et al. 2020): it tolerates the short
        # warmup a CPU-sized budget allows.
        config = M2M100Config(**shape, encoder_layerdrop=0.0, decoder_layerdrop=0.0, bos_token_id=tok.eos_token_id)
        model = M2M100ForConditionalGeneration(config)
    elif s.architecture == "post_norm":
        model = MarianMTModel(MarianConfig(**shape, share_encoder_decoder_embeddings=True))
    else:
        raise ConfigError(
            f"translation.scratch.architecture must be 'pre_norm' or 'post_norm', not {s.architecture!r}."
        )
    model.generation_config = GenerationConfig(
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
        forced_eos_token_id=tok.eos_token_id,
    )
    n = sum(p.numel() for p in model.parameters())
    logger.info("From-scratch %s Transformer: %.1fM parameters, vocabulary %d", s.architecture, n / 1e6, len(tok))
    return model
