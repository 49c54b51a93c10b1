"""The shared subword tokenizer of a from-scratch translation model, trained with the `tokenizers` library.

One SentencePiece-style Unigram (or BPE) vocabulary covers both languages, so the encoder and decoder can
share (tie) their embeddings as Marian does. It is saved in the standard Hugging Face layout
(``tokenizer.json`` + ``tokenizer_config.json``) and loads with ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from nlpkit.errors import ConfigError
from nlpkit.modeling import pretrained

logger = logging.getLogger("nlpkit.translation")

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIALS = [PAD, EOS, UNK]  # ids 0, 1, 2: pad doubles as the decoder start token, as in Marian


def train_shared_tokenizer(
    texts: Iterable[str], vocab_size: int, algorithm: str = "unigram", model_max_length: int = 512
):
    """Train a shared source+target subword tokenizer; returns a ``PreTrainedTokenizerFast``.

    ``algorithm`` is ``unigram`` (SentencePiece's default, Marian's choice) or ``bpe``. Text is NFKC-normalized
    and split on whitespace with the SentencePiece ``▁`` marker, so decoding restores the original spacing.
    Every encoded sequence ends with ``</s>``.
    """
    from transformers import PreTrainedTokenizerFast

    if algorithm == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS, unk_token=UNK, show_progress=False
        )
    elif algorithm == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    else:
        raise ConfigError(f"translation.scratch.tokenizer must be 'unigram' or 'bpe', not {algorithm!r}.")
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainer)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=model_max_length
    )
    logger.info("Trained a shared %s tokenizer: %d tokens", algorithm, len(fast))
    return fast


def load_or_train(
    folder: Path | None,
    texts: Iterable[str],
    vocab_size: int,
    algorithm: str,
    is_main_process: bool,
    model_max_length: int = 512,
):
    """The run's tokenizer: loaded from ``folder`` if it is there, else trained (main process) and saved.

    ``folder`` is the run's ``tokenizer/`` (None outside a run: trained, not kept). Called inside
    ``accelerator.main_process_first()``: the main process trains and saves first, the others then load the
    saved files, so every rank uses the very same vocabulary (and a resumed run keeps it).
    """
    from transformers import AutoTokenizer

    if folder is not None and (folder / "tokenizer.json").exists():
        return pretrained(AutoTokenizer, folder)  # the run's own tokenizer/: no remote code, ever
    if folder is not None and not is_main_process:
        raise RuntimeError(
            f"The main process did not save the shared tokenizer to {folder}; was build_model "
            f"called outside accelerator.main_process_first()?"
        )
    tok = train_shared_tokenizer(texts, vocab_size, algorithm, model_max_length)
    if folder is not None:
        tok.save_pretrained(folder)
    return tok
