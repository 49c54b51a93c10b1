"""Where word vectors are and how they load: run and model folders, catalog names, word2vec files.

Loading someone else's vectors never runs their code. gensim's own files (``vectors.kv``, ``word2vec.model``)
are Python pickles, and unpickling a crafted one runs whatever it names, so by default vectors are read only
from formats that cannot carry code:

* ``vectors.safetensors`` + ``vocab.json`` (what a word2vec run saves: the float32 matrix, the words in index
  order with their training counts, and for fasttext the character n-gram vectors, so unknown words still work);
* the word2vec binary (``.bin``) and text (``.txt`` / ``.vec``) formats.

A pickle loads only with ``trust_pickle=True`` (the ``trust_pickle=true`` config key of the word2vec task), or
when it is provably nlpkit's own: the full gensim model a run saves for continued training
(``word2vec.model``) is recorded by its sha256 in :func:`own_pickles_file` (in the nlpkit cache folder, outside
every run folder) when nlpkit writes it, and ``init_from`` loads it without the opt-in only when the file's
sha256 is in that record. A folder copied in from elsewhere is not in the record, and nothing inside a run
folder (its descriptor included) can vouch for itself. The catalog's converted vectors in the same cache folder
are nlpkit's own for the same reason.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from nlpkit.artifacts import atomic_file, atomic_write, inside, read_descriptor
from nlpkit.assets import file_sha256
from nlpkit.errors import ConfigError, DataError, ModelNotFoundError, NlpkitError, UnsafeFileError

__all__ = ["BIN_FILE", "KV_FILE", "MODEL_FILE", "NO_VECTORS", "PICKLE_SUFFIXES", "SAFE_FILE", "TXT_FILE",
           "VOCAB_FILE", "UnknownWordError", "UnsafePickleError", "is_own_pickle", "load_full_model",
           "load_vectors", "model_folder", "own_pickles_file", "record_own_pickle", "save_vectors"]

logger = logging.getLogger("nlpkit.word2vec")

SAFE_FILE = "vectors.safetensors"  # the vectors (and fasttext n-gram vectors) as plain float32 tensors
VOCAB_FILE = "vocab.json"  # the words in index order, their counts, and what the vectors are (kind, n-gram sizes)
MODEL_FILE = "word2vec.model"  # the full gensim model (a pickle), for continued training (init_from)
KV_FILE = "vectors.kv"  # gensim KeyedVectors, a pickle: written by nlpkit before it saved SAFE_FILE
TXT_FILE = "vectors.txt"  # word2vec text format (the C tool's; readable by most libraries)
BIN_FILE = "vectors.bin"  # word2vec binary format
#: File endings that are (or may be) Python pickles: loaded only with trust_pickle.
PICKLE_SUFFIXES = (".kv", ".model", ".pkl", ".pickle", ".p", ".joblib")
_FORMAT = "nlpkit-word-vectors"
_FORMAT_VERSION = 1

NO_VECTORS = "No vectors given: set model=<run folder | glove-6b-50d | .bin/.txt/.vec file>."


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


class UnsafePickleError(UnsafeFileError):
    """A pickle file (gensim ``.kv`` / ``.model``, ``.pkl``) that nlpkit will not load without the opt-in."""

    def __init__(self, path: Path, what: str = "word vectors"):
        self.path = path
        super().__init__(
            f"Refusing to load {path}: it is a Python pickle ({what}), and unpickling a file runs any code its "
            f"author put in it. Load vectors from a format that cannot carry code (a word2vec run's "
            f"{SAFE_FILE} + {VOCAB_FILE}, or word2vec .bin/.txt/.vec files), or, if you trust whoever made "
            f"this file, opt in: the config key trust_pickle=true (word2vec task, e.g. `nlpkit evaluate RUN "
            f"trust_pickle=true`), nlpkit.pipeline(folder, trust_pickle=True), or `nlpkit baseline "
            f"--trust-pickle`.")


# --------------------------------------------------------------------------------------------- saving


def save_vectors(kv: Any, folder: str | Path) -> None:
    """Write ``kv`` (gensim KeyedVectors or FastTextKeyedVectors) as ``vectors.safetensors`` + ``vocab.json``.

    Each file is written under a temporary name and renamed, so a reader never sees half of one. The matrix
    is stored bit for bit, so the reloaded vectors give exactly the same neighbours.
    """
    from gensim.models.fasttext import FastTextKeyedVectors
    from safetensors.numpy import save_file

    folder = Path(folder)
    fasttext = isinstance(kv, FastTextKeyedVectors)
    tensors = {"vectors": np.ascontiguousarray(kv.vectors, dtype=np.float32)}
    meta: dict[str, Any] = {"format": _FORMAT, "version": _FORMAT_VERSION,
                            "kind": "fasttext" if fasttext else "word2vec", "vector_size": int(kv.vector_size)}
    if fasttext:  # the n-gram vectors give unknown words a vector; the vocabulary ones rebuild `vectors`
        tensors["vectors_vocab"] = np.ascontiguousarray(kv.vectors_vocab, dtype=np.float32)
        tensors["vectors_ngrams"] = np.ascontiguousarray(kv.vectors_ngrams, dtype=np.float32)
        meta.update(min_n=int(kv.min_n), max_n=int(kv.max_n), bucket=int(kv.bucket))
    counts = kv.expandos.get("count")
    meta["words"] = list(kv.index_to_key)
    meta["counts"] = None if counts is None else [int(c) for c in counts]
    with atomic_file(folder / SAFE_FILE) as tmp:
        save_file(tensors, str(tmp))
    atomic_write(folder / VOCAB_FILE, json.dumps(meta, ensure_ascii=False))


def _load_safe(folder: Path) -> Any:
    """KeyedVectors (FastTextKeyedVectors for fasttext) from ``vectors.safetensors`` + ``vocab.json``."""
    from gensim.models import KeyedVectors
    from gensim.models.fasttext import FastTextKeyedVectors
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        meta = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / SAFE_FILE))
        words, vectors = meta["words"], tensors["vectors"]
        kind = meta.get("kind", "word2vec")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise DataError(f"{folder} holds unreadable word vectors ({type(err).__name__}: {err}); expected "
                        f"{SAFE_FILE} with a 'vectors' tensor and {VOCAB_FILE} with 'words'.") from err
    if meta.get("format") != _FORMAT or vectors.ndim != 2 or len(words) != vectors.shape[0] or \
            len(set(words)) != len(words):
        raise DataError(f"{folder}: {VOCAB_FILE} and {SAFE_FILE} do not match ({len(words)} words for vectors of "
                        f"shape {tuple(vectors.shape)}, or repeated words, or a format other than {_FORMAT}).")
    if kind == "fasttext":
        kv = FastTextKeyedVectors(vectors.shape[1], meta["min_n"], meta["max_n"], meta["bucket"])
    else:
        kv = KeyedVectors(vectors.shape[1], dtype=np.float32)
    # Set directly rather than through add_vectors, which checks each key and copies the matrix (seconds for
    # GloVe's 400k words); the keys are known unique (checked above).
    kv.index_to_key = list(words)
    kv.key_to_index = {word: i for i, word in enumerate(words)}
    kv.vectors = vectors
    if meta.get("counts") is not None:
        kv.expandos["count"] = np.asarray(meta["counts"], dtype=np.int64)
    if kind == "fasttext":
        kv.vectors_vocab = tensors["vectors_vocab"]
        kv.vectors_ngrams = tensors["vectors_ngrams"]
        kv.recalc_char_ngram_buckets()  # which n-gram rows each vocabulary word uses (needed to train further)
    return kv


# --------------------------------------------------------------------------------------------- own pickles


def own_pickles_file() -> Path:
    """The record of the pickles nlpkit wrote on this machine (sha256 -> where and when), in the nlpkit cache
    folder (``$NLPKIT_CACHE``, else ``$HF_HOME/nlpkit``, else ``~/.cache/nlpkit``): outside every run folder,
    so a folder from elsewhere cannot vouch for itself."""
    from nlpkit.assets import cache_dir

    return cache_dir() / "own_pickles.json"


def record_own_pickle(path: str | Path) -> None:
    """Remember that nlpkit wrote the pickle ``path`` (its sha256), so :func:`load_full_model` trusts it."""
    from filelock import FileLock

    path = Path(path)
    record = own_pickles_file()
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(record) + ".lock"):  # runs saving at the same time must not drop each other's entries
            try:
                known = json.loads(record.read_text()) if record.is_file() else {}
            except json.JSONDecodeError:
                known = {}  # a damaged record only costs an opt-in for the runs it listed
            known[file_sha256(path)] = {"name": path.name, "bytes": path.stat().st_size,
                                        "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write(record, json.dumps(known, indent=1))
    except OSError as err:  # e.g. a read-only cache folder: the run itself is saved all the same
        logger.warning("Could not record %s as nlpkit's own in %s (%s): continuing training from it "
                       "(init_from) will need trust_pickle=true.", path.name, record, err)


def is_own_pickle(path: str | Path) -> bool:
    """True when nlpkit wrote exactly the bytes of ``path`` on this machine (see :func:`record_own_pickle`)."""
    record = own_pickles_file()
    if not record.is_file():
        return False
    try:
        known = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return file_sha256(Path(path)) in known


# --------------------------------------------------------------------------------------------- loading


def model_folder(spec: str) -> Path | None:
    """The folder holding saved vectors for a run folder / model folder, else None."""
    path = Path(spec).expanduser()
    markers = (SAFE_FILE, KV_FILE, MODEL_FILE)
    for folder in (path / "model", path):
        if folder.is_dir() and any((folder / m).exists() for m in markers):
            return folder
    return None


def load_vectors(spec: str, trust_pickle: bool = False) -> Any:
    """gensim KeyedVectors from a run or model folder, a catalog name or a vectors file, without running code.

    A folder loads from ``vectors.safetensors`` + ``vocab.json``; a folder saved before nlpkit wrote them
    falls back to its ``vectors.bin`` / ``vectors.txt`` (no counts, no fasttext n-grams) and, with
    ``trust_pickle``, to its ``vectors.kv`` / ``word2vec.model`` first. A ``.kv`` / ``.model`` / ``.pkl``
    file needs ``trust_pickle`` (:class:`UnsafePickleError` names the file and the opt-in); ``.bin`` is read
    as word2vec binary, anything else as word2vec text.
    """
    from nlpkit import assets

    if not spec:
        raise ConfigError(NO_VECTORS)
    if assets.is_catalog_name(spec):
        return _load_catalog(spec)
    folder = model_folder(spec)
    if folder is not None:
        return _load_folder(folder, trust_pickle)
    path = Path(spec).expanduser()
    if path.is_file() and path.name in (SAFE_FILE, VOCAB_FILE):
        return _load_safe(path.parent)
    if not path.is_file():
        raise ModelNotFoundError(f"Word vectors {spec} not found: give a word2vec run folder, a catalog name "
                                 f"(glove-6b-50d) or a word2vec .bin / .txt / .vec vectors file.")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise UnsafePickleError(path)
        return _unpickle_vectors(path)
    return _read_word2vec_format(path)


def _load_catalog(name: str) -> Any:
    """Catalog vectors from the nlpkit cache: nlpkit converted them there itself from an archive whose sha256
    it checked, so its own ``vectors.kv`` is trusted like a run's recorded pickle (see the module docstring)."""
    from gensim.models import KeyedVectors

    from nlpkit import assets

    folder = assets.fetch(name)
    if (folder / SAFE_FILE).exists() and (folder / VOCAB_FILE).exists():
        return _load_safe(folder)
    if (folder / KV_FILE).exists():
        return KeyedVectors.load(str(folder / KV_FILE))
    raise ConfigError(f"Catalog entry {name!r} holds no word vectors ({folder}); try glove-6b-50d.")


