"""Decoder-only translation with a causal LM, through :mod:`nlpkit.causal_lm`.

The source goes into a prompt (``translation.prompt_template``); the target follows after a space and ends
with EOS. The loss is on the target tokens only, and generation stops at the end of the target line. The
prompt/response encoding with loss masking, padding, NLL and left-padded batched generation with stop
strings are the generation task's pieces; only the prompt is ours.
"""

from __future__ import annotations

from typing import Any

import torch

from nlpkit.causal_lm import (
    causal_lm_loss,
    collate_causal,
    count_targets,
    encode_prompt_response,
    generate,
    load_causal_lm,
    token_nll,
)
from nlpkit.config import GenerateConfig
from nlpkit.plugins.translation.backend import Backend
from nlpkit.plugins.translation.config import TranslationConfig
from nlpkit.plugins.translation.data import Languages

STOP = ["\n"]  # the target is one line: a newline (or EOS) ends it


class DecoderOnlyBackend(Backend):
    """A causal LM continuing a translation prompt."""

    @classmethod
    def load(cls, cfg: TranslationConfig, langs: Languages, path: str) -> tuple[DecoderOnlyBackend, Any]:
        model, tokenizer = load_causal_lm(path, model=cfg.model)
        return cls(cfg, langs, tokenizer), model

    def prompt(self, source: str) -> str:
        """The prompt for ``source`` (``translation.prompt_template``)."""
        return self.cfg.translation.prompt_template.format(
            source=source, source_lang=self.langs.source, target_lang=self.langs.target,
            source_name=self.langs.source_name, target_name=self.langs.target_name)

    def encode(self, sources: list[str], targets: list[str] | None) -> dict[str, list]:
        prompts = [self.prompt(s) for s in sources]
        # the target follows the prompt after one space and ends with EOS (added by encode_prompt_response)
        responses = [" " + t for t in targets] if targets is not None else [""] * len(prompts)
        max_len = self.cfg.data.max_length + self.cfg.translation.max_target_length
        return dict(encode_prompt_response(self.tokenizer, prompts, responses, max_len))

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_causal(features, self.tokenizer.pad_token_id)

    def loss_items(self, batch: dict[str, Any]) -> torch.Tensor:
        return count_targets(batch)

    def loss(self, model: Any, batch: dict[str, Any], num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        # labels are -100 on the prompt and padding: only target tokens (and the closing EOS) are learned
        keys = ("input_ids", "attention_mask", "labels")
        return causal_lm_loss(model, {k: batch[k] for k in keys}, num_items_in_batch)

    def nll(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return token_nll(model, {k: batch[k] for k in ("input_ids", "attention_mask", "labels")})

    def translate(self, model: Any, texts: list[str], gen: GenerateConfig, batch_size: int) -> list[list[str]]:
        outs = generate(model, self.tokenizer, [self.prompt(s) for s in texts], batch_size=batch_size, gen=gen,
                        stop=STOP)
        return [[t.strip() for t in o] for o in outs]
