"""Translation: train a Marian-style model from scratch, or fine-tune any seq2seq (or causal) model.

* ``model=scratch`` (default): a shared subword tokenizer trained on the training split + a small Marian-style
  Transformer built from ``translation.scratch.*``: pre-layer-norm (saved as a standard ``M2M100`` model) by
  default, or the post-layer-norm ``MarianMTModel`` (``translation.scratch.architecture=post_norm``).
* ``model=<seq2seq id or folder>``: Marian (opus-mt), T5 (``translation.source_prefix``, defaulted for T5),
  mBART / NLLB (``translation.source_lang_code`` / ``target_lang_code``, forced BOS) fine-tuned as is.
* ``model=<causal LM>`` (e.g. ``smollm2-135m``): decoder-only translation through :mod:`nlpkit.causal_lm`:
  a prompt around the source, loss on target tokens only, generation stopping at the end of the target.

Scored with sacreBLEU and chrF (nlpkit's local ``evaluate`` modules) on generated translations, compared with
the raw reference text (not re-decoded token ids), and next to a copy-the-source baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict

from nlpkit.config import DataConfig, GenerateConfig, RunConfig, TrainConfig, opt
from nlpkit.data import DataError, check_columns, drop_empty_texts, load_source, load_splits
from nlpkit.metrics import compute
from nlpkit.modeling import resolve_model
from nlpkit.registry import register_task
from nlpkit.report import md_table, save_figure
from nlpkit.task import TASK_FILE, Task

logger = logging.getLogger("nlpkit.translation")

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "ro": "Romanian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
}
SCRATCH = "scratch"
LENGTH_BUCKETS = [(1, 10), (11, 20), (21, 30), (31, 40), (41, 60), (61, 10**9)]  # source words


@dataclass
class ScratchConfig:
    architecture: str = opt(
        "pre_norm",
        "pre_norm: layer norm before each block (fairseq's --normalize-before, the M2M100/NLLB layout; saved as an "
        "M2M100 model), which tolerates short warmup. post_norm: the original Marian layout (a MarianMTModel).",
    )
    vocab_size: int = opt(8000, "Shared source+target subword vocabulary size.")
    tokenizer: str = opt("unigram", "Subword algorithm for the shared tokenizer: unigram or bpe.")
    d_model: int = opt(192, "Hidden size.")
    encoder_layers: int = opt(3, "Encoder layers.")
    decoder_layers: int = opt(2, "Decoder layers (fewer than encoder layers: decoding is the slow part).")
    attention_heads: int = opt(4, "Attention heads (encoder and decoder).")
    ffn_dim: int = opt(768, "Feed-forward width.")
    dropout: float = opt(
        0.0,
        "Dropout on embeddings and block outputs. 0 for the 30-minute default: its 2.5 epochs under-fit, so dropout "
        "only slows learning (and 0.1 costs ~17% more time per update on CPU). Use 0.1-0.3 for runs of many epochs.",
    )
    attention_dropout: float = opt(
        0.0,
        "Dropout on attention weights (fairseq's default 0); 0.1 costs another ~17% time per update on CPU.",
    )
    init_std: Optional[float] = opt(
        None,
        "Std of the initial weights (default d_model**-0.5, as fairseq initialises its Transformer). Hugging Face's "
        "0.02 suits 1024-wide models; at width 192 it leaves token embeddings swamped by the position signal, and "
        "in our runs the encoder collapsed to one vector so the decoder learned a source-blind language model.",
    )
    max_positions: int = opt(256, "Longest sequence (tokens) the model handles.")


@dataclass
class TranslationOptions:
    source_lang: Optional[str] = opt(
        None,
        "Source language code (default: the dataset's meta.json, else en). Also the key inside a `translation` column.",
    )
    target_lang: Optional[str] = opt(None, "Target language code (default: the dataset's meta.json, else fr).")
    source_column: Optional[str] = opt(
        None,
        "Column holding the source text (default: a `translation` dict "
        "column, else a column named after source_lang, else `source`).",
    )
    target_column: Optional[str] = opt(
        None, "Column holding the reference translation (default like source_column, with target_lang / `target`)."
    )
    source_prefix: Optional[str] = opt(
        None, "Text put before every source (T5's task prefix; default for T5: 'translate English to French: ')."
    )
    source_lang_code: Optional[str] = opt(None, "mBART/NLLB source language code (e.g. en_XX, eng_Latn).")
    target_lang_code: Optional[str] = opt(
        None, "mBART/NLLB target language code (e.g. fr_XX, fra_Latn); forced as the first generated token."
    )
    max_target_length: int = opt(128, "Truncate reference translations to this many tokens for training.")
    label_smoothing: float = opt(
        0.1, "Label smoothing of the seq2seq training loss (0: plain cross-entropy; decoder-only: not used)."
    )
    prompt_template: str = opt(
        "Translate {source_name} to {target_name}.\n{source_name}: {source}\n{target_name}:",
        "Decoder-only models: the prompt around the source; the "
        "target follows after a space and ends with the EOS token.",
    )
    bleu_tokenize: Optional[str] = opt(None, "sacreBLEU tokenizer (default 13a; e.g. intl, zh, ja-mecab).")
    report_samples: int = opt(12, "Source/reference/hypothesis rows shown in the report.")
    scratch: ScratchConfig = opt(help="The from-scratch Transformer (model=scratch).", factory=ScratchConfig)


@dataclass
class TranslationConfig(RunConfig):
    task: str = opt("translation", "Task name (set by the launch script).")
    model: str = opt(
        SCRATCH,
        "`scratch` (a Marian-style model + tokenizer trained here), a seq2seq model "
        "(hub id like Helsinki-NLP/opus-mt-en-fr, t5-small, a folder or previous run), "
        "or a causal LM for decoder-only translation (e.g. smollm2-135m).",
    )
    translation: TranslationOptions = opt(help="Translation options.", factory=TranslationOptions)
    generate: GenerateConfig = opt(
        help="Decoding for evaluation and the pipeline.",
        # Beam 4: on the default run's test split +2.2 BLEU over greedy for ~3x the decoding time (about a
        # minute on 2 CPU cores); 3-gram blocking helped only the weak models of shorter runs (-0.4 BLEU here).
        factory=lambda: GenerateConfig(max_new_tokens=128, num_beams=4),
    )
    data: DataConfig = opt(
        help="Data options.",
        factory=lambda: DataConfig(source="bible-en-fr", validation_size=300.0, test_size=0.05, max_length=128),
    )
    train: TrainConfig = opt(
        help="Training options.",
        factory=lambda: TrainConfig(
            # Small batches, many updates: in a 30-minute CPU budget batches of 8 reached a lower validation loss
            # per example seen than 16, 32 or 64 (at ~6% less throughput than 32). 2.5 epochs leave a margin
            # under 30 minutes when the 2-core dev machine runs slow (~56-62 samples/s measured; 3 epochs ~28.5 min).
            lr=1e-3,
            epochs=2.5,
            batch_size=8,
            eval_batch_size=64,
            warmup_ratio=0.05,
            scheduler="linear",
            metric_for_best="bleu",
            greater_is_better=True,
            log_every=20,
        ),
    )


def _gen_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(GenerateConfig)}


@register_task("translation")
class TranslationTask(Task):
    """Sequence-to-sequence (or decoder-only) translation. Metrics: sacreBLEU, chrF, loss."""

    Config = TranslationConfig
    main_metric = "bleu"
    greater_is_better = True
    hub_task_type = "translation"
    usage_example = ["Hello, how are you?"]
    cfg: TranslationConfig

    def __init__(self, cfg: TranslationConfig):
        super().__init__(cfg)
        self.decoder_only = False
        self.run_dir: Path | None = None
        #: ref_id -> (source text, reference text) of every loaded example: metrics use the raw references.
        self.pairs: dict[int, tuple[str, str]] = {}
        self.train_texts: list[str] = []
        self.forced_bos_token_id: int | None = None

    # ------------------------------------------------------------------ languages and prompts
    @property
    def source_lang(self) -> str:
        return self.cfg.translation.source_lang or "en"

    @property
    def target_lang(self) -> str:
        return self.cfg.translation.target_lang or "fr"

    def _prefix(self) -> str:
        prefix = self.cfg.translation.source_prefix
        if prefix is None and self.model is not None and getattr(self.model.config, "model_type", "") == "t5":
            names = (
                LANGUAGE_NAMES.get(self.source_lang, self.source_lang),
                LANGUAGE_NAMES.get(self.target_lang, self.target_lang),
            )
            prefix = f"translate {names[0]} to {names[1]}: "
        return prefix or ""

    def prompt(self, source: str) -> str:
        """The decoder-only prompt for ``source`` (``translation.prompt_template``)."""
        o = self.cfg.translation
        return o.prompt_template.format(
            source=source,
            source_lang=self.source_lang,
            target_lang=self.target_lang,
            source_name=LANGUAGE_NAMES.get(self.source_lang, self.source_lang),
            target_name=LANGUAGE_NAMES.get(self.target_lang, self.target_lang),
        )

    # ------------------------------------------------------------------ data
    def load_data(self) -> DatasetDict:
        d, o = self.cfg.data, self.cfg.translation
        files = [p.strip() for p in d.source.split(",")] if "," in d.source else []
        if files:
            raw, meta = read_aligned_texts(files, refuse_empty=d.empty_texts == "error"), {}
        else:
            raw, meta = load_source(d.source)
        o.source_lang = o.source_lang or meta.get("source_lang") or "en"
        o.target_lang = o.target_lang or meta.get("target_lang") or "fr"
        group = d.split_by or meta.get("split_by")
        raw = DatasetDict({split: self._to_pairs(ds, split, meta, group) for split, ds in raw.items()})
        dropped = drop_empty_texts(raw, ["source", "target"], d.empty_texts, d.source)
        if any(dropped.values()):
            self.data_notes["empty sides skipped"] = dropped
        ds, _ = load_splits(d, self.cfg.seed, loaded=(raw, meta))
        out, offset = {}, 0
        for split in ("train", "validation", "test"):
            part = ds[split].select_columns(["source", "target"])
            ids = list(range(offset, offset + len(part)))
            offset += len(part)
            self.pairs.update(zip(ids, zip(part["source"], part["target"])))
            out[split] = part.add_column("ref_id", ids)
        self.train_texts = list(out["train"]["source"]) + list(out["train"]["target"])
        self.data_notes["languages"] = f"{o.source_lang} -> {o.target_lang}"
        return DatasetDict(out)

    def _to_pairs(self, ds: Dataset, split: str, meta: dict[str, Any], group: str | None) -> Dataset:
        """One split -> columns ``source``, ``target`` (+ the split_by group), with clear errors."""
        o, source = self.cfg.translation, self.cfg.data.source
        keep = [group] if group and group in ds.column_names else []
        if "translation" in ds.column_names and not (o.source_column or o.target_column):
            src, tgt = [], []
            for row, pair in enumerate(ds["translation"]):
                if not isinstance(pair, dict):
                    raise DataError(
                        f"{source} ({split} split) row {row}: `translation` should be a dict like "
                        f'{{"{o.source_lang}": ..., "{o.target_lang}": ...}}, got {pair!r}.'
                    )
                for lang in (o.source_lang, o.target_lang):
                    if pair.get(lang) is None:
                        present = sorted(k for k, v in pair.items() if v is not None)
                        raise DataError(
                            f"{source} ({split} split) row {row}: the translation has no {lang!r} text (it has "
                            f"{present}). Set translation.source_lang / translation.target_lang to keys "
                            f"present in every row."
                        )
                src.append(pair[o.source_lang])
                tgt.append(pair[o.target_lang])
            cols = {"source": src, "target": tgt, **{k: ds[k] for k in keep}}
            return Dataset.from_dict(cols)
        src_col = o.source_column or _first_present(ds, [meta.get("source_column"), o.source_lang, "source"])
        tgt_col = o.target_column or _first_present(ds, [meta.get("target_column"), o.target_lang, "target"])
        check_columns(DatasetDict({split: ds}), [src_col], source, "translation.source_column")
        check_columns(DatasetDict({split: ds}), [tgt_col], source, "translation.target_column")
        cols = {"source": ds[src_col], "target": ds[tgt_col], **{k: ds[k] for k in keep}}
        return Dataset.from_dict(cols)

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        if self.decoder_only:
            return self._encode_causal(batch)
        out = dict(self._tokenize_sources(batch["source"]))
        if "target" in batch:
            out["labels"] = self.tokenizer(
                text_target=batch["target"], truncation=True, max_length=self.cfg.translation.max_target_length
            )["input_ids"]
        if "ref_id" in batch:
            out["ref_id"] = batch["ref_id"]
        return out

    def _tokenize_sources(self, sources: list[str]) -> dict[str, list]:
        prefix = self._prefix()
        enc = self.tokenizer([prefix + s for s in sources], truncation=True, max_length=self.cfg.data.max_length)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.decoder_only:
            return self._collate_causal(features)
        pad = self.tokenizer.pad_token_id
        batch = {
            "input_ids": _pad([f["input_ids"] for f in features], pad),
            "attention_mask": _pad([f["attention_mask"] for f in features], 0),
        }
        if "labels" in features[0]:
            batch["labels"] = _pad([f["labels"] for f in features], -100)  # ignored by the loss
        if "ref_id" in features[0]:
            batch["ref_id"] = torch.tensor([f["ref_id"] for f in features])
        return batch

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        if self.cfg.model == SCRATCH:
            self._build_scratch()
            return
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

        path = resolve_model(self.cfg.model)
        gguf = sorted(Path(path).glob("*.gguf")) if Path(path).is_dir() else []
        config = None if gguf else AutoConfig.from_pretrained(path)
        if config is None or not getattr(config, "is_encoder_decoder", False):
            self._build_causal(path)
            return
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(path)
        o = self.cfg.translation
        if o.source_lang_code:  # mBART / NLLB tokenizers put the language code into the encoded source
            self.tokenizer.src_lang = o.source_lang_code
        if o.target_lang_code:
            self.tokenizer.tgt_lang = o.target_lang_code
            self.forced_bos_token_id = self.tokenizer.convert_tokens_to_ids(o.target_lang_code)
            if self.forced_bos_token_id in (None, self.tokenizer.unk_token_id):
                raise ValueError(
                    f"translation.target_lang_code={o.target_lang_code!r} is not a token of "
                    f"{self.cfg.model}'s tokenizer (e.g. fr_XX for mBART, fra_Latn for NLLB)."
                )

    def _build_scratch(self) -> None:
        from accelerate import PartialState
        from transformers import (
            GenerationConfig,
            M2M100Config,
            M2M100ForConditionalGeneration,
            MarianConfig,
            MarianMTModel,
        )

        from nlpkit.plugins.translation_tokenizer import load_or_train

        s = self.cfg.translation.scratch
        if not self.train_texts and not (self.run_dir and (self.run_dir / "tokenizer").exists()):
            raise RuntimeError("model=scratch trains its tokenizer on the training split: call load_data() first.")
        folder = self.run_dir / "tokenizer" if self.run_dir is not None else None
        self.tokenizer = load_or_train(
            folder,
            self.train_texts,
            s.vocab_size,
            s.tokenizer,
            PartialState().is_main_process,
            model_max_length=s.max_positions,
        )
        tok = self.tokenizer
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
            # The same Marian-sized Transformer (sinusoidal positions, scaled, shared and tied embeddings) with
            # layer norm before each block and a final one after each stack (Xiong et al. 2020): it tolerates the
            # short warmup a 30-minute CPU budget allows.
            config = M2M100Config(**shape, encoder_layerdrop=0.0, decoder_layerdrop=0.0, bos_token_id=tok.eos_token_id)
            self.model = M2M100ForConditionalGeneration(config)
        elif s.architecture == "post_norm":
            config = MarianConfig(**shape, share_encoder_decoder_embeddings=True)
            self.model = MarianMTModel(config)
        else:
            raise ValueError(
                f"translation.scratch.architecture must be 'pre_norm' or 'post_norm', not {s.architecture!r}."
            )
        self.model.generation_config = GenerationConfig(
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
            forced_eos_token_id=tok.eos_token_id,
        )
        n = sum(p.numel() for p in self.model.parameters())
        logger.info("From-scratch %s Transformer: %.1fM parameters, vocabulary %d", s.architecture, n / 1e6, len(tok))

    # ------------------------------------------------------------------ training
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.decoder_only:
            return self._loss_causal(model, batch)
        smoothing = self.cfg.translation.label_smoothing
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        if smoothing <= 0:
            return out.loss
        logits = out.logits.float()
        return F.cross_entropy(
            logits.view(-1, logits.size(-1)), batch["labels"].view(-1), ignore_index=-100, label_smoothing=smoothing
        )

    # ------------------------------------------------------------------ generation
    def generate_kwargs(self, gen: GenerateConfig | None = None) -> dict[str, Any]:
        """``generate()`` options from a GenerateConfig (the run's by default)."""
        g = gen or self.cfg.generate
        kw: dict[str, Any] = {
            "max_new_tokens": g.max_new_tokens,
            "num_beams": g.num_beams,
            "do_sample": g.do_sample,
            "num_return_sequences": g.num_return_sequences,
        }
        if g.repetition_penalty != 1.0:
            kw["repetition_penalty"] = g.repetition_penalty
        if g.no_repeat_ngram_size < 0:
            raise ValueError(f"generate.no_repeat_ngram_size must be 0 (off) or a positive n-gram size, "
                             f"not {g.no_repeat_ngram_size}.")
        if g.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = g.no_repeat_ngram_size
        if g.do_sample:
            kw.update(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
        if self.forced_bos_token_id is not None:
            kw["forced_bos_token_id"] = self.forced_bos_token_id
        return kw

    def _generate(
        self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, gen: GenerateConfig | None = None
    ) -> torch.Tensor:
        """Generated target token ids of an encoder-decoder model."""
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **self.generate_kwargs(gen))

    def decode(self, sequences: list[list[int]]) -> list[str]:
        """Token ids (possibly padded with -100 by the cross-process gather) -> cleaned-up strings."""
        clean = [[t for t in seq if t >= 0] for seq in sequences]
        return [s.strip() for s in self.tokenizer.batch_decode(clean, skip_special_tokens=True)]

    def hypotheses(self, outputs: dict[str, list]) -> list[str]:
        """The gathered hypotheses as strings: token ids (seq2seq) or UTF-8 bytes (decoder-only)."""
        if "pred_utf8" in outputs:
            return [bytes(b for b in row if b >= 0).decode("utf-8", errors="replace") for row in outputs["pred_utf8"]]
        return self.decode(outputs["pred"])

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # generate() lives on the bare model, not on the DDP/compile wrapper the loop hands us
        unwrapped = getattr(model, "_orig_mod", model)
        unwrapped = getattr(unwrapped, "module", unwrapped)
        nll, n_tokens = self._nll(model, batch)
        out = {"ref_id": batch["ref_id"], "nll": nll, "n_tokens": n_tokens}
        if self.decoder_only:
            out["pred_utf8"] = self._eval_causal(unwrapped, batch)
        else:
            gen = dataclasses.replace(self.cfg.generate, num_return_sequences=1)
            out["pred"] = self._generate(unwrapped, batch["input_ids"], batch["attention_mask"], gen)
        return out

    def _nll(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example summed target-token NLL and token counts (teacher forcing, no smoothing)."""
        if self.decoder_only:
            from nlpkit.causal_lm import token_nll

            return token_nll(model, {k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
        else:
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            ).logits.float()
            labels = batch["labels"]
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        mask = labels != -100
        return (nll * mask).sum(1), mask.sum(1)

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        ids = [int(i) for i in outputs["ref_id"]]
        if len(set(ids)) != len(ids):  # the gather must neither duplicate nor drop sentences
            raise RuntimeError(f"Evaluation saw {len(ids) - len(set(ids))} duplicated sentences.")
        hyps = self.hypotheses(outputs)
        srcs = [self.pairs[i][0] for i in ids]
        refs = [self.pairs[i][1] for i in ids]
        tok = self.cfg.translation.bleu_tokenize
        bleu = compute("sacrebleu", predictions=hyps, references=refs, tokenize=tok)
        chrf = compute("chrf", predictions=hyps, references=refs)
        copy = compute("sacrebleu", predictions=srcs, references=refs, tokenize=tok)
        n_tokens = sum(outputs["n_tokens"])
        return {
            "bleu": bleu["score"],
            "chrf": chrf["score"],
            "loss": float(sum(outputs["nll"]) / max(n_tokens, 1)),
            "copy_source_bleu": copy["score"],
            "length_ratio": bleu["sys_len"] / max(bleu["ref_len"], 1),
            "bleu_signature": bleu["signature"],
            "chrf_signature": chrf["signature"],
        }

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def predict(self, inputs: list[Any], batch_size: int = 64, **kwargs: Any) -> list[Any]:
        """Translations of ``inputs`` (strings), in input order; blank inputs give "".

        ``kwargs`` are decoding options (``num_beams``, ``max_new_tokens``, ``do_sample``, ...: the
        ``generate.*`` config keys), defaulting to the run's evaluation settings. Sources are sorted by
        length so each batch pads little; with ``num_return_sequences > 1`` each result is a list.
        """
        unknown = set(kwargs) - _gen_fields()
        if unknown:
            raise TypeError(f"Unknown decoding option(s) {sorted(unknown)}; use any of {sorted(_gen_fields())}.")
        gen = dataclasses.replace(self.cfg.generate, **kwargs)
        for i, t in enumerate(inputs):
            if not isinstance(t, str):
                raise TypeError(f"Input {i} is a {type(t).__name__}, expected a string.")
        n_ret = gen.num_return_sequences
        results: list[Any] = [[""] * n_ret if n_ret > 1 else "" for _ in inputs]
        todo = [i for i, t in enumerate(inputs) if t.strip()]
        if not todo:
            return results
        if self.decoder_only:  # causal_lm.generate sorts by length and left-pads itself
            texts = self._causal_texts(self.model, [inputs[i] for i in todo], gen, batch_size)
            for j, i in enumerate(todo):
                results[i] = texts[j] if n_ret > 1 else texts[j][0]
            return results
        enc = self.encode({"source": [inputs[i] for i in todo]})
        order = sorted(range(len(todo)), key=lambda j: -len(enc["input_ids"][j]))
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = self.collate([{k: enc[k][j] for k in ("input_ids", "attention_mask")} for j in chunk])
            out = self._generate(self.model, batch["input_ids"].to(device), batch["attention_mask"].to(device), gen)
            texts = self.decode(out.cpu().tolist())
            for row, j in enumerate(chunk):
                got = texts[row * n_ret : (row + 1) * n_ret]
                results[todo[j]] = got if n_ret > 1 else got[0]
        return results

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_pretrained(cls, model: str, **overrides: Any) -> Task:
        """Load a saved run/model with the config it was trained with (languages, prefix, prompt, decoding)."""
        from nlpkit.config import load_config

        path = resolve_model(model) if model != SCRATCH else model
        descriptor = Path(path) / TASK_FILE
        saved = json.loads(descriptor.read_text())["config"] if descriptor.exists() else None
        cfg = load_config(cls.Config, saved, {**overrides, "model": path, "task": cls.name})
        task = cls(cfg)
        task.build_model()
        task.model.eval()
        return task

    # ------------------------------------------------------------------ run and report
    def run(self, accelerator: Any, run_dir: Path) -> dict[str, Any]:
        self.run_dir = Path(run_dir)  # where the from-scratch tokenizer is trained once and shared
        return super().run(accelerator, run_dir)

    def report_extras(self, run_dir: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
        test, outputs = results.get("test") or {}, results.get("test_outputs") or {}
        if not test or "ref_id" not in outputs:
            return []
        ids = [int(i) for i in outputs["ref_id"]]
        hyps = self.hypotheses(outputs)
        srcs = [self.pairs[i][0] for i in ids]
        refs = [self.pairs[i][1] for i in ids]
        sections = [
            (
                "Translation scores (test)",
                md_table(
                    [
                        ("sacreBLEU", round(test["bleu"], 2)),
                        ("chrF", round(test["chrf"], 2)),
                        ("copy-the-source baseline BLEU", round(test["copy_source_bleu"], 2)),
                        ("hypothesis/reference length ratio", round(test["length_ratio"], 3)),
                        ("sentences", test["samples"]),
                        ("decoding", json.dumps(self.generate_kwargs())),
                        ("BLEU signature", f"`{test['bleu_signature']}`"),
                        ("chrF signature", f"`{test['chrf_signature']}`"),
                    ],
                    ["", ""],
                ),
            )
        ]
        # samples spread over the test split (ordered by ref id, i.e. the data order), not cherry-picked
        order = sorted(range(len(ids)), key=lambda k: ids[k])
        k = max(1, self.cfg.translation.report_samples)
        picks = order[:: max(1, len(order) // k)][:k]
        rows = [(srcs[i], refs[i], hyps[i]) for i in picks]
        sections.append(("Sample translations (test)", md_table(rows, ["source", "reference", "hypothesis"])))
        sections.append(self._bleu_by_length(run_dir, srcs, refs, hyps))
        return sections

    def _bleu_by_length(self, run_dir: Path, srcs: list[str], refs: list[str], hyps: list[str]) -> tuple[str, str]:
        """Corpus BLEU per source-length bucket (words), as a bar plot and a table."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = []
        for lo, hi in LENGTH_BUCKETS:
            idx = [i for i, s in enumerate(srcs) if lo <= len(s.split()) <= hi]
            if not idx:
                continue
            score = compute(
                "sacrebleu",
                predictions=[hyps[i] for i in idx],
                references=[refs[i] for i in idx],
                tokenize=self.cfg.translation.bleu_tokenize,
            )["score"]
            rows.append((f"{lo}-{hi}" if hi < 10**9 else f"{lo}+", len(idx), round(score, 2)))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bars = ax.bar([r[0] for r in rows], [r[2] for r in rows], color="tab:blue")
        for bar, r in zip(bars, rows):
            ax.annotate(
                f"n={r[1]}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
            )
        ax.set_xlabel("source length (words)")
        ax.set_ylabel("sacreBLEU")
        ax.set_title("Test BLEU by source length")
        save_figure(fig, run_dir / "bleu_by_length.png")
        table = md_table(rows, ["source words", "sentences", "BLEU"])
        return "BLEU by source length (test)", f"![BLEU by source length](bleu_by_length.png)\n\n{table}"

    # ------------------------------------------------------------------ decoder-only (nlpkit.causal_lm)
    # The prompt/response encoding with loss masking, padding, NLL and left-padded batched generation with stop
    # strings are the generation task's pieces (nlpkit.causal_lm); only the prompt template is ours.
    STOP = ["\n"]  # the target is one line: a newline (or EOS) ends it

    def _build_causal(self, path: str) -> None:
        from nlpkit.causal_lm import load_causal_lm

        self.model, self.tokenizer = load_causal_lm(path)
        self.decoder_only = True

    def _encode_causal(self, batch: dict[str, list]) -> dict[str, list]:
        from nlpkit.causal_lm import encode_prompt_response

        prompts = [self.prompt(s) for s in batch["source"]]
        # the target follows the prompt after one space and ends with EOS (added by encode_prompt_response)
        targets = [" " + t for t in batch["target"]] if "target" in batch else [""] * len(prompts)
        max_len = self.cfg.data.max_length + self.cfg.translation.max_target_length
        out: dict[str, list] = dict(encode_prompt_response(self.tokenizer, prompts, targets, max_len))
        if "ref_id" in batch:
            out["ref_id"] = batch["ref_id"]
        return out

    def _collate_causal(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from nlpkit.causal_lm import collate_causal

        batch = collate_causal(features, self.tokenizer.pad_token_id)
        if "ref_id" in features[0]:
            batch["ref_id"] = torch.tensor([f["ref_id"] for f in features])
        return batch

    def _loss_causal(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # labels are -100 on the prompt and padding: only target tokens (and the closing EOS) are learned
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss

    def _causal_texts(
        self, model: Any, sources: list[str], gen: GenerateConfig | None, batch_size: int
    ) -> list[list[str]]:
        from nlpkit.causal_lm import generate

        g = gen or self.cfg.generate
        outs = generate(
            model,
            self.tokenizer,
            [self.prompt(s) for s in sources],
            batch_size=batch_size,
            max_new_tokens=g.max_new_tokens,
            do_sample=g.do_sample,
            temperature=g.temperature,
            top_k=g.top_k,
            top_p=g.top_p,
            repetition_penalty=g.repetition_penalty,
            no_repeat_ngram_size=g.no_repeat_ngram_size,
            num_return_sequences=g.num_return_sequences,
            num_beams=g.num_beams,
            stop=self.STOP,
        )
        return [[t.strip() for t in o] for o in outs]

    def _eval_causal(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Generated translations of a batch as UTF-8 byte rows (gathered like token ids, decoded exactly)."""
        sources = [self.pairs[int(i)][0] for i in batch["ref_id"]]
        gen = dataclasses.replace(self.cfg.generate, num_return_sequences=1)
        texts = [o[0] for o in self._causal_texts(model, sources, gen, batch_size=len(sources))]
        rows = [list(t.encode("utf-8")) or [] for t in texts]
        out = torch.full((len(rows), max(1, max(len(r) for r in rows))), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(batch["input_ids"].device)


# ---------------------------------------------------------------------------------------------- helpers


def _first_present(ds: Dataset, candidates: list[str | None]) -> str:
    """The first candidate column present in ``ds`` (else the last candidate, for the error message)."""
    names = [c for c in candidates if c]
    return next((c for c in names if c in ds.column_names), names[-1])


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def read_aligned_texts(files: list[str], refuse_empty: bool = False) -> DatasetDict:
    """Two line-aligned plain-text files (source, target) -> one ``train`` split with source/target columns.

    Fails naming both files when they differ in line count, or are missing, empty or not UTF-8; with
    ``refuse_empty``, also on the first blank line of either side (naming the file and line).
    """
    if len(files) != 2:
        raise DataError(
            f"data.source={','.join(files)!r}: give exactly two line-aligned text files, "
            f"source first, target second (e.g. data.source=train.en,train.fr)."
        )
    lines = []
    for f in files:
        path = Path(f).expanduser()
        if not path.is_file():
            raise DataError(f"Aligned text file {f} does not exist.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{f} is not valid UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8."
            ) from None
        lines.append(text.rstrip("\n").split("\n") if text.strip() else [])
    (src_file, tgt_file), (src, tgt) = files, lines
    if not src or not tgt:
        raise DataError(f"{src_file if not src else tgt_file} is empty: expected one sentence per line.")
    if len(src) != len(tgt):
        raise DataError(
            f"The aligned files are misaligned: {src_file} has {len(src)} lines but {tgt_file} has "
            f"{len(tgt)}. Line i of one must translate line i of the other."
        )
    if refuse_empty:
        for i, (s, t) in enumerate(zip(src, tgt)):
            if not s.strip() or not t.strip():
                blank, other = (src_file, tgt_file) if not s.strip() else (tgt_file, src_file)
                raise DataError(
                    f"{blank} line {i + 1} is empty (its pair in {other}: {(t if not s.strip() else s)!r}). "
                    f"Fix it or set data.empty_texts=skip to drop such pairs."
                )
    return DatasetDict({"train": Dataset.from_dict({"source": src, "target": tgt})})
