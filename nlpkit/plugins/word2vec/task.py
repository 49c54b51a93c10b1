"""word2vec: gensim ``Word2Vec`` / ``FastText`` vectors, trained, evaluated, reported, served like any task.

gensim trains on CPU. The main process tokenizes the corpus into a line-per-sentence file
(:mod:`nlpkit.plugins.word2vec_text`) and trains with gensim's ``corpus_file`` fast path on every core; under
``accelerate launch`` with several processes the others wait, so nothing is done or written twice.
Evaluation (:mod:`nlpkit.plugins.word2vec_eval`) scores the Google analogies, WordSim353 and SimLex-999
through nlpkit's ``word_analogy`` / ``word_similarity`` evaluate modules, for the trained vectors and for the
reference vectors (``glove-6b-50d``) side by side.

Prediction (``nlpkit.pipeline("outputs/<run>")``), one input or a list, with ``mode=``:

* ``"neighbors"`` (default): a word -> ``[{"word", "score"}, ...]``, its ``topn`` nearest words;
* ``"analogy"``: ``"man king woman"`` or ``("man", "king", "woman")`` -> the nearest words to
  king - man + woman ("man is to king as woman is to ?", the order of the Google analogy file);
* ``"similarity"``: ``"cat dog"`` or ``("cat", "dog")`` -> cosine similarity;
* ``"vector"``: a word -> its vector (list of floats);
* ``"text"``: any text -> the mean of its known tokens' vectors (same tokenizer as training), or None.

The same operations are methods of the task (``pipe.task.analogy("man", "king", "woman")``,
``.neighbors``, ``.similarity``, ``.vector``, ``.text_vector``). A word the vectors do not know raises
:class:`UnknownWordError` (a ``KeyError``) naming the word and the closest known spellings; FastText vectors
(``w2v.kind=fasttext``) answer unknown words from their character n-grams instead.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nlpkit.config import ConfigError, DataConfig, RunConfig, TrainConfig, opt, to_dict
from nlpkit.data import DataError, check_columns, load_source
from nlpkit.plugins.word2vec_eval import benchmark_vectors, nearest_neighbours
from nlpkit.plugins.word2vec_text import TextConfig, stable_hash, tokenize, write_corpus
from nlpkit.registry import register_task
from nlpkit.report import md_table, save_figure
from nlpkit.task import TASK_FILE, Task

logger = logging.getLogger("nlpkit.word2vec")

MODEL_FILE = "word2vec.model"  # the full gensim model (Word2Vec or FastText), for continued training
KV_FILE = "vectors.kv"  # gensim KeyedVectors (FastTextKeyedVectors for fasttext: unknown words work)
TXT_FILE = "vectors.txt"  # word2vec text format (the C tool's; readable by most libraries)
BIN_FILE = "vectors.bin"  # word2vec binary format
CORPUS_FILE = "corpus.txt"  # the tokenized training corpus, one sentence per line, in the run folder

MODES = ("neighbors", "analogy", "similarity", "vector", "text")


# ------------------------------------------------------------------------------------------------ config


@dataclass
class W2VConfig:
    kind: str = opt("word2vec", "`word2vec` (gensim Word2Vec) or `fasttext` (gensim FastText: character "
                                "n-grams give vectors to words never seen in training).")
    sg: bool = opt(True, "Skip-gram (true) or CBOW (false).")
    hs: bool = opt(False, "Hierarchical softmax (true) instead of / besides negative sampling.")
    negative: int = opt(5, "Negative samples per word (0: none; then hs must be true).")
    window: int = opt(5, "Maximum distance between the current and a context word.")
    vector_size: int = opt(100, "Dimensions of the word vectors.")
    min_count: int = opt(5, "Ignore words seen fewer times than this.")
    max_final_vocab: Optional[int] = opt(None, "Raise min_count as needed to keep at most this many words.")
    epochs: int = opt(15, "Passes over the corpus (gensim's epochs; train.epochs is not used by word2vec).")
    sample: float = opt(1e-3, "Downsample words more frequent than this fraction (0: off).")
    alpha: float = opt(0.025, "Initial learning rate (decays linearly to min_alpha).")
    min_alpha: float = opt(1e-4, "Final learning rate.")
    workers: int = opt(0, "Training threads (0: all cores, os.cpu_count()). train.deterministic forces 1.")
    min_n: int = opt(3, "fasttext: shortest character n-gram.")
    max_n: int = opt(6, "fasttext: longest character n-gram.")
    bucket: int = opt(200_000, "fasttext: hash buckets for n-grams (memory: bucket x vector_size floats).")


@dataclass
class W2VEvalConfig:
    restrict_vocab: int = opt(300_000, "Benchmarks use only this many most frequent words "
                                       "(gensim's default).")
    probe_words: list[str] = opt(help="Words whose nearest neighbours the report lists.", factory=lambda: [
        "president", "police", "money", "war", "france", "monday", "computer", "good"])
    neighbours: int = opt(8, "Neighbours listed per probe word.")
    plot_words: int = opt(120, "Frequent words (stop words left out) in the 2-D PCA plot.")


@dataclass
class W2VTrainConfig(TrainConfig):
    deterministic: bool = opt(False, "Reproducible mode: one worker thread, fixed seed and a "
                                     "process-independent hash, so two runs give identical vectors (slower).")


@dataclass
class Word2VecConfig(RunConfig):
    task: str = opt("word2vec", "Task name (set by the launch script).")
    model: str = opt("", "Vectors to load for evaluation and prediction: a run folder, a catalog name "
                         "(glove-6b-50d) or a .kv/.bin/.txt/.model file. Training does not use it "
                         "(see init_from).")
    init_from: Optional[str] = opt(None, "Continue training this saved model (a run folder or "
                                         "word2vec.model) on data.source; new words join its vocabulary.")
    reference_vectors: Optional[str] = opt("glove-6b-50d", "Vectors evaluated beside the trained ones in the "
                                                           "report (same forms as `model`; empty: none).")
    trackers: list[str] = opt(help="Experiment trackers (unused by word2vec).", factory=list)
    w2v: W2VConfig = opt(help="gensim model options.", factory=W2VConfig)
    text: TextConfig = opt(help="Text preprocessing (see nlpkit/plugins/word2vec_text.py).",
                           factory=TextConfig)
    eval: W2VEvalConfig = opt(help="Benchmarks and report.", factory=W2VEvalConfig)
    data: DataConfig = opt(help="Data options (every row of every split is training text).",
                           factory=lambda: DataConfig(source="news-articles"))
    train: W2VTrainConfig = opt(help="Training options (word2vec uses deterministic; the rest is for the "
                                     "transformer loop).", factory=W2VTrainConfig)


def check_config(cfg: Word2VecConfig) -> None:
    """Reject option combinations gensim would fail on late or silently ignore."""
    w = cfg.w2v
    if w.kind not in ("word2vec", "fasttext"):
        raise ConfigError(f"w2v.kind must be `word2vec` or `fasttext`, not {w.kind!r}.")
    if not w.hs and w.negative <= 0:
        raise ConfigError("w2v.negative=0 with w2v.hs=false leaves no training objective: set w2v.negative>0 "
                          "(negative sampling) or w2v.hs=true (hierarchical softmax).")
    for key in ("vector_size", "window", "min_count", "epochs"):
        if getattr(w, key) < 1:
            raise ConfigError(f"w2v.{key} must be at least 1, not {getattr(w, key)}.")
    if cfg.train.epochs != TrainConfig.epochs:
        raise ConfigError(f"train.epochs={cfg.train.epochs} is not used by word2vec: set w2v.epochs instead.")


def gensim_params(cfg: Word2VecConfig) -> dict[str, Any]:
    """The keyword arguments of ``gensim.models.Word2Vec`` / ``FastText`` for ``cfg`` (no corpus)."""
    w = cfg.w2v
    params: dict[str, Any] = dict(
        vector_size=w.vector_size, window=w.window, min_count=w.min_count, max_final_vocab=w.max_final_vocab,
        sg=int(w.sg), hs=int(w.hs), negative=w.negative, sample=w.sample, alpha=w.alpha,
        min_alpha=w.min_alpha, epochs=w.epochs, seed=cfg.seed, workers=w.workers or os.cpu_count() or 1)
    if w.kind == "fasttext":
        params.update(min_n=w.min_n, max_n=w.max_n, bucket=w.bucket)
    if cfg.train.deterministic:
        # One thread: with several, the order in which threads update shared weights varies run to run.
        # gensim's hashfxn defaults to Python's hash(), which changes per process unless PYTHONHASHSEED
        # is set.
        params.update(workers=1, hashfxn=stable_hash)
    return params


# ------------------------------------------------------------------------------------------------ loading


class UnknownWordError(KeyError):
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


def _model_folder(spec: str) -> Path | None:
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
        raise ValueError("No vectors given: set model=<run folder | glove-6b-50d | .kv/.bin/.txt file>.")
    if assets.is_catalog_name(spec):
        folder = assets.fetch(spec)
        if not (folder / KV_FILE).exists():
            raise ValueError(f"Catalog entry {spec!r} holds no word vectors ({folder}); try glove-6b-50d.")
        return KeyedVectors.load(str(folder / KV_FILE))
    folder = _model_folder(spec)
    if folder is not None:
        if (folder / KV_FILE).exists():
            return KeyedVectors.load(str(folder / KV_FILE))
        return load_full_model(str(folder)).wv
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Word vectors {spec} not found: give a word2vec run folder, a catalog name "
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

    folder = _model_folder(spec)
    path = folder / MODEL_FILE if folder is not None else Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No full word2vec model at {spec}: continued training needs a run folder "
                                f"or a {MODEL_FILE} file (vectors alone, like {KV_FILE} or GloVe, cannot be "
                                f"trained further).")
    kind = "word2vec"
    descriptor = path.parent / TASK_FILE
    if descriptor.exists():
        kind = json.loads(descriptor.read_text()).get("kind", kind)
    return (FastText if kind == "fasttext" else Word2Vec).load(str(path))


class _EpochProgress:
    """gensim callback: a progress bar over epochs and a log line per epoch (gensim's own logs are muted)."""

    def __init__(self, epochs: int):
        from gensim.models.callbacks import CallbackAny2Vec
        from tqdm.auto import tqdm

        outer = self

        class _Callback(CallbackAny2Vec):
            def on_epoch_begin(self, model: Any) -> None:
                outer.started = time.perf_counter()

            def on_epoch_end(self, model: Any) -> None:
                outer.epoch += 1
                outer.bar.update(1)
                seconds = time.perf_counter() - outer.started
                logger.info("epoch %d/%d done in %.1fs", outer.epoch, epochs, seconds)

        self.epoch = 0
        self.started = 0.0
        self.bar = tqdm(total=epochs, desc="Training word2vec", unit="epoch")
        self.callback = _Callback()

    def close(self) -> None:
        self.bar.close()


def train_vectors(cfg: Word2VecConfig, corpus_file: str | Path, init_from: str | None = None
                  ) -> tuple[Any, dict[str, Any]]:
    """Build the vocabulary and train on ``corpus_file`` (gensim's fast path): (model, training stats).

    This is the one training path: the task's :meth:`Word2VecTask.run` and ``benchmarks/word2vec_train.py``
    both call it. With ``init_from`` the saved model is loaded, its vocabulary extended with the new words
    (``build_vocab(update=True)``) and training continues on the new corpus.
    """
    from gensim.models import FastText, Word2Vec

    check_config(cfg)
    params = gensim_params(cfg)
    corpus_file = str(corpus_file)
    t0 = time.perf_counter()
    if init_from:
        model = load_full_model(init_from)
        vocab_before = len(model.wv)
        # Settings that shape the network (vector_size, sg, hs, negative, window) stay the saved model's.
        model.workers = params["workers"]
        model.hashfxn = params.get("hashfxn", hash)
        model.build_vocab(corpus_file=corpus_file, update=True)
    else:
        vocab_before = 0
        model = (FastText if cfg.w2v.kind == "fasttext" else Word2Vec)(**params)
        model.build_vocab(corpus_file=corpus_file)
    vocab_seconds = time.perf_counter() - t0
    if len(model.wv) == 0:
        raise DataError(f"No word of {cfg.data.source} occurs w2v.min_count={cfg.w2v.min_count} times: the "
                        f"vocabulary is empty. Lower w2v.min_count or give more text.")
    progress = _EpochProgress(cfg.w2v.epochs)
    t1 = time.perf_counter()
    try:
        effective, raw = model.train(corpus_file=corpus_file, total_examples=model.corpus_count,
                                     total_words=model.corpus_total_words, epochs=cfg.w2v.epochs,
                                     start_alpha=cfg.w2v.alpha, end_alpha=cfg.w2v.min_alpha,
                                     callbacks=[progress.callback])
    finally:
        progress.close()
    train_seconds = time.perf_counter() - t1
    # gensim pickles hashfxn with the model; the builtin keeps saved files loadable without nlpkit.
    model.hashfxn = hash
    words = model.corpus_total_words * cfg.w2v.epochs
    stats = {"kind": cfg.w2v.kind, "architecture": "skip-gram" if model.sg else "cbow",
             "objective": ("hierarchical softmax" if model.hs else "") + (" + " if model.hs and model.negative
                                                                          else "")
             + (f"negative sampling ({model.negative})" if model.negative else ""),
             "vector_size": model.vector_size, "window": model.window, "epochs": cfg.w2v.epochs,
             "workers": model.workers, "deterministic": cfg.train.deterministic,
             "vocab_size": len(model.wv), "vocab_added": len(model.wv) - vocab_before if init_from else None,
             "corpus_words": model.corpus_total_words, "corpus_sentences": model.corpus_count,
             "vocab_s": round(vocab_seconds, 2), "runtime_s": round(train_seconds, 2),
             "words_per_s": round(words / max(train_seconds, 1e-9)),
             "effective_words_per_s": round(effective / max(train_seconds, 1e-9)), "raw_words": raw}
    return model, stats


# ------------------------------------------------------------------------------------------------ task


@register_task("word2vec")
class Word2VecTask(Task):
    """Word vectors with gensim Word2Vec/FastText. Metrics: analogy accuracy, WordSim353/SimLex Spearman."""

    Config = Word2VecConfig
    main_metric = "analogy_accuracy"
    greater_is_better = True
    hub_task_type = "feature-extraction"
    hub_library = "gensim"
    usage_example = "president"
    cfg: Word2VecConfig

    def __init__(self, cfg: Word2VecConfig):
        super().__init__(cfg)
        check_config(cfg)
        self.full_model: Any = None  # the gensim model after training (None when only vectors were loaded)
        self._suggest_pool: list[str] | None = None

    # ------------------------------------------------------------------ data
    def load_data(self):
        """Every row of every split of ``data.source`` as training text (the benchmarks are the test)."""
        from datasets import DatasetDict, concatenate_datasets

        d = self.cfg.data
        raw, _ = load_source(d.source)
        check_columns(raw, [d.text_column], d.source, "data.text_column")
        ds = concatenate_datasets([split.select_columns([d.text_column]) for split in raw.values()])
        if d.max_train_samples:
            ds = ds.shuffle(seed=self.cfg.seed).select(range(min(d.max_train_samples, len(ds))))
        return DatasetDict({"train": ds})

    def _write_corpus(self, run_dir: Path) -> tuple[Path, dict[str, Any]]:
        from tqdm.auto import tqdm

        d = self.cfg.data
        train = self.load_data()["train"]
        path = run_dir / CORPUS_FILE
        t0 = time.perf_counter()
        with tqdm(total=len(train), desc="Tokenizing", unit="text") as bar:
            texts = (row[d.text_column] for row in train)
            stats = write_corpus(texts, path, self.cfg.text, progress=bar)
        empty = sum(1 for t in train[d.text_column] if not (t or "").strip())
        if empty:
            self.data_notes["empty texts"] = empty
        if stats.words == 0:
            raise DataError(f"{d.source}: no words left after preprocessing {stats.texts} text(s) (column "
                            f"{d.text_column!r}). Check the file holds text, or loosen "
                            f"text.min_token_length / text.strip_numbers.")
        info = {**stats.as_dict(), "preprocess_s": round(time.perf_counter() - t0, 2)}
        logger.info("Corpus %s: %s", path, info)
        return path, info

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        """Load the vectors named by ``cfg.model`` (for evaluation and prediction)."""
        self.model = load_vectors(self.cfg.model)
        self._suggest_pool = None

    # ------------------------------------------------------------------ evaluation
    def compute_metrics(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Benchmark metrics of ``outputs["vectors"]`` (KeyedVectors; default: the loaded vectors)."""
        return benchmark_vectors(outputs.get("vectors", self.model), self.cfg.eval.restrict_vocab)

    def evaluate_split(self, split: str) -> dict[str, Any]:
        """word2vec is tested on the word benchmarks, not on a split of its training text."""
        if split != "test":
            raise ValueError(f"word2vec is evaluated on the word benchmarks only: use split='test', "
                             f"not {split!r}.")
        return self.compute_metrics({"vectors": self.model})

    # ------------------------------------------------------------------ run
    def run(self, accelerator: Any, run_dir: Path) -> dict[str, Any]:
        """Main process: tokenize, train, evaluate, save. Other processes wait (gensim uses every core)."""
        from accelerate.utils import broadcast_object_list

        results: dict[str, Any] = {}
        error: Exception | None = None
        if accelerator.is_main_process:
            try:
                results = self._train_main(Path(run_dir))
                results["training"]["processes"] = accelerator.num_processes  # 1 trains, the others waited
            except Exception as exc:  # re-raised below, after telling the waiting processes
                error = exc
        if accelerator.num_processes > 1:
            # Doubles as the barrier; carrying the main process's error lets the others stop too instead
            # of waiting for a barrier that never comes.
            status = [None if error is None else f"{type(error).__name__}: {error}"]
            broadcast_object_list(status)
            if error is None and status[0] is not None:
                raise RuntimeError(f"word2vec training failed on the main process: {status[0]}")
        if error is not None:
            raise error
        return results

    def _train_main(self, run_dir: Path) -> dict[str, Any]:
        # our progress bar and epoch logs replace gensim's chatter
        logging.getLogger("gensim").setLevel(logging.WARNING)
        cfg = self.cfg
        corpus, corpus_info = self._write_corpus(run_dir)
        model, training = train_vectors(cfg, corpus, cfg.init_from)
        logger.info("Trained %s vectors: %d words, %.0f words/s", cfg.w2v.kind, training["vocab_size"],
                    training["words_per_s"])
        self.full_model, self.model = model, model.wv
        self._suggest_pool = None
        t0 = time.perf_counter()
        test = self.compute_metrics({"vectors": self.model})
        training["evaluate_s"] = round(time.perf_counter() - t0, 2)
        probes = list(cfg.eval.probe_words)
        extra: dict[str, Any] = {"corpus": corpus_info,
                                 "neighbours": nearest_neighbours(self.model, probes, cfg.eval.neighbours)}
        if cfg.reference_vectors:
            ref = load_vectors(cfg.reference_vectors)
            extra["reference"] = {"name": cfg.reference_vectors, "vocab_size": len(ref),
                                  "vector_size": ref.vector_size,
                                  "test": benchmark_vectors(ref, cfg.eval.restrict_vocab),
                                  "neighbours": nearest_neighbours(ref, probes, cfg.eval.neighbours)}
        target = run_dir / "model"
        tmp = target.with_name("model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.save(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return {"test": test, "training": training,
                "data_sizes": {"train (texts)": corpus_info["texts"], "sentences": corpus_info["sentences"],
                               "words": corpus_info["words"]},
                "stop_reason": "completed", "extra": extra}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, state_dict: Any = None) -> None:
        """Full model (if trained here), KeyedVectors, word2vec text and binary formats, the descriptor."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.full_model is not None:
            self.full_model.save(str(directory / MODEL_FILE))
        self.model.save(str(directory / KV_FILE))
        self.model.save_word2vec_format(str(directory / TXT_FILE), binary=False)
        self.model.save_word2vec_format(str(directory / BIN_FILE), binary=True)
        descriptor = {"task": self.name, "config": to_dict(self.cfg), "kind": self.cfg.w2v.kind,
                      "vocab_size": len(self.model), "vector_size": self.model.vector_size,
                      "files": {"full model": MODEL_FILE if self.full_model is not None else None,
                                "keyed vectors": KV_FILE, "text": TXT_FILE, "binary": BIN_FILE}}
        (directory / TASK_FILE).write_text(json.dumps(descriptor, indent=2))

    @classmethod
    def from_pretrained(cls, model: str, **overrides: Any) -> Word2VecTask:
        """Vectors from a run folder, a model folder, a catalog name or a vectors file, ready for predict.

        A saved run's text settings are reused, so text vectors tokenize as training did.
        """
        from nlpkit.config import load_config

        saved = None
        folder = _model_folder(model) if not _is_catalog(model) else None
        if folder is not None and (folder / TASK_FILE).exists():
            descriptor = json.loads((folder / TASK_FILE).read_text())
            saved = descriptor["config"]
        cfg = load_config(cls.Config, saved, {**overrides, "model": model, "task": cls.name})
        task = cls(cfg)
        task.build_model()
        return task

    # ------------------------------------------------------------------ inference
    def _key(self, word: str) -> str:
        """The vocabulary key for ``word`` (exact, else normalised as in training) or UnknownWordError."""
        kv = self.model
        if not isinstance(word, str):
            raise TypeError(f"Expected a word (str), got {type(word).__name__}: {word!r}")
        if word in kv.key_to_index:
            return word
        norm = word.strip().lower() if self.cfg.text.lowercase else word.strip()
        if norm in kv.key_to_index:
            return norm
        if self.cfg.w2v.kind == "fasttext" and hasattr(kv, "buckets_word") and norm:
            return norm  # FastText builds a vector from the word's character n-grams
        if self._suggest_pool is None:  # frequent words only: difflib over 400k words takes seconds
            self._suggest_pool = list(kv.index_to_key[:50_000])
        close = difflib.get_close_matches(norm, self._suggest_pool, n=5, cutoff=0.7)
        raise UnknownWordError(word, len(kv), close)

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word``."""
        return np.asarray(self.model[self._key(word)])

    def neighbors(self, word: str, topn: int = 10) -> list[dict[str, Any]]:
        """The ``topn`` words nearest to ``word`` by cosine similarity."""
        sims = self.model.most_similar(self._key(word), topn=topn)
        return [{"word": w, "score": float(s)} for w, s in sims]

    def analogy(self, a: str, b: str, c: str, topn: int = 10) -> list[dict[str, Any]]:
        """"``a`` is to ``b`` as ``c`` is to ?": the words nearest to b - a + c (3CosAdd), a, b, c excluded.

        ``analogy("man", "king", "woman")`` -> queen first, with good vectors.
        """
        positive, negative = [self._key(b), self._key(c)], [self._key(a)]
        sims = self.model.most_similar(positive=positive, negative=negative, topn=topn)
        return [{"word": w, "score": float(s)} for w, s in sims]

    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity of two words."""
        return float(self.model.similarity(self._key(w1), self._key(w2)))

    def text_vector(self, text: str) -> np.ndarray | None:
        """Mean of the vectors of ``text``'s known tokens (training's tokenizer); None if it has none."""
        tokens = tokenize(text, self.cfg.text) if isinstance(text, str) else []
        known = [t for t in tokens if t in self.model.key_to_index]
        if not known:
            return None
        return self.model.get_mean_vector(known, pre_normalize=False)

    def predict(self, inputs: list[Any], batch_size: int = 64, mode: str = "neighbors", topn: int = 10,
                **kwargs: Any) -> list[Any]:
        """One result per input; see the module docstring for the modes."""
        if kwargs:
            raise TypeError(f"Unknown option(s) for word2vec prediction: {sorted(kwargs)}; options: mode "
                            f"({', '.join(MODES)}), topn.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
        out: list[Any] = []
        for x in inputs:
            if mode == "neighbors":
                out.append(self.neighbors(x, topn))
            elif mode == "vector":
                out.append(self.vector(x).tolist())
            elif mode == "text":
                vec = self.text_vector(x)
                out.append(None if vec is None else vec.tolist())
            elif mode == "similarity":
                out.append(self.similarity(*_words(x, 2, "similarity")))
            else:
                out.append(self.analogy(*_words(x, 3, "analogy"), topn=topn))
        return out

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
        extra = results.get("extra") or {}
        sections: list[tuple[str, str]] = []
        test = results.get("test") or {}
        ref = extra.get("reference")
        ref_name = ref["name"] if ref else None
        rows = []
        for label, key in (("Google analogies: accuracy (answered)", "analogy_accuracy"),
                           ("Google analogies: accuracy (all, OOV = wrong)", "analogy_accuracy_all"),
                           ("Google analogies: semantic accuracy", "analogy_semantic_accuracy"),
                           ("Google analogies: syntactic accuracy", "analogy_syntactic_accuracy"),
                           ("Google analogies: OOV rate", "analogy_oov_rate"),
                           ("WordSim353: Spearman", "wordsim353_spearman"),
                           ("WordSim353: OOV rate", "wordsim353_oov_rate"),
                           ("SimLex-999: Spearman", "simlex999_spearman"),
                           ("SimLex-999: OOV rate", "simlex999_oov_rate")):
            rows.append([label, test.get(key, "")] + ([ref["test"].get(key, "")] if ref else []))
        training = results.get("training") or {}
        vocab = training.get("vocab_size", len(self.model) if self.model is not None else "")
        rows.append(["vocabulary", vocab] + ([ref["vocab_size"]] if ref else []))
        header = ["benchmark", "trained vectors"] + ([ref_name] if ref else [])
        note = ("Accuracy is over the questions whose four words are all in the vocabulary (gensim's "
                "convention); the 'all' row counts the others as wrong, which is fairer between vocabularies "
                "of different size.")
        title = "Benchmarks" + (f" vs {ref_name}" if ref else "")
        sections.append((title, md_table(rows, header) + "\n\n" + note))
        neighbours = extra.get("neighbours") or {}
        if neighbours:
            ref_nb = (ref or {}).get("neighbours") or {}
            nrows = []
            for word, nb in neighbours.items():
                row = [word, ", ".join(w for w, _ in nb) if nb else "(not in vocabulary)"]
                if ref:
                    rn = ref_nb.get(word)
                    row.append(", ".join(w for w, _ in rn) if rn else "(not in vocabulary)")
                nrows.append(row)
            sections.append(("Nearest neighbours of probe words",
                             md_table(nrows, ["word", "trained vectors"] + ([ref_name] if ref else []))))
        if self.model is not None and self._plot_pca(run_dir / "pca_words.png"):
            sections.append(("2-D PCA projection of frequent words",
                             "![PCA of frequent words](pca_words.png)"))
        return sections

    def _plot_pca(self, path: Path) -> bool:
        """Scatter the most frequent non-stop-words in the plane of the vectors' first two principal axes."""
        from sklearn.decomposition import PCA
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        words = [w for w in self.model.index_to_key
                 if w.isalpha() and len(w) > 2 and w not in ENGLISH_STOP_WORDS]
        words = words[: self.cfg.eval.plot_words]
        if len(words) < 3:
            return False
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        vecs = np.stack([self.model.get_vector(w, norm=True) for w in words])
        xy = PCA(n_components=2, random_state=self.cfg.seed).fit_transform(vecs)
        fig, ax = plt.subplots(figsize=(11, 8))
        ax.scatter(xy[:, 0], xy[:, 1], s=8, color="tab:blue", alpha=0.6)
        for (x, y), w in zip(xy, words, strict=True):
            ax.annotate(w, (x, y), fontsize=7, alpha=0.85, xytext=(2, 2), textcoords="offset points")
        ax.set_title(f"{len(words)} most frequent words (stop words left out), PCA of unit vectors")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.grid(alpha=0.3)
        save_figure(fig, path)
        return True


def _is_catalog(name: str) -> bool:
    from nlpkit import assets

    return assets.is_catalog_name(name)


def _words(x: Any, n: int, mode: str) -> list[str]:
    """``"a b"`` or ``("a", "b")`` -> ``["a", "b"]``, checking there are ``n`` words."""
    words = x.split() if isinstance(x, str) else list(x)
    if len(words) != n:
        raise ValueError(f"mode={mode!r} takes {n} words per input (a string of {n} words or a tuple), "
                         f"got {x!r}.")
    return words
