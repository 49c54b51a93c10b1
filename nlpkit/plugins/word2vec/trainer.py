"""How word2vec trains: gensim on the main process, from a tokenized line-per-sentence corpus file.

:class:`GensimTrainer` is the task's trainer (``Word2VecTask.trainer``) in place of the shared accelerate loop.
gensim trains on CPU with every core, so under ``accelerate launch`` with several processes only the main
process tokenizes, trains, evaluates and saves; the others wait, and stop with it if it fails.
:func:`train_vectors` is the one gensim training path (``benchmarks/word2vec_train.py`` times it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nlpkit.artifacts import atomic_dir
from nlpkit.errors import DataError, UsageError
from nlpkit.plugins.word2vec.benchmarks import benchmark_vectors, nearest_neighbours
from nlpkit.plugins.word2vec.config import Word2VecConfig, check_config, gensim_params
from nlpkit.plugins.word2vec.text import write_corpus
from nlpkit.plugins.word2vec.vectors import load_full_model, load_vectors
from nlpkit.progress import progress_bar
from nlpkit.task import RunResults
from nlpkit.trackers import start_trackers

if TYPE_CHECKING:
    from accelerate import Accelerator
    from datasets import Dataset

    from nlpkit.plugins.word2vec.task import Word2VecTask

logger = logging.getLogger("nlpkit.word2vec")

__all__ = ["CORPUS_FILE", "GensimTrainer", "train_vectors", "write_training_corpus"]

CORPUS_FILE = "corpus.txt"  # the tokenized training corpus, one sentence per line, in the run folder


def write_training_corpus(cfg: Word2VecConfig, train: Dataset, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Tokenize the texts of ``train`` into ``folder/corpus.txt`` (one sentence a line): (path, corpus stats)."""
    d = cfg.data
    path = Path(folder) / CORPUS_FILE
    t0 = time.perf_counter()
    with progress_bar(total=len(train), desc="Tokenizing", unit="text") as bar:
        texts = (row[d.text_column] for row in train)
        stats = write_corpus(texts, path, cfg.text, progress=bar)
    if stats.words == 0:
        raise DataError(f"{d.source}: no words left after preprocessing {stats.texts} text(s) (column "
                        f"{d.text_column!r}). Check the file holds text, or loosen "
                        f"text.min_token_length / text.strip_numbers.")
    info = {**stats.as_dict(), "preprocess_s": round(time.perf_counter() - t0, 2)}
    logger.info("Corpus %s: %s", path, info)
    return path, info


class _EpochProgress:
    """gensim callback: a progress bar over epochs and a log line per epoch (gensim's own logs are muted)."""

    def __init__(self, epochs: int):
        from gensim.models.callbacks import CallbackAny2Vec

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
        self.bar = progress_bar(total=epochs, desc="Training word2vec", unit="epoch")
        self.callback = _Callback()

    def close(self) -> None:
        self.bar.close()


def train_vectors(cfg: Word2VecConfig, corpus_file: str | Path, init_from: str | None = None
                  ) -> tuple[Any, dict[str, Any]]:
    """Build the vocabulary and train on ``corpus_file`` (gensim's fast path): (model, training stats).

    This is the one training path: :meth:`Word2VecTask.train_model` and ``benchmarks/word2vec_train.py``
    both call it. With ``init_from`` the saved model is loaded, its vocabulary extended with the new words
    (``build_vocab(update=True)``) and training continues on the new corpus.
    """
    from gensim.models import FastText, Word2Vec

    check_config(cfg)
    params = gensim_params(cfg)
    corpus_file = str(corpus_file)
    t0 = time.perf_counter()
    if init_from:
        # A pickle: loads when this machine's nlpkit saved it, or with trust_pickle (vectors.load_full_model).
        model = load_full_model(init_from, trust_pickle=cfg.trust_pickle)
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


