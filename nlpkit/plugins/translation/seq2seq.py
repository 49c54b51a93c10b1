"""Encoder-decoder translation: the from-scratch model, or a pretrained Marian / T5 / mBART / NLLB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nlpkit import loader
from nlpkit.config import GenerateConfig
from nlpkit.errors import ConfigError, UsageError
from nlpkit.inference import pad, run_sorted
from nlpkit.modeling import pretrained
from nlpkit.plugins.translation.backend import Backend
from nlpkit.plugins.translation.config import TranslationConfig
from nlpkit.plugins.translation.data import Languages

IGNORE_INDEX = -100  # label value the loss skips (padding)


class Seq2SeqBackend(Backend):
    """Sources go to the encoder (after T5's task prefix), targets are the decoder's labels."""

    def __init__(self, cfg: TranslationConfig, langs: Languages, tokenizer: Any, model_type: str = "",
                 forced_bos_token_id: int | None = None):
        super().__init__(cfg, langs, tokenizer)
        self.forced_bos_token_id = forced_bos_token_id
        prefix = cfg.translation.source_prefix
        if prefix is None and model_type == "t5":
            prefix = f"translate {langs.source_name} to {langs.target_name}: "
        #: Put before every source: ``translation.source_prefix``, defaulted for T5.
        self.prefix = prefix or ""

    @classmethod
    def from_scratch(cls, cfg: TranslationConfig, langs: Languages, texts: list[str],
                     run_dir: Path | None) -> tuple[Seq2SeqBackend, Any]:
        """A new model over a shared tokenizer trained on ``texts``; in a run, the tokenizer is kept in
        ``run_dir/tokenizer`` and every other process (and a resumed run) loads it from there."""
        from accelerate import PartialState

        from nlpkit.plugins.translation.scratch import build_scratch_model
        from nlpkit.plugins.translation.tokenizer import load_or_train

        s = cfg.translation.scratch
        folder = run_dir / "tokenizer" if run_dir is not None else None
        if not texts and not (folder is not None and (folder / "tokenizer.json").exists()):
            raise UsageError("model=scratch is a new model whose tokenizer is trained on the training split: train "
                             "it first (nlpkit.train) and load its run folder, or build it from the data's info "
                             "(task.load_model(task.load_data().info)).")
        tokenizer = load_or_train(folder, texts, s.vocab_size, s.tokenizer, PartialState().is_main_process,
                                  model_max_length=s.max_positions)
        return cls(cfg, langs, tokenizer), build_scratch_model(s, tokenizer)

    @classmethod
    def load(cls, cfg: TranslationConfig, langs: Languages, path: str) -> tuple[Seq2SeqBackend, Any]:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tokenizer = pretrained(AutoTokenizer, path, trust_remote_code=cfg.model.trust_remote_code)
        model = loader.load(AutoModelForSeq2SeqLM, path, cfg.model)  # weights, an adapter on its base, an export
        o, forced_bos = cfg.translation, None
        if o.source_lang_code:  # mBART / NLLB tokenizers put the language code into the encoded source
            tokenizer.src_lang = o.source_lang_code
        if o.target_lang_code:
            tokenizer.tgt_lang = o.target_lang_code
            forced_bos = tokenizer.convert_tokens_to_ids(o.target_lang_code)
            if forced_bos in (None, tokenizer.unk_token_id):
                raise ConfigError(
                    f"translation.target_lang_code={o.target_lang_code!r} is not a token of "
                    f"{cfg.model.name}'s tokenizer (e.g. fr_XX for mBART, fra_Latn for NLLB)."
                )
        model_type = getattr(model.config, "model_type", "")
        return cls(cfg, langs, tokenizer, model_type, forced_bos), model

    # ------------------------------------------------------------------ training
    def encode(self, sources: list[str], targets: list[str] | None) -> dict[str, list]:
        enc = self.tokenizer([self.prefix + s for s in sources], truncation=True,
                             max_length=self.cfg.data.max_length)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if targets is not None:
            out["labels"] = self.tokenizer(text_target=targets, truncation=True,
                                           max_length=self.cfg.translation.max_target_length)["input_ids"]
        return out

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, mask = pad([f["input_ids"] for f in features], self.tokenizer.pad_token_id)
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if "labels" in features[0]:
            batch["labels"] = pad([f["labels"] for f in features], IGNORE_INDEX)[0]
        return batch

    def _forward(self, model: Any, batch: dict[str, Any]) -> Any:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])

    def loss_items(self, batch: dict[str, Any]) -> torch.Tensor:
        # decoder labels are the targets themselves (the model shifts them right for its inputs): no shift here
        return (batch["labels"] != IGNORE_INDEX).sum()

    def loss(self, model: Any, batch: dict[str, Any], num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        # Summed over target tokens in float32, with label smoothing when set; divided by this batch's target
        # count, or by the update's (num_items_in_batch) under gradient accumulation and several processes.
        logits = self._forward(model, batch).logits.float()
        labels = batch["labels"]
        summed = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=IGNORE_INDEX,
                                 label_smoothing=max(self.cfg.translation.label_smoothing, 0.0), reduction="sum")
        if num_items_in_batch is None:
            num_items_in_batch = (labels != IGNORE_INDEX).sum().clamp(min=1)
        return summed / num_items_in_batch

    def nll(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        logits = self._forward(model, batch).logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
        mask = labels != IGNORE_INDEX
        return (nll * mask).sum(1), mask.sum(1)

    # ------------------------------------------------------------------ generation
    def generate_kwargs(self, gen: GenerateConfig) -> dict[str, Any]:
        kw = gen.generate_kwargs()
        if self.forced_bos_token_id is not None:  # mBART / NLLB: the target language code starts the output
            kw["forced_bos_token_id"] = self.forced_bos_token_id
        return kw

    def decode(self, sequences: torch.Tensor) -> list[str]:
        return [s.strip() for s in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    @torch.inference_mode()
    def translate(self, model: Any, texts: list[str], gen: GenerateConfig, batch_size: int) -> list[list[str]]:
        ids = self.encode(texts, None)["input_ids"]
        device = next(model.parameters()).device
        kwargs, n = self.generate_kwargs(gen), gen.num_return_sequences

        def translate_rows(rows: list[list[int]]) -> list[list[str]]:
            input_ids, mask = pad(rows, self.tokenizer.pad_token_id)
            out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
            texts_ = self.decode(out.cpu())
            return [texts_[k * n:(k + 1) * n] for k in range(len(rows))]

        return run_sorted(ids, [len(x) for x in ids], batch_size, translate_rows, desc="Translating")

    def hypotheses(self, model: Any, batch: dict[str, Any], gen: GenerateConfig) -> list[str]:
        # the batch is already tokenized and padded: generate from it directly
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             **self.generate_kwargs(gen))
        return self.decode(out.cpu())
