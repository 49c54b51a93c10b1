"""word2vec training speed: nlpkit's training path vs plain gensim, and corpus_file vs the iterable path.

All contenders train on the same corpus (news-articles, tokenized once by the plugin's own preprocessing into
a line-per-sentence file) with identical settings (the task's defaults unless overridden: same workers, seed,
epochs, ...), in one process:

  nlpkit     nlpkit.plugins.word2vec.trainer.train_vectors (what `accelerate launch tasks/word2vec.py` runs)
  gensim     Word2Vec(corpus_file=..., same settings)         plain gensim, the corpus_file fast path
  iterable   Word2Vec(sentences=LineSentence(...), same ...)  plain gensim, the Python iterable path, fed the
             same pre-tokenized file: the fair comparison for corpus_file
  tokenize   (extra row) Word2Vec(sentences=<iterable that runs nlpkit's tokenizer on the raw texts on every
             pass>, same ...): the iterable a user would typically write; it re-does in Python, on every epoch,
             the tokenization the file paths did once (that one-time cost is printed as "tokenize once")

Method: one untimed warm-up training (plain gensim corpus_file, as many epochs as the timed ones) first, so
no contender pays for cold caches, lazy imports or a slow start of the machine; then --repeats rounds, each
running every contender once, the order rotated round to round so none always goes first. Speed is corpus
words x epochs / wall seconds of the whole call (vocabulary scan + training); "train words/s" counts the
training phase only (gensim's total_train_time). Per contender the median and the best round are printed,
and the ratios use the medians. Quality (Google analogies, WordSim353, SimLex-999) is the mean over the
rounds: multi-threaded training is not bit-exact.

Targets: nlpkit / gensim >= 0.95, corpus_file / iterable >= 1.5 on 2 cores, with equal benchmark quality.

Why corpus_file / iterable stays near 1x on 2 cores: both paths run the same Cython training loop with the
GIL released; what corpus_file removes is the Python work of the iterable path (reading and splitting lines
in the producer thread, and each worker's GIL-holding vocabulary look-up of its batch). gensim's published
gains (several x) come from 8-32 cores, where that single-GIL work becomes the bottleneck because the training
threads outrun it. With 2 cores and skip-gram (window 5, negative 5) the training arithmetic dominates and
the GIL work fits in the gaps, so the fair ratio is close to 1 (measured 1.08x); more worker threads than
cores do not change that (w2v.workers=4: 1.05x, there is no idle core to use). A lighter model widens the gap,
because the Python work is then a larger share (CBOW, w2v.sg=false: 1.33x), still short of 1.5x. The ratio is
printed as measured; it is not tuned to meet the target.

    python benchmarks/word2vec_train.py                   # 5 epochs, 3 rounds
    python benchmarks/word2vec_train.py w2v.workers=4     # more threads than cores
    python benchmarks/word2vec_train.py --epochs 2 --max-texts 1000 --repeats 1        # a quick look
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

QUALITY = ("analogy_accuracy", "wordsim353_spearman", "simlex999_spearman")


class _TokenizingCorpus:
    """Restartable iterable of token lists: nlpkit's tokenizer run on the raw texts on every pass."""

    def __init__(self, texts: list[str], text_cfg: Any):
        self.texts, self.text_cfg = texts, text_cfg

    def __iter__(self):
        from nlpkit.plugins.word2vec.text import sentences

        for text in self.texts:
            if text:
                yield from sentences(text, self.text_cfg)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command-line options; None: ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="Epochs per training (default 5).")
    parser.add_argument("--source", default="news-articles", help="Corpus (catalog name or text file).")
    parser.add_argument("--max-texts", type=int, default=None, help="Use only this many texts.")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds; each runs every contender once "
                                                               "(default 3).")
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help="Epochs of the untimed warm-up training (default: --epochs; 0: no warm-up).")
    parser.add_argument("--no-tokenize-row", action="store_true",
                        help="Leave out the extra row (iterable that tokenizes raw text every epoch).")
    parser.add_argument("overrides", nargs="*", help="Word2vec config overrides (w2v.sg=false, w2v.workers=4).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    from nlpkit.config import load_config
    from nlpkit.plugins.word2vec import Word2VecConfig, Word2VecTask
    from nlpkit.plugins.word2vec.benchmarks import benchmark_vectors
    from nlpkit.plugins.word2vec.config import gensim_params
    from nlpkit.plugins.word2vec.trainer import train_vectors, write_training_corpus

    overrides = [f"w2v.epochs={args.epochs}", f"data.source={args.source}", *args.overrides]
    if args.max_texts:
        overrides.append(f"data.max_train_samples={args.max_texts}")
    cfg = load_config(Word2VecConfig, None, overrides)
    w = cfg.w2v
    if w.kind != "word2vec":
        parser.error("the benchmark compares gensim Word2Vec paths: keep w2v.kind=word2vec")
    # The settings spelled out for plain gensim: the same values train_vectors passes (checked below).
    workers = w.workers or os.cpu_count() or 1
    plain = dict(vector_size=w.vector_size, window=w.window, min_count=w.min_count, sg=int(w.sg), hs=int(w.hs),
                 negative=w.negative, sample=w.sample, alpha=w.alpha, min_alpha=w.min_alpha, epochs=w.epochs,
                 seed=cfg.seed, workers=workers, max_final_vocab=w.max_final_vocab)
    nlpkit_params = gensim_params(cfg)
    if nlpkit_params != plain:
        raise SystemExit(f"settings differ: nlpkit {nlpkit_params} vs plain {plain}")

    with tempfile.TemporaryDirectory() as tmp:
        train = Word2VecTask(cfg).load_data().splits["train"]
        corpus, info = write_training_corpus(cfg, train, Path(tmp))  # the plugin's own preprocessing
        words = info["words"] * w.epochs
        print(f"\nCorpus: {args.source}, {info['texts']:,} texts, {info['sentences']:,} sentences, "
              f"{info['words']:,} words (tokenize once: {info['preprocess_s']:.1f} s); {w.epochs} epochs, "
              f"{workers} workers on {os.cpu_count()} cores, {'skip-gram' if w.sg else 'cbow'}, "
              f"dim {w.vector_size}, window {w.window}, negative {w.negative}, min_count {w.min_count}, "
              f"{args.repeats} round(s)\n")

        contenders: list[tuple[str, Callable[[], Any]]] = [
            ("nlpkit", lambda: train_vectors(cfg, corpus)[0]),
            ("gensim", lambda: Word2Vec(corpus_file=str(corpus), **plain)),
            ("iterable", lambda: Word2Vec(sentences=LineSentence(str(corpus)), **plain)),
        ]
        if not args.no_tokenize_row:
            if cfg.text.phrases:
                print("(tokenize row left out: it does not re-apply text.phrases)")
            else:
                texts = list(train[cfg.data.text_column])
                contenders.append(("tokenize", lambda: Word2Vec(sentences=_TokenizingCorpus(texts, cfg.text),
                                                                **plain)))

        warmup = w.epochs if args.warmup_epochs is None else args.warmup_epochs
        if warmup > 0:
            t0 = time.perf_counter()
            Word2Vec(corpus_file=str(corpus), **{**plain, "epochs": warmup})
            print(f"  warm-up ({warmup} epochs, untimed)  {time.perf_counter() - t0:.1f} s")

        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in contenders}
        for rnd in range(args.repeats):
            shift = rnd % len(contenders)
            for name, fn in contenders[shift:] + contenders[:shift]:
                gc.collect()
                t0 = time.perf_counter()
                model = fn()
                seconds = time.perf_counter() - t0
                quality = benchmark_vectors(model.wv, cfg.eval.restrict_vocab)
                runs[name].append({"seconds": seconds, "train_s": model.total_train_time,
                                   "vocab": len(model.wv), **{k: quality[k] for k in QUALITY}})
                print(f"  round {rnd + 1}  {name:9s} {seconds:6.1f} s  {words / seconds:>9,.0f} words/s  "
                      f"(training {words / model.total_train_time:,.0f} words/s)  "
                      f"analogy {quality['analogy_accuracy']:.4f}")
                del model

    def med(name: str, key: str = "seconds") -> float:
        return statistics.median(r[key] for r in runs[name])

    print("\n| path | words/s (median) | words/s (best) | train words/s (median) | vocab | analogy acc | "
          "WordSim353 rho | SimLex-999 rho |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        q = {k: statistics.mean(r[k] for r in rs) for k in QUALITY}
        print(f"| {name} | {words / med(name):,.0f} | {words / min(r['seconds'] for r in rs):,.0f} | "
              f"{words / med(name, 'train_s'):,.0f} | {rs[0]['vocab']:,} | {q['analogy_accuracy']:.4f} | "
              f"{q['wordsim353_spearman']:.4f} | {q['simlex999_spearman']:.4f} |")

    r1 = med("gensim") / med("nlpkit")
    r2 = med("iterable") / med("gensim")
    print(f"\nnlpkit / plain gensim (corpus_file): {r1:.3f}x  (target >= 0.95)  {'OK' if r1 >= 0.95 else 'BELOW'}")
    print(f"corpus_file / iterable (same tokenized file, {workers} workers, {os.cpu_count()} cores): {r2:.2f}x  "
          f"(target >= 1.5 on 2 cores)  {'OK' if r2 >= 1.5 else 'BELOW'}")
    print(f"  training phase only: {med('iterable', 'train_s') / med('gensim', 'train_s'):.2f}x")
    if "tokenize" in runs:
        once = med("gensim") + info["preprocess_s"]
        print(f"corpus_file / tokenize-every-epoch iterable (extra row): {med('tokenize') / med('gensim'):.2f}x; "
              f"counting corpus_file's one-time tokenization ({info['preprocess_s']:.1f} s): "
              f"{med('tokenize') / once:.2f}x")


if __name__ == "__main__":
    main()