class GensimTrainer:
    """word2vec's trainer: ``GensimTrainer(task, accelerator, run_dir).fit()`` -> :class:`~nlpkit.task.RunResults`.

    The main process loads the text, tokenizes it into ``run_dir/corpus.txt``, trains (:meth:`Word2VecTask.
    train_model`), hands the trained model to the task (:meth:`Word2VecTask.set_trained_model`), scores it and
    the reference vectors on the word benchmarks, and saves ``run_dir/model`` atomically.
    """

    required_hooks: ClassVar[tuple[str, ...]] = ("load_data", "build_model", "train_model", "set_trained_model",
                                                 "compute_metrics", "predict", "save")

    def __init__(self, task: Word2VecTask, accelerator: Accelerator, run_dir: Path):
        self.task, self.accelerator, self.run_dir = task, accelerator, Path(run_dir)

    def fit(self) -> RunResults:
        """Main process: tokenize, train, evaluate, save. Other processes wait (gensim uses every core).
        The trackers named in ``trackers`` start first, with the config as params."""
        from accelerate.utils import broadcast_object_list

        acc = self.accelerator
        # The config as params now; the benchmark metrics and the report reach the trackers at the run's end
        # (nlpkit.trackers.log_run_end, called by the runner once the report is written).
        start_trackers(acc, self.task.cfg, self.run_dir)
        results = RunResults()
        error: Exception | None = None
        if acc.is_main_process:
            try:
                results = self._fit_main()
                results.training["processes"] = acc.num_processes  # 1 trains, the others waited
            except Exception as exc:  # re-raised below, after telling the waiting processes
                error = exc
        if acc.num_processes > 1:
            # Doubles as the barrier; carrying the main process's error lets the others stop too instead
            # of waiting for a barrier that never comes.
            status = [None if error is None else f"{type(error).__name__}: {error}"]
            broadcast_object_list(status)
            if error is None and status[0] is not None:
                raise RuntimeError(f"word2vec training failed on the main process: {status[0]}")
        if error is not None:
            raise error
        return results

    def _fit_main(self) -> RunResults:
        # our progress bar and epoch logs replace gensim's chatter
        logging.getLogger("gensim").setLevel(logging.WARNING)
        task, cfg = self.task, self.task.cfg
        data = task.load_data()
        corpus, corpus_info = write_training_corpus(cfg, data.splits["train"], self.run_dir)
        model, training = task.train_model(corpus)
        logger.info("Trained %s vectors: %d words, %.0f words/s", cfg.w2v.kind, training["vocab_size"],
                    training["words_per_s"])
        task.set_trained_model(model, data.info)
        t0 = time.perf_counter()
        test = task.compute_metrics({"vectors": task.model})
        training["evaluate_s"] = round(time.perf_counter() - t0, 2)
        probes = list(cfg.eval.probe_words)
        extra: dict[str, Any] = {"corpus": corpus_info,
                                 "neighbours": nearest_neighbours(task.model, probes, cfg.eval.neighbours)}
        if cfg.reference_vectors:
            ref = load_vectors(cfg.reference_vectors, trust_pickle=cfg.trust_pickle)
            extra["reference"] = {"name": cfg.reference_vectors, "vocab_size": len(ref),
                                  "vector_size": ref.vector_size,
                                  "test": benchmark_vectors(ref, cfg.eval.restrict_vocab),
                                  "neighbours": nearest_neighbours(ref, probes, cfg.eval.neighbours)}
        with atomic_dir(self.run_dir / "model") as tmp:
            task.save(tmp)
        return RunResults(test=test, training=training, notes=dict(data.notes), extra=extra,
                          data_sizes={"train (texts)": corpus_info["texts"], "sentences": corpus_info["sentences"],
                                      "words": corpus_info["words"]})

    @classmethod
    def evaluate_split(cls, task: Word2VecTask, split: str, accelerator: Accelerator
                       ) -> tuple[dict[str, Any], dict[str, list]]:
        """The word benchmarks of ``task``'s vectors (``cfg.model.name``) and no per-example outputs: word2vec is
        tested on the benchmarks, not on a split of its training text, so only ``split='test'`` is accepted."""
        if split != "test":
            raise UsageError(f"word2vec is evaluated on the word benchmarks only: use split='test', "
                             f"not {split!r}.")
        task.load_model()
        return task.compute_metrics({"vectors": task.model}), {}
