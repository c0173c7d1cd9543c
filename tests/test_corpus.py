"""The held-out corpus (``tooling.eval.corpus``): lock and manifest logic on small generated packages, the
committed lock's promises (size, collections, folds), and the harness end to end on the CI subset.

The generated packages are real ``.deb`` files (``dpkg-deb --build``); the CI-subset test downloads a few small
Debian packages once into ``data/corpus-cache`` (like ``make eval-ci``): without ``apt-get``/``dpkg-deb`` (or
without ``apt-get update`` having run) it fails, it does not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tooling.eval import corpus
from tooling.eval.__main__ import app
from tooling.eval.corpus import Collection, MismatchError
from tooling.samples import photo

PACKAGE = "corpus-test-pictures"
VERSION = "1.0-1"


def _pictures() -> dict[str, Image.Image]:
    """Three distinct pictures, one of them also as a resized copy under another name and at another size."""
    astronaut = photo("astronaut.png")
    coffee = photo("coffee.png").resize((400, 267))
    chelsea = photo("chelsea.png")
    return {
        "usr/share/pics/512x512/astronaut.png": astronaut,
        "usr/share/pics/256x256/astronaut.png": astronaut.resize((256, 256)),  # same key: another size
        "usr/share/pics/coffee.png": coffee,
        "usr/share/pics/coffee-copy.jpg": coffee.resize((300, 200)),  # another name: a near copy
        "usr/share/pics/chelsea.png": chelsea,
    }


def _deb(cache: Path, tmp: Path) -> Path:
    """A real .deb holding :func:`_pictures`, in the cache where ``fetch`` looks for it."""
    root = tmp / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: pictures for a test\n"
    )
    for path, picture in _pictures().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target)
    debs = cache / "debs"
    debs.mkdir(parents=True)
    deb = debs / f"{PACKAGE}_{VERSION}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    return deb


def _collections(fold: str = "tune") -> tuple[Collection, ...]:
    return (Collection("test-pictures", "deb", PACKAGE, fold, "photo", include=("usr/share/pics/*",), ci=1),)


@pytest.fixture
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A cache with the generated package and a lock selected from it; returns (cache, lock)."""
    cache = tmp_path / "cache"
    _deb(cache, tmp_path)
    monkeypatch.setattr(corpus, "apt_version", lambda package: VERSION)
    lock = tmp_path / "lock.json"
    corpus.relock(cache, lock, collections=_collections())
    return cache, lock


def test_dedupe_keeps_one_size_and_drops_a_resized_copy(locked: tuple[Path, Path]) -> None:
    _, lock = locked
    entry = json.loads(lock.read_text())
    files = [f["path"] for f in entry["collections"]["test-pictures"]["files"]]
    assert sorted(files) == [
        "usr/share/pics/512x512/astronaut.png",  # the larger of the two sizes
        "usr/share/pics/chelsea.png",
        "usr/share/pics/coffee.png",  # larger than its copy, which the thumbnail check drops
    ]
    assert entry["dropped"]["test-pictures"] == {"other sizes": 1, "near copies": 1}


