"""What differs between an encoder-decoder and a decoder-only translator, behind one small interface.

:class:`~nlpkit.plugins.translation.task.TranslationTask` picks a backend once, when it builds the model
(:class:`~nlpkit.plugins.translation.seq2seq.Seq2SeqBackend` or
:class:`~nlpkit.plugins.translation.decoder_only.DecoderOnlyBackend`), and hands every model-specific step to
it: tokenizing pairs, padding, the training loss, the per-example NLL, and generating translations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nlpkit.config import GenerateConfig
from nlpkit.loader import config_folder
from nlpkit.modeling import pretrained
from nlpkit.plugins.translation.config import TranslationConfig
from nlpkit.plugins.translation.data import Languages


class Backend:
    """One way of running a translation model. ``model`` arguments may be wrapped (DDP) for forward passes;
    generation gets the bare model."""

    def __init__(self, cfg: TranslationConfig, langs: Languages, tokenizer: Any):
        self.cfg, self.langs, self.tokenizer = cfg, langs, tokenizer

    @classmethod
    def load(cls, cfg: TranslationConfig, langs: Languages, path: str) -> tuple[Backend, Any]:
        """The backend and its model, loaded from ``path`` (a folder or hub id)."""
        raise NotImplementedError

    def encode(self, sources: list[str], targets: list[str] | None) -> dict[str, list]:
        """Token ids of sources (and training targets: ``labels``, -100 where not scored)."""
        raise NotImplementedError

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Padded tensors of encoded examples (other keys are left to the task)."""
        raise NotImplementedError

    def loss_items(self, batch: dict[str, Any]) -> torch.Tensor:
        """Number of target tokens the loss of ``batch`` sums over (see :meth:`nlpkit.task.Task.loss_items`)."""
        raise NotImplementedError

    def loss(self, model: Any, batch: dict[str, Any], num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss of a batch: the mean over its target tokens, or their sum / ``num_items_in_batch``."""
        raise NotImplementedError

    def nll(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example: summed target-token NLL (teacher forcing, no smoothing) and the number of tokens."""
        raise NotImplementedError

    def generate_kwargs(self, gen: GenerateConfig) -> dict[str, Any]:
        """The decoding options this backend gives ``generate`` for ``gen``."""
        return gen.generate_kwargs()

    def translate(self, model: Any, texts: list[str], gen: GenerateConfig, batch_size: int) -> list[list[str]]:
        """``gen.num_return_sequences`` translations of each (non-blank) text, in input order."""
        raise NotImplementedError

    def hypotheses(self, model: Any, batch: dict[str, Any], gen: GenerateConfig) -> list[str]:
        """One translation per example of an evaluation batch (its ``source`` strings)."""
        return [t[0] for t in self.translate(model, batch["source"], gen, batch_size=len(batch["source"]))]


def is_encoder_decoder(path: str, trust_remote_code: bool = False) -> bool:
    """Whether the model at ``path`` is an encoder-decoder (a GGUF file or a causal LM is not)."""
    from transformers import AutoConfig

    if Path(path).is_dir() and any(Path(path).glob("*.gguf")):
        return False
    # a LoRA run's adapter is what its base model is
    config = pretrained(AutoConfig, config_folder(path), trust_remote_code=trust_remote_code)
    return bool(getattr(config, "is_encoder_decoder", False))
