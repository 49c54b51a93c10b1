"""Where word vectors are and how they load: run and model folders, catalog names, gensim and word2vec files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlpkit.artifacts import read_descriptor
from nlpkit.errors import ConfigError, DataError, ModelNotFoundError, NlpkitError

__all__ = ["BIN_FILE", "KV_FILE", "MODEL_FILE", "NO_VECTORS", "TXT_FILE", "UnknownWordError", "load_full_model",
           "load_vectors", "model_folder"]

MODEL_FILE = "word2vec.model"  # the full gensim model (Word2Vec or FastText), for continued training
KV_FILE = "vectors.kv"  # gensim KeyedVectors (FastTextKeyedVectors for fasttext: unknown words work)
TXT_FILE = "vectors.txt"  # word2vec text format (the C tool's; readable by most libraries)
BIN_FILE = "vectors.bin"  # word2vec binary format

NO_VECTORS = "No vectors given: set model=<run folder | glove-6b-50d | .kv/.bin/.txt file>."


class UnknownWordError(NlpkitError, KeyError):
    """A word that is not in the vectors' vocabulary; the message suggests close known words."""

    def __init__(self, word: str, vocab_size: int, suggestions: list[str]):
        self.word = word
        self.suggestions = suggestions
        hint = f" Close words in the vocabulary: {', '.join(suggestions)}." if suggestions else ""
        self.message = (f"{word!r} is not in the vocabulary ({vocab_size:,} words).{hint} Vectors trained "
                        f"with w2v.kind=fasttext can answer words never seen in training.")
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError's str() would show the message in quotes
        return self.message


def model_folder(spec: str) -> Path | None:
    """The folder holding saved vectors for a run folder / model folder, else None."""
    path = Path(spec).expanduser()
    for folder in (path / "model", path):
        if folder.is_dir() and ((folder / KV_FILE).exists() or (folder / MODEL_FILE).exists()):
            return folder
    return None


def load_vectors(spec: str) -> Any:
    """gensim KeyedVectors from a run or model folder, a catalog name or a .kv/.model/.bin/.txt file."""
    from gensim.models import KeyedVectors

    from nlpkit import assets

    if not spec:
        raise ConfigError(NO_VECTORS)
    if assets.is_catalog_name(spec):
        folder = assets.fetch(spec)
        if not (folder / KV_FILE).exists():
            raise ConfigError(f"Catalog entry {spec!r} holds no word vectors ({folder}); try glove-6b-50d.")
        return KeyedVectors.load(str(folder / KV_FILE))
    folder = model_folder(spec)
    if folder is not None:
        if (folder / KV_FILE).exists():
            return KeyedVectors.load(str(folder / KV_FILE))
        return load_full_model(str(folder)).wv
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"Word vectors {spec} not found: give a word2vec run folder, a catalog name "
                                 f"(glove-6b-50d) or a .kv / .model / .bin / .txt vectors file.")
    try:
        if path.suffix == ".kv":
            return KeyedVectors.load(str(path))
        if path.suffix == ".model":
            return load_full_model(str(path)).wv
        if path.suffix == ".bin":
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        return KeyedVectors.load_word2vec_format(str(path), binary=False)
    except (UnicodeDecodeError, ValueError, EOFError, OSError) as err:
        raise DataError(f"{path} could not be read as word vectors ({type(err).__name__}: {err}). Expected a "
                        f"gensim .kv/.model file or word2vec text/binary format.") from err


def load_full_model(spec: str) -> Any:
    """The full gensim model (Word2Vec or FastText) saved in a run folder, model folder or .model file."""
    from gensim.models import FastText, Word2Vec

    folder = model_folder(spec)
    path = folder / MODEL_FILE if folder is not None else Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"No full word2vec model at {spec}: continued training needs a run folder "
                                 f"or a {MODEL_FILE} file (vectors alone, like {KV_FILE} or GloVe, cannot be "
                                 f"trained further).")
    # gensim needs the class to load with: the descriptor beside the file says word2vec or fasttext.
    descriptor = read_descriptor(path.parent)
    beside = descriptor is not None and descriptor.folder == path.parent
    kind = descriptor.extra.get("kind", "word2vec") if beside else "word2vec"
    return (FastText if kind == "fasttext" else Word2Vec).load(str(path))
