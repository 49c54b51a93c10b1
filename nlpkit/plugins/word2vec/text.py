"""Text preprocessing for word2vec: a documented tokenizer, optional phrases, and the line-per-sentence file.

The tokenizer (:func:`tokenize`), step by step:

1. Unicode-normalise (NFKC) and map curly quotes/apostrophes to ASCII, so ``don’t`` and ``don't`` agree.
2. Split the text into sentences: at line breaks, and after ``.``, ``!`` or ``?`` followed by white space.
   Training windows never cross a sentence boundary (each sentence is one line of the corpus file).
3. Lowercase (``text.lowercase``; GloVe and the benchmarks are lowercase).
4. Tokens are runs of letters and digits, with inner apostrophes kept (``don't``, ``o'neill``) except the
   possessive ``'s``, which becomes a token of its own (``york's`` -> ``york 's``, as in GloVe); hyphens,
   slashes and other punctuation separate tokens (``tie-breaking`` -> ``tie breaking``). With
   ``text.strip_punctuation=false`` each punctuation character is kept as a token of its own.
5. ``text.strip_numbers`` drops tokens containing a digit; tokens shorter than ``text.min_token_length``
   characters are dropped.

The same function tokenizes text at prediction time (mean-pooled text vectors, the sentiment baseline), so
training and inference see the same tokens. With ``text.phrases=true``, gensim ``Phrases`` learns frequent
collocations (``new_york``) on the tokenized corpus and the corpus file is rewritten with them joined.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpkit.artifacts import atomic_file
from nlpkit.config import opt

logger = logging.getLogger("nlpkit.word2vec")

__all__ = ["CorpusStats", "TextConfig", "sentences", "stable_hash", "tokenize", "write_corpus"]


@dataclass
class TextConfig:
    lowercase: bool = opt(True, "Lowercase all text before tokenizing.")
    min_token_length: int = opt(1, "Drop tokens shorter than this many characters.")
    strip_punctuation: bool = opt(True, "Drop punctuation (tokens are letters/digits with inner "
                                        "apostrophes); false keeps each punctuation character as a token.")
    strip_numbers: bool = opt(False, "Drop tokens that contain a digit.")
    split_sentences: bool = opt(True, "One training sentence per sentence (split at line breaks and . ! ?); "
                                      "false: one per text row.")
    phrases: bool = opt(False, "Detect collocations with gensim Phrases and join them "
                               "(new york -> new_york).")
    phrases_min_count: int = opt(5, "Phrases: ignore word pairs seen fewer times than this.")
    phrases_threshold: float = opt(10.0, "Phrases: score threshold for joining a pair "
                                         "(higher: fewer phrases).")


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u02bc": "'",
                         "\u201c": '"', "\u201d": '"'})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|[\r\n]+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_WORD_OR_PUNCT = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")
_DIGIT = re.compile(r"\d")


def _normalise(text: str, cfg: TextConfig) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return text.lower() if cfg.lowercase else text


def tokenize(text: str, cfg: TextConfig | None = None) -> list[str]:
    """Tokens of ``text`` as one sequence (no sentence split), by the rules in the module docstring."""
    cfg = cfg or TextConfig()
    pattern = _WORD if cfg.strip_punctuation else _WORD_OR_PUNCT
    tokens = pattern.findall(_normalise(text, cfg))
    if any(t.endswith("'s") for t in tokens):
        # possessive 's is a token of its own (as in GloVe and the Penn Treebank): "york's" -> "york", "'s"
        tokens = [part for t in tokens
                  for part in ((t[:-2], "'s") if t.endswith("'s") and len(t) > 2 else (t,))]
    if cfg.strip_numbers:
        tokens = [t for t in tokens if not _DIGIT.search(t)]
    if cfg.min_token_length > 1:
        tokens = [t for t in tokens if len(t) >= cfg.min_token_length]
    return tokens


def sentences(text: str, cfg: TextConfig | None = None) -> Iterator[list[str]]:
    """Tokenized sentences of ``text`` (one list per sentence, empty ones skipped)."""
    cfg = cfg or TextConfig()
    parts = _SENTENCE_END.split(text) if cfg.split_sentences else [text]
    for part in parts:
        tokens = tokenize(part, cfg)
        if tokens:
            yield tokens


def stable_hash(text: str) -> int:
    """A hash that does not change between Python processes (unlike ``hash`` without PYTHONHASHSEED).

    Used as gensim's ``hashfxn`` in reproducible mode.
    """
    return zlib.crc32(str(text).encode("utf-8"))


@dataclass
class CorpusStats:
    """What :func:`write_corpus` wrote."""

    texts: int = 0
    sentences: int = 0
    words: int = 0
    phrases: int = 0  # distinct joined phrases (0 when phrase detection is off)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_corpus(texts: Iterable[str], path: Path, cfg: TextConfig, progress: Any = None) -> CorpusStats:
    """Tokenize ``texts`` into ``path``: one sentence per line, tokens separated by single spaces.

    Written to a temporary name and renamed, so a half-written corpus is never used. With ``cfg.phrases``
    the file is then re-read to learn phrases and rewritten with them joined by ``_``.
    """
    path = Path(path)
    stats = CorpusStats()
    with atomic_file(path) as tmp:  # a unique temporary, renamed into place (never a link followed)
        with tmp.open("w", encoding="utf-8") as out:
            for text in texts:
                stats.texts += 1
                if progress is not None:
                    progress.update(1)
                if not text:
                    continue
                for sent in sentences(text, cfg):
                    # gensim's corpus_file reader splits on white space only, so tokens must not contain any
                    out.write(" ".join(sent))
                    out.write("\n")
                    stats.sentences += 1
                    stats.words += len(sent)
        if cfg.phrases and stats.words:
            stats.words, stats.phrases = _apply_phrases(tmp, cfg)
    return stats


def _apply_phrases(path: Path, cfg: TextConfig) -> tuple[int, int]:
    """Learn bigram phrases on the corpus at ``path``, rewrite it with them joined: (words, phrases)."""
    from gensim.models.phrases import ENGLISH_CONNECTOR_WORDS, Phrases
    from gensim.models.word2vec import LineSentence

    logger.info("Learning phrases (min_count=%d, threshold=%g)...", cfg.phrases_min_count,
                cfg.phrases_threshold)
    phrases = Phrases(LineSentence(str(path)), min_count=cfg.phrases_min_count,
                      threshold=cfg.phrases_threshold,
                      connector_words=ENGLISH_CONNECTOR_WORDS if cfg.lowercase else frozenset()).freeze()
    rewritten = path.with_name(path.name + ".phrases")
    words = 0
    with rewritten.open("w", encoding="utf-8") as out:
        for sent in LineSentence(str(path)):
            joined = phrases[sent]
            words += len(joined)
            out.write(" ".join(joined) + "\n")
    rewritten.replace(path)
    logger.info("Phrases: %d distinct phrases joined.", len(phrases.phrasegrams))
    return words, len(phrases.phrasegrams)
