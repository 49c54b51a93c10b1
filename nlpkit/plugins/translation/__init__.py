"""The translation task: a small Transformer trained from scratch, a pretrained seq2seq model, or a causal LM."""

from nlpkit.plugins.translation.config import TranslationConfig
from nlpkit.plugins.translation.data import read_aligned_texts
from nlpkit.plugins.translation.task import TranslationTask

__all__ = ["TranslationConfig", "TranslationTask", "read_aligned_texts"]
