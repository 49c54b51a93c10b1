"""word2vec training speed: nlpkit's training path vs plain gensim, and corpus_file vs the iterable path.

Three trainings on the same tokenized corpus (news-articles, written once by the plugin's own preprocessing),
with identical settings (the task's defaults unless overridden), in one process, one after the other:

  nlpkit     nlpkit.plugins.word2vec.train_vectors (what `accelerate launch tasks/word2vec.py` runs)
  gensim     Word2Vec(corpus_file=..., same settings)         plain gensim, the corpus_file fast path
  iterable   Word2Vec(sentences=LineSentence(...), same ...)  plain gensim, the Python iterable path

Speed is corpus words x epochs / wall seconds of the whole call (vocabulary scan + training) for each.
Targets: nlpkit / gensim >= 0.95, corpus_file / iterable >= 1.5 on 2 cores, with equal benchmark quality.

    flock /tmp/nlpkit-heavy.lock python benchmarks/word2vec_train.py              # 5 epochs
    python benchmarks/word2vec_train.py --epochs 2 --max-texts 1000               # a quick look
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="Epochs per training (default 5).")
    parser.add_argument("--source", default="news-articles", help="Corpus (catalog name or text file).")
    parser.add_argument("--max-texts", type=int, default=None, help="Use only this many texts.")
    parser.add_argument("overrides", nargs="*", help="Word2vec config overrides (w2v.sg=false, ...).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    from nlpkit.config import load_config
    from nlpkit.plugins.word2vec import Word2VecConfig, Word2VecTask, train_vectors
    from nlpkit.plugins.word2vec_eval import benchmark_vectors

    overrides = [f"w2v.epochs={args.epochs}", f"data.source={args.source}", *args.overrides]
    if args.max_texts:
        overrides.append(f"data.max_train_samples={args.max_texts}")
    cfg = load_config(Word2VecConfig, None, overrides)
    w = cfg.w2v
    workers = w.workers or os.cpu_count() or 1
    # The settings spelled out for plain gensim: the same values train_vectors passes.
    plain = dict(vector_size=w.vector_size, window=w.window, min_count=w.min_count, sg=int(w.sg), hs=int(w.hs),
                 negative=w.negative, sample=w.sample, alpha=w.alpha, min_alpha=w.min_alpha, epochs=w.epochs,
                 seed=cfg.seed, workers=workers, max_final_vocab=w.max_final_vocab)

    with tempfile.TemporaryDirectory() as tmp:
        task = Word2VecTask(cfg)
        corpus, info = task._write_corpus(Path(tmp))  # the plugin's own preprocessing
        words = info["words"] * w.epochs
        print(f"\nCorpus: {args.source}, {info['texts']:,} texts, {info['sentences']:,} sentences, "
              f"{info['words']:,} words; {w.epochs} epochs, {workers} workers, "
              f"{'skip-gram' if w.sg else 'cbow'}, dim {w.vector_size}, window {w.window}, "
              f"negative {w.negative}, min_count {w.min_count}\n")
        rows = []

        def measure(name: str, fn) -> None:
            t0 = time.perf_counter()
            model = fn()
            seconds = time.perf_counter() - t0
            quality = benchmark_vectors(model.wv, cfg.eval.restrict_vocab)
            rows.append((name, seconds, words / seconds, len(model.wv), quality))
            print(f"  {name:10s} {seconds:7.1f} s  {words / seconds:>10,.0f} words/s")

        measure("nlpkit", lambda: train_vectors(cfg, corpus)[0])
        measure("gensim", lambda: Word2Vec(corpus_file=str(corpus), **plain))
        measure("iterable", lambda: Word2Vec(sentences=LineSentence(str(corpus)), **plain))

    print("\n| path | seconds | words/s | vocab | analogy acc | WordSim353 rho | SimLex-999 rho |")
    print("|---|---|---|---|---|---|---|")
    for name, seconds, wps, vocab, q in rows:
        print(f"| {name} | {seconds:.1f} | {wps:,.0f} | {vocab:,} | {q['analogy_accuracy']:.4f} | "
              f"{q['wordsim353_spearman']:.4f} | {q['simlex999_spearman']:.4f} |")
    speed = {name: wps for name, _, wps, _, _ in rows}
    r1 = speed["nlpkit"] / speed["gensim"]
    r2 = speed["gensim"] / speed["iterable"]
    print(f"\nnlpkit / plain gensim (corpus_file): {r1:.3f}x  (target >= 0.95)  {'OK' if r1 >= 0.95 else 'BELOW'}")
    print(f"corpus_file / iterable (plain gensim): {r2:.2f}x  (target >= 1.5 on 2 cores)  "
          f"{'OK' if r2 >= 1.5 else 'BELOW'}")


if __name__ == "__main__":
    main()