def _load_folder(folder: Path, trust_pickle: bool) -> Any:
    for name in (SAFE_FILE, VOCAB_FILE, KV_FILE, MODEL_FILE, BIN_FILE, TXT_FILE):
        if (folder / name).exists():
            inside(folder, name)  # a run's files are its own: a link out of the folder is refused
    if (folder / SAFE_FILE).exists() and (folder / VOCAB_FILE).exists():
        return _load_safe(folder)
    pickles = [folder / name for name in (KV_FILE, MODEL_FILE) if (folder / name).exists()]
    if trust_pickle and pickles:  # full fidelity (counts, fasttext n-grams) when the user vouches for the files
        return _unpickle_vectors(pickles[0])
    for name in (BIN_FILE, TXT_FILE):  # a folder saved before SAFE_FILE existed: its code-free copies
        if (folder / name).exists():
            if pickles:
                logger.warning("Loading %s from %s: its %s is a pickle, not loaded without trust_pickle=true "
                               "(the word2vec format keeps no word counts or fasttext n-grams).",
                               name, folder, pickles[0].name)
            return _read_word2vec_format(folder / name)
    raise UnsafePickleError(pickles[0]) if pickles else ModelNotFoundError(f"No word vectors in {folder}.")


def _unpickle_vectors(path: Path) -> Any:
    """Vectors from a gensim pickle the user trusts: KeyedVectors (``.kv``), else a full model's ``.wv``."""
    from gensim.models import KeyedVectors

    if path.suffix == ".model":
        return load_full_model(str(path), trust_pickle=True).wv
    try:
        return KeyedVectors.load(str(path))
    except (ValueError, EOFError, OSError, AttributeError) as err:
        raise DataError(f"{path} could not be read as gensim KeyedVectors ({type(err).__name__}: {err}).") from err


