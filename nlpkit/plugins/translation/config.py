"""The translation task's options: ``translation.*`` (with ``translation.scratch.*``) and its defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nlpkit.config import DataConfig, GenerateConfig, ModelConfig, RunConfig, TrainConfig, opt
from nlpkit.errors import ConfigError

#: ``model=scratch``: a small encoder-decoder (M2M100 architecture) and a shared tokenizer trained here.
SCRATCH = "scratch"


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
        "Dropout on embeddings and block outputs. 0 for the CPU-sized default: its 2.5 epochs under-fit, so dropout "
        "only slows learning (and 0.1 costs ~17% more time per update on CPU). Use 0.1-0.3 for runs of many epochs.",
    )
    attention_dropout: float = opt(
        0.0,
        "Dropout on attention weights (fairseq's default 0); 0.1 costs another ~17% time per update on CPU.",
    )
    init_std: Optional[float] = opt(
        None,
        "Std of the initial weights (default d_model**-0.5, as fairseq initialises its Transformer). Hugging Face's "
        "0.02 suits 1024-wide models; at width 192 it leaves token embeddings swamped by the position signal: the "
        "encoder can collapse to one vector, and the decoder then learns a source-blind language model.",
    )
    max_positions: int = opt(256, "Longest sequence (tokens) the model handles.")


@dataclass
class TranslationOptions:
    source_lang: Optional[str] = opt(
        None,
        "Source language code (default: the saved model's, else the dataset's meta.json, else en). Also the key "
        "inside a `translation` column.",
    )
    target_lang: Optional[str] = opt(
        None, "Target language code (default: the saved model's, else the dataset's meta.json, else fr)."
    )
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
    model: ModelConfig = opt(
        help="model.name: `scratch` (a small M2M100-architecture model + tokenizer trained here), a seq2seq model "
             "(hub id like Helsinki-NLP/opus-mt-en-fr, t5-small, a folder or previous run), "
             "or a causal LM for decoder-only translation (e.g. smollm2-135m); and how it is loaded.",
        factory=lambda: ModelConfig(name=SCRATCH),
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
            # Small batches, many updates: within a budget of about half an hour on a 2-core CPU, batches of 8
            # reached a lower validation loss per example seen than 16, 32 or 64 (at ~6% less throughput than 32);
            # 2.5 epochs keep the default inside that budget (~56-62 samples/s measured; 3 epochs ~28.5 min).
            full_lr=1e-3,
            lora_lr=5e-4,  # the `lora` preset's rate for a pretrained model's adapters
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

    def __post_init__(self) -> None:
        if self.train.lora and self.model.name == SCRATCH:
            raise ConfigError("train.lora=true adapts a pretrained model, but model=scratch trains a new one from "
                              "random weights (train it in full). Set model=<a seq2seq model or causal LM>, e.g. "
                              "the `lora` preset's.")