def test_dedupe_rule_on_thumbnails() -> None:
    picture = photo("chelsea.png")
    a = corpus.thumbnail(picture)
    resized = corpus.thumbnail(picture.resize((picture.width // 3, picture.height // 3)))
    other = corpus.thumbnail(photo("coffee.png"))
    assert float(a @ resized) > corpus.NEAR_COPY
    assert corpus.dedupe([a, resized, other]) == [True, False, True]
    assert corpus.dedupe([resized], kept=[a]) == [False]  # against an earlier collection too
    mirrored = corpus.thumbnail(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert float(a @ mirrored) < corpus.NEAR_COPY  # not alike as they are, yet one picture
    assert corpus.dedupe([a, mirrored]) == [True, False]


def test_fetch_writes_the_locked_pictures_and_a_manifest(locked: tuple[Path, Path], tmp_path: Path) -> None:
    cache, lock = locked
    root = tmp_path / "corpus"
    manifest = corpus.fetch(root, cache, lock, collections=_collections())
    assert len(manifest["pictures"]) == 3
    for p in manifest["pictures"]:
        assert p["fold"] == "tune"
        assert p["collection"] == "test-pictures"
        assert corpus.file_sha256(root / p["path"]) == p["sha256"]
        with Image.open(root / p["path"]) as im:
            assert max(im.size) <= corpus.MAX_SIDE
    assert json.loads((root / corpus.MANIFEST).read_text()) == manifest
    # again, with a saved picture damaged: it is rewritten from the cached package, the rest is kept
    damaged = root / manifest["pictures"][0]["path"]
    damaged.write_bytes(b"not a picture")
    assert corpus.fetch(root, cache, lock, collections=_collections()) == manifest
    assert corpus.file_sha256(damaged) == manifest["pictures"][0]["sha256"]
    ci = corpus.fetch(tmp_path / "ci", cache, lock, subset="ci", collections=_collections())
    assert len(ci["pictures"]) == 1


def test_a_package_whose_checksum_differs_is_an_error(locked: tuple[Path, Path], tmp_path: Path) -> None:
    cache, lock = locked
    entry = json.loads(lock.read_text())
    entry["collections"]["test-pictures"]["deb_sha256"] = "0" * 64
    lock.write_text(json.dumps(entry))
    with pytest.raises(MismatchError, match="SHA-256"):
        corpus.fetch(tmp_path / "corpus", cache, lock, collections=_collections())


def test_a_picture_whose_checksum_differs_is_an_error(locked: tuple[Path, Path], tmp_path: Path) -> None:
    cache, lock = locked
    entry = json.loads(lock.read_text())
    entry["collections"]["test-pictures"]["files"][0]["source_sha256"] = "0" * 64
    lock.write_text(json.dumps(entry))
    with pytest.raises(MismatchError, match="the lock says"):
        corpus.fetch(tmp_path / "corpus", cache, lock, collections=_collections())


def test_a_changed_file_in_a_fetched_corpus_is_an_error(locked: tuple[Path, Path], tmp_path: Path) -> None:
    cache, lock = locked
    root = tmp_path / "corpus"
    manifest = corpus.fetch(root, cache, lock, collections=_collections())
    assert len(corpus.load(root, "tune")) == 3
    assert corpus.load(root, "test") == []
    (root / manifest["pictures"][1]["path"]).write_bytes(b"changed")
    with pytest.raises(MismatchError):
        corpus.load(root, "all")


def test_folds_never_share_a_collection() -> None:
    shared = {
        "pictures": [
            {"collection": "a", "fold": "tune", "category": "photo"},
            {"collection": "a", "fold": "test", "category": "photo"},
        ]
    }
    with pytest.raises(ValueError, match="both folds"):
        corpus.check_folds(shared)
    locked = json.loads(corpus.LOCK.read_text())
    pictures = [
        {"collection": name, "fold": c["fold"], "category": f["category"]}
        for name, c in locked["collections"].items()
        for f in c["files"]
    ]
    corpus.check_folds({"pictures": pictures})
    assert {c.name: c.fold for c in corpus.COLLECTIONS} == {n: c["fold"] for n, c in locked["collections"].items()}


def test_the_committed_lock_is_large_varied_and_split_by_collection() -> None:
    locked = json.loads(corpus.LOCK.read_text())
    collections = locked["collections"]
    assert len(collections) >= 6
    manifest = {
        "pictures": [
            {"collection": n, "fold": c["fold"], "category": f["category"]}
            for n, c in collections.items()
            for f in c["files"]
        ]
    }
    counts = corpus.counts(manifest)
    assert sum(sum(per.values()) for per in counts.values()) >= 1000
    for fold in corpus.FOLDS:
        assert sum(counts[fold].values()) >= 400
        assert len(counts[fold]) >= 6, counts[fold]  # a spread of categories on both sides
        assert set(counts[fold]) <= set(corpus.CATEGORIES)
    for c in collections.values():
        assert len({f["file"] for f in c["files"]}) == len(c["files"])  # no two files saved under one name
        if c["kind"] == "deb":
            assert len(c["deb_sha256"]) == 64
            assert c["version"]
    ci = [(c["fold"], f["category"]) for c in collections.values() for f in c["files"] if f["ci"]]
    assert 40 <= len(ci) <= 80
    assert {fold for fold, _ in ci} == set(corpus.FOLDS)
    assert len({category for _, category in ci}) >= 5


def test_aspect_limits_select_wide_or_tall_pictures(locked: tuple[Path, Path], tmp_path: Path) -> None:
    cache, _ = locked
    wide = Collection("wide", "deb", PACKAGE, "tune", "photo", include=("usr/share/pics/*",), min_aspect=1.4)
    out = corpus.relock(cache, tmp_path / "wide.json", collections=(wide,))
    assert [f["path"] for f in out["collections"]["wide"]["files"]] == [
        "usr/share/pics/chelsea.png",  # 451 × 300
        "usr/share/pics/coffee.png",  # 400 × 267; the square astronaut is left out
    ]


def test_relock_only_keeps_the_others_as_they_are_and_their_pictures_out(
    locked: tuple[Path, Path], tmp_path: Path
) -> None:
    """``relock --only`` adds a collection without touching the others' entries, and leaves out what they hold
    (their pictures as fetched): one picture is never in two collections."""
    cache, lock = locked
    before = json.loads(lock.read_text())
    again = Collection("again", "deb", PACKAGE, "test", "photo", include=("usr/share/pics/*",))
    collections = (*_collections(), again)
    with pytest.raises(FileNotFoundError, match="fetch the corpus first"):
        corpus.relock(cache, lock, only=["again"], collections=collections, root=tmp_path / "nothing")
    root = tmp_path / "corpus"
    corpus.fetch(root, cache, lock, collections=_collections())
    after = corpus.relock(cache, lock, only=["again"], collections=collections, root=root)
    assert after["collections"]["test-pictures"] == before["collections"]["test-pictures"]
    assert after["collections"]["again"]["files"] == []
    assert after["dropped"]["again"] == {"other sizes": 1, "near copies": 4}
    assert json.loads(lock.read_text()) == after


def test_screens_are_wide_or_tall_and_deterministic() -> None:
    first = list(corpus.screens("screens-a", len(corpus.SCREEN_KINDS)))
    assert first == list(corpus.pages("screens-a", len(corpus.SCREEN_KINDS)))
    assert first != list(corpus.pages("screens-b", len(corpus.SCREEN_KINDS)))
    assert {name.split("-")[0] for name, *_ in first} == set(corpus.SCREENS)
    for _, page, (w, h), category in first:
        assert category == "screenshot"
        assert 2 <= max(w, h) / min(w, h) <= corpus.WIDE_OR_TALL["max_aspect"]
        assert page.startswith("<!doctype html>")


def test_wide_and_tall_collections_are_on_both_sides_and_leave_the_others_as_they_were() -> None:
    wide = [c for c in corpus.COLLECTIONS if c.min_aspect >= 2]
    assert {c.fold for c in wide} == set(corpus.FOLDS)
    assert all(c.max_aspect == 3.0 and c.min_aspect == 0.0 for c in corpus.COLLECTIONS if c not in wide)
    locked = json.loads(corpus.LOCK.read_text())["collections"]
    for fold in corpus.FOLDS:  # the committed lock holds a fair number of them on each side
        assert sum(len(locked[c.name]["files"]) for c in wide if c.fold == fold) >= 200


def test_pages_are_deterministic() -> None:
    first = list(corpus.pages("pages-a", 4))
    assert first == list(corpus.pages("pages-a", 4))
    assert first != list(corpus.pages("pages-b", 4))
    assert [category for *_, category in first] == ["document", "screenshot", "document", "screenshot"]


@pytest.fixture(scope="module")
def ci_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The CI subset, fetched once (downloads a few small packages into data/corpus-cache the first time)."""
    for tool in ("apt-get", "dpkg-deb"):
        assert shutil.which(tool), f"{tool} is needed: the corpus comes from Debian packages"
    root = tmp_path_factory.mktemp("corpus-ci")
    return root, corpus.fetch(root, subset="ci")


def test_harness_on_the_ci_subset_reports_per_category(ci_corpus: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """The real thing, small: run the harness on the CI subset and read the per-category rows of its report."""
    root, manifest = ci_corpus
    categories = {p["category"] for p in manifest["pictures"]}
    assert len(manifest["pictures"]) >= 40
    out = tmp_path / "report"
    args = ["--corpus", str(root), "--out", str(out), "--stages", "exact,perceptual", "--hashes", ""]
    transforms = "jpeg,downscale,mirror,crop"
    result = CliRunner().invoke(app, [*args, "--inputs", "", "--transforms", transforms, "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    by = report["categories"]
    assert set(by["abstained"]) == categories
    assert sum(row["sources"] for row in by["abstained"].values()) == report["counts"]["sources"]
    perceptual = by["recall"]["perceptual"]
    assert set(perceptual) == categories
    assert all(0.0 <= r <= 1.0 for per in perceptual.values() for r in per.values())
    assert np.mean([per["jpeg q75"] for per in perceptual.values()]) > 0.5
    md = (out / "report.md").read_text()
    assert "## Per category of source" in md
    for category in categories:
        assert f"| {category} |" in md


#: The README's test-fold figures (``make eval``), per category of source and edit.
TEST_FOLD_REPORT = Path(__file__).parent.parent / "docs" / "quality" / "test" / "report.json"


def test_the_ci_subset_holds_the_test_folds_figures_within_sampling_error(
    ci_corpus: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The CI subset's test-fold pictures (23, in 8 categories) through the harness with the worker's
    thresholds, every edit: each edit's recall must be what the committed test-fold report predicts for
    pictures of those categories, within three standard errors of that prediction plus one picture. A change
    to detection that moves the README's figures fails here until ``make eval`` has rerun them."""
    root, manifest = ci_corpus
    pictures = [p for p in manifest["pictures"] if p["fold"] == "test"]
    per_category = Counter(p["category"] for p in pictures)
    expected = json.loads(TEST_FOLD_REPORT.read_text())["categories"]["recall"]["perceptual"]
    out = tmp_path / "report"
    args = ["--corpus", str(root), "--fold", "test", "--out", str(out), "--stages", "exact,perceptual"]
    result = CliRunner().invoke(app, [*args, "--hashes", "", "--inputs", "", "--worker-thresholds", "--no-progress"])
    assert result.exit_code == 0, result.output
    measured = json.loads((out / "report.json").read_text())["categories"]["recall"]["perceptual"]
    n = sum(per_category.values())
    assert n >= 20
    off = {}
    for transform in expected[next(iter(per_category))]:
        predicted = sum(k * expected[c][transform] for c, k in per_category.items()) / n
        found = sum(k * measured[c][transform] for c, k in per_category.items()) / n
        spread = np.sqrt(
            sum(k * expected[c][transform] * (1 - expected[c][transform]) for c, k in per_category.items())
        )
        tolerance = 3 * spread / n + 1 / n
        print(f"{transform}: {found:.2f} measured, {predicted:.2f} predicted, ± {tolerance:.2f}")
        if abs(found - predicted) > tolerance:
            off[transform] = (round(found, 3), round(predicted, 3), round(tolerance, 3))
    assert off == {}