def _read_word2vec_format(path: Path) -> Any:
    """The C tool's word2vec format: binary for ``.bin``, text otherwise (parsed; it cannot run code)."""
    from gensim.models import KeyedVectors

    try:
        return KeyedVectors.load_word2vec_format(str(path), binary=path.suffix.lower() == ".bin")
    except (UnicodeDecodeError, ValueError, EOFError, OSError) as err:
        raise DataError(f"{path} could not be read as word vectors ({type(err).__name__}: {err}). Expected "
                        f"the word2vec text (.txt/.vec) or binary (.bin) format.") from err


def load_full_model(spec: str, trust_pickle: bool = False) -> Any:
    """The full gensim model (Word2Vec or FastText) saved in a run folder, model folder or .model file.

    The file is a pickle: it loads only when nlpkit recorded writing exactly these bytes on this machine
    (:func:`is_own_pickle`) or with ``trust_pickle``; otherwise :class:`UnsafePickleError`.
    """
    from gensim.models import FastText, Word2Vec

    folder = model_folder(spec)
    path = inside(folder, MODEL_FILE) if folder is not None else Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"No full word2vec model at {spec}: continued training needs a run folder "
                                 f"or a {MODEL_FILE} file (vectors alone, like {SAFE_FILE} or GloVe, cannot be "
                                 f"trained further).")
    if not trust_pickle and not is_own_pickle(path):
        raise UnsafePickleError(path, "a full gensim model that this machine's nlpkit did not write")
    # gensim needs the class to load with: the descriptor beside the file says word2vec or fasttext.
    descriptor = read_descriptor(path.parent)
    beside = descriptor is not None and descriptor.folder == path.parent
    kind = descriptor.extra.get("kind", "word2vec") if beside else "word2vec"
    return (FastText if kind == "fasttext" else Word2Vec).load(str(path))
