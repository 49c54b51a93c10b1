"""word2vec: gensim ``Word2Vec`` / ``FastText`` vectors, trained, evaluated, reported, served like any task.

gensim trains on CPU. The task's own trainer (:class:`~nlpkit.plugins.word2vec.trainer.GensimTrainer`) has the
main process tokenize the corpus into a line-per-sentence file (:mod:`nlpkit.plugins.word2vec.text`) and train
with gensim's ``corpus_file`` fast path on every core; under ``accelerate launch`` with several processes the
others wait, so nothing is done or written twice. Evaluation (:mod:`nlpkit.plugins.word2vec.benchmarks`)
scores the Google analogies, WordSim353 and SimLex-999 through nlpkit's ``word_analogy`` / ``word_similarity``
evaluate modules, for the trained vectors and for the reference vectors (``glove-6b-50d``) side by side.

Prediction (``nlpkit.pipeline("outputs/<run>")``), one input or a list, with ``mode=``:

* ``"neighbors"`` (default): a word -> ``[{"word", "score"}, ...]``, its ``topn`` nearest words;
* ``"analogy"``: ``"man king woman"`` or ``("man", "king", "woman")`` -> the nearest words to
  king - man + woman ("man is to king as woman is to ?", the order of the Google analogy file);
* ``"similarity"``: ``"cat dog"`` or ``("cat", "dog")`` -> cosine similarity;
* ``"vector"``: a word -> its vector (list of floats);
* ``"text"``: any text -> the mean of its known tokens' vectors (same tokenizer as training), or None.

The same operations are methods of the task (``pipe.task.analogy("man", "king", "woman")``,
``.neighbors``, ``.similarity``, ``.vector``, ``.text_vector``). A word the vectors do not know raises
:class:`~nlpkit.plugins.word2vec.vectors.UnknownWordError` (a ``KeyError``) naming the word and the closest
known spellings; FastText vectors (``w2v.kind=fasttext``) answer unknown words from their character n-grams
instead.

The sentiment baseline on word vectors is ``nlpkit baseline`` (:mod:`nlpkit.plugins.word2vec.baseline`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlpkit.data import check_columns, load_source
from nlpkit.errors import ConfigError, UsageError
from nlpkit.plugins.word2vec.benchmarks import benchmark_vectors
from nlpkit.plugins.word2vec.config import Word2VecConfig, check_config
from nlpkit.plugins.word2vec.text import tokenize
from nlpkit.plugins.word2vec.trainer import GensimTrainer, train_vectors
from nlpkit.plugins.word2vec.vectors import (
    BIN_FILE,
    MODEL_FILE,
    NO_VECTORS,
    SAFE_FILE,
    TXT_FILE,
    VOCAB_FILE,
    UnknownWordError,
    load_vectors,
    model_folder,
    record_own_pickle,
    save_vectors,
)
from nlpkit.report import md_table, save_figure
from nlpkit.task import Data, DataInfo, RunResults, Task

if TYPE_CHECKING:
    import argparse

__all__ = ["MODES", "Word2VecTask"]

MODES = ("neighbors", "analogy", "similarity", "vector", "text")


class Word2VecTask(Task):
    """Word vectors with gensim Word2Vec/FastText. Metrics: analogy accuracy, WordSim353/SimLex Spearman."""

    Config = Word2VecConfig
    trainer = GensimTrainer
    hub_task_type = "feature-extraction"
    hub_library = "gensim"
    usage_example = "president"
    saved_files = (SAFE_FILE, MODEL_FILE)
    cfg: Word2VecConfig

    def __init__(self, cfg: Word2VecConfig, *, run_dir: str | Path | None = None, saved: DataInfo | None = None):
        super().__init__(cfg, run_dir=run_dir, saved=saved)
        check_config(cfg)
        #: The full gensim model when trained here (saved for continued training); None when vectors were loaded.
        self.full_model: Any = None
        self._suggest_pool: list[str] | None = None

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        """Every row of every split of ``data.source`` as training text (the benchmarks are the test)."""
        from datasets import DatasetDict, concatenate_datasets

        d = self.cfg.data
        raw, _ = load_source(d.source)
        check_columns(raw, [d.text_column], d.source, "data.text_column")
        ds = concatenate_datasets([split.select_columns([d.text_column]) for split in raw.values()])
        if d.max_train_samples:
            ds = ds.shuffle(seed=self.cfg.seed).select(range(min(d.max_train_samples, len(ds))))
        empty = sum(1 for t in ds[d.text_column] if not (t or "").strip())
        return Data(DatasetDict({"train": ds}), notes={"empty texts": empty} if empty else {})

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        """Load the vectors named by ``cfg.model.name`` (for evaluation and prediction)."""
        self.model = load_vectors(self.cfg.model.name, trust_pickle=self.cfg.trust_pickle)
        self.full_model = None
        self._suggest_pool = None

    def train_model(self, corpus_file: str | Path) -> tuple[Any, dict[str, Any]]:
        """Train a gensim model on ``corpus_file`` (continuing ``init_from`` if set): (model, training stats).

        The task's own model is not changed; the trainer hands the result to :meth:`set_trained_model`.
        """
        return train_vectors(self.cfg, corpus_file, self.cfg.init_from)

    def set_trained_model(self, model: Any, info: DataInfo) -> None:
        """Serve, evaluate and save ``model`` (a trained gensim Word2Vec/FastText), full model included."""
        self.info = info
        self.full_model, self.model = model, model.wv
        self._suggest_pool = None

    @classmethod
    def resolve(cls, model: str) -> str:
        """Where the vectors ``model`` are: a catalog name as is, a run or model folder as the folder holding
        the vectors (its descriptor gives the saved config), anything else (a vectors file) as given."""
        from nlpkit import assets

        if not model:
            raise ConfigError(NO_VECTORS)
        if assets.is_catalog_name(model):
            return model  # fetched when the vectors load
        folder = model_folder(model)
        return str(folder) if folder is not None else model

    @classmethod
    def from_saved(cls, model: str, **overrides: Any) -> Word2VecTask:
        """As :meth:`Task.from_saved`, except that ``trust_pickle`` comes only from ``overrides``, never from the
        saved config: a folder must not be able to opt itself in to unpickling its own files."""
        overrides = {"trust_pickle": False, **overrides}  # the caller's value, if given, wins
        return super().from_saved(model, **overrides)  # type: ignore[return-value]

    # ------------------------------------------------------------------ evaluation
    def compute_metrics(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Benchmark metrics of ``outputs["vectors"]`` (KeyedVectors; default: the loaded vectors)."""
        return benchmark_vectors(outputs.get("vectors", self.model), self.cfg.eval.restrict_vocab)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, state_dict: Any = None) -> None:
        """The vectors in code-free formats (``vectors.safetensors`` + ``vocab.json``, what nlpkit loads;
        word2vec text and binary, for other tools), the full gensim model when trained here (a pickle, for
        ``init_from``; recorded as nlpkit's own, see :mod:`~nlpkit.plugins.word2vec.vectors`), the descriptor."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.full_model is not None:
            self.full_model.save(str(directory / MODEL_FILE))
            record_own_pickle(directory / MODEL_FILE)
        save_vectors(self.model, directory)
        self.model.save_word2vec_format(str(directory / TXT_FILE), binary=False)
        self.model.save_word2vec_format(str(directory / BIN_FILE), binary=True)
        self.write_descriptor(directory, kind=self.cfg.w2v.kind, vocab_size=len(self.model),
                              vector_size=self.model.vector_size,
                              files={"full model": MODEL_FILE if self.full_model is not None else None,
                                     "vectors": SAFE_FILE, "vocabulary": VOCAB_FILE, "text": TXT_FILE,
                                     "binary": BIN_FILE})

    # ------------------------------------------------------------------ inference
    def _key(self, word: str) -> str:
        """The vocabulary key for ``word`` (exact, else normalised as in training) or UnknownWordError."""
        kv = self.model
        if not isinstance(word, str):
            raise UsageError(f"Expected a word (str), got {type(word).__name__}: {word!r}")
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
            raise UsageError(f"Unknown option(s) for word2vec prediction: {sorted(kwargs)}; options: mode "
                            f"({', '.join(MODES)}), topn.")
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
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

    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: a word's neighbours, analogies, similarity (:mod:`nlpkit.plugins.word2vec.demo`)."""
        from nlpkit.plugins.word2vec.demo import build_demo

        return build_demo(pipe)

    def serve_routes(self, server: Any) -> Any:
        """``nlpkit serve``: ``/v1/embeddings`` (OpenAI's shape), ``/v1/neighbors``, ``/v1/similarity``,
        ``/v1/analogy`` (:mod:`nlpkit.plugins.word2vec.serve`)."""
        from nlpkit.plugins.word2vec.serve import routes

        return routes(server)

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        extra = results.extra
        sections: list[tuple[str, str]] = []
        test = results.test or {}
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
        vocab = results.training.get("vocab_size", len(self.model) if self.model is not None else "")
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

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_commands(cls, subparsers: argparse._SubParsersAction) -> None:
        """``nlpkit baseline``: the sentiment baseline on word vectors (:mod:`nlpkit.plugins.word2vec.baseline`)."""
        from nlpkit.plugins.word2vec.baseline import add_baseline_command

        add_baseline_command(subparsers)


def _words(x: Any, n: int, mode: str) -> list[str]:
    """``"a b"`` or ``("a", "b")`` -> ``["a", "b"]``, checking there are ``n`` words."""
    words = x.split() if isinstance(x, str) else list(x)
    if len(words) != n:
        raise UsageError(f"mode={mode!r} takes {n} words per input (a string of {n} words or a tuple), "
                         f"got {x!r}.")
    return words
