"""The quality harness: its regression guarantee on a tiny generated set, its metrics, and its command line.

The regression test runs the worker's own decoding, pHash and ``decide()`` on four sample photos and every
transform; it needs no model (exact and perceptual stages only).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from tests.helpers import bits_apart
from tooling.eval import combined, negatives
from tooling.eval.__main__ import app
from tooling.eval.analysis import SWEEP, perceptual_sweep
from tooling.eval.dataset import Role, build, decode
from tooling.eval.measure import measure
from tooling.eval.metrics import ABSTAINED, Scores, at, halfway, hamming_scorer
from tooling.eval.negatives import CATEGORIES
from tooling.eval.transforms import REGRESSION, TRANSFORMS, by_key
from tooling.samples import photo, png
from worker.config import load_settings
from worker.decision import NO_GUARD, Thresholds, similarity
from worker.hashing import HASHERS, PERCEPTUAL, bits_descriptor

TINY = ("astronaut.png", "chelsea.png", "coffee.png", "camera.png")
NEGATIVES = 6  # low-information pictures per category
#: Recall the weight-free mechanisms must keep on the tiny set (the README's table has the full harness's).
ROBUST = {
    "mirror horizontal": 1.0,
    "letterbox 10%": 0.75,
    "crop 5%": 0.75,
    "zoom 10%": 0.5,
    "side crop 15% right": 0.5,
    "overlay box 2%": 0.75,
    "border 5% black": 0.75,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for name in TINY:
        (folder / name).write_bytes(png(photo(name)))
    return folder


def test_default_thresholds_catch_moderate_edits_with_no_false_positive(tiny: Path) -> None:
    data = build(tiny, TRANSFORMS, negatives=NEGATIVES)
    measured = measure(data, hashers=[PERCEPTUAL.name], progress=False)
    settings = load_settings(model_weights="random")
    result = combined.run(
        data, measured, Thresholds(settings.perceptual_threshold, settings.effective_semantic_threshold)
    )

    assert settings.effective_semantic_threshold is None  # exact and perceptual stages only
    assert {t.key for t in REGRESSION} >= {"copy same bytes", "brightness -20%", "brightness 20%", "grayscale -",
                                           "jpeg q75", "format png↔jpeg", "webp q80", "downscale 1/2"}  # fmt: skip
    missed = {t.key: result.recall[t.key] for t in REGRESSION if result.recall[t.key] < 1.0}
    assert missed == {}
    assert result.by_kind["copy same bytes"] == {"exact": len(TINY)}
    assert result.by_kind["grayscale -"] == {"perceptual": len(TINY)}
    assert result.false_positives == {"other sources": 0, "hard": 0, "low-information": 0, "colourways": 0}
    assert result.decisions == {
        "other sources": len(TINY) * (len(TRANSFORMS) + 1),
        "hard": len(TINY),
        "low-information": NEGATIVES * (len(CATEGORIES) - 1),
        "colourways": NEGATIVES,
    }
    assert sum(result.wrong.values()) == 0
    # The weight-free robustness mechanisms: mirror hash, border trimming, region hashes (README table).
    for key, floor in ROBUST.items():
        assert result.recall[key] >= floor, key


def test_without_the_guard_low_information_pictures_are_called_duplicates(tiny: Path) -> None:
    data = build(tiny, [by_key("jpeg q75")], negatives=NEGATIVES)
    measured = measure(data, hashers=[], progress=False)
    guarded = combined.run(data, measured, Thresholds(perceptual=bits_apart(5), semantic=None))
    bare = combined.run(data, measured, Thresholds(perceptual=bits_apart(5), semantic=None, guard=NO_GUARD))
    assert guarded.false_positives["low-information"] == 0
    assert bare.false_positives["low-information"] > 0  # solid colours share one pHash
    assert guarded.recall["jpeg q75"] == bare.recall["jpeg q75"] == 1.0


def test_a_threshold_that_is_too_wide_shows_up_as_false_positives(tiny: Path) -> None:
    data = build(tiny, [by_key("rotate +5°")], negatives=0)
    measured = measure(data, hashers=[PERCEPTUAL.name], progress=False)
    loose = combined.run(data, measured, Thresholds(perceptual=bits_apart(40), semantic=None, detail=None))
    assert loose.false_positives["other sources"] > 0


def test_variants_are_deterministic_and_labelled(tiny: Path) -> None:
    first, again = build(tiny, TRANSFORMS, limit=2), build(tiny, TRANSFORMS, limit=2)
    assert [i.data for i in first.items] == [i.data for i in again.items]
    assert len(first.of_role(Role.ORIGINAL)) == 2
    assert len(first.of_role(Role.VARIANT)) == 2 * len(TRANSFORMS)
    assert len(first.of_role(Role.HARD_A)) == len(first.of_role(Role.HARD_B)) == 2
    crop = next(i for i in first.items if i.transform == "crop 10%")
    with Image.open(io.BytesIO(crop.data)) as image:
        assert image.size == (410, 410)  # 512 less 10 % on each side


@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=2, max_size=6))
def test_the_hamming_scorer_agrees_with_the_bit_descriptors(hashes: list[int]) -> None:
    a, b = np.array([0] * (len(hashes) - 1)), np.arange(1, len(hashes))
    scores = hamming_scorer(hashes, 64)(a, b)
    assert list(-scores) == [(hashes[0] ^ h).bit_count() for h in hashes[1:]]
    first = bits_descriptor(hashes[0])
    assert [bits_apart(int(-s)) for s in scores] == [similarity(first, bits_descriptor(h)) for h in hashes[1:]]


def test_the_perceptual_sweep_is_over_similarities() -> None:
    scores = Scores(
        positive={"jpeg q75": np.array([1.0, 0.97, 0.9]), "mirror horizontal": np.array([0.85, ABSTAINED])},
        negative_of={"jpeg q75": np.array([0.3, 0.83]), "mirror horizontal": np.array([0.1, 0.2])},
        originals=np.array([0.2]),
        hard=np.array([0.5]),
        low_info={"solid colour": np.array([ABSTAINED, 0.95])},
    )
    rows = perceptual_sweep(scores)
    assert [row["threshold"] for row in rows] == SWEEP
    assert SWEEP[0] == 0.8
    assert SWEEP[-1] == 1.0
    assert all("bits" not in row for row in rows)
    recall = [row["recall"] for row in rows]
    assert recall == sorted(recall, reverse=True)  # a higher similarity threshold never finds more
    assert recall[0] > recall[-1]
    by_threshold = {row["threshold"]: row for row in rows}
    assert by_threshold[0.97]["recall"] == pytest.approx(at(scores, 0.97).overall_recall)


def test_metrics_at_a_threshold_and_the_halfway_rule() -> None:
    scores = Scores(
        positive={"t": np.array([0.0, -2.0, -9.0])},
        negative_of={"t": np.array([-30.0, -14.0])},
        originals=np.array([-20.0]),
        hard=np.array([-16.0]),
        low_info={"solid colour": np.array([ABSTAINED, -18.0]), "product colourway": np.array([-19.0])},
    )
    m = at(scores, -7.0)
    assert m.recall["t"] == pytest.approx(2 / 3)
    assert m.precision["t"] == 1.0
    assert m.false_positives == {"other sources": 0, "hard": 0, "low-information": 0, "colourways": 0}
    assert at(scores, -14.0).false_positives == {"other sources": 1, "hard": 0, "low-information": 0, "colourways": 0}
    assert at(scores, -18.0).false_positives["low-information"] == 1
    assert at(scores, -19.0).false_positives["colourways"] == 1  # a group of its own, not low-information
    assert math.floor(-halfway(scores, 0.0)) == 7
    closer = Scores(
        scores.positive, scores.negative_of, scores.originals, scores.hard, {"product colourway": np.array([-0.5])}
    )
    assert math.floor(-halfway(closer, 0.0)) == 7  # a colourway, however close, does not move the rule


def test_every_hasher_fits_its_width() -> None:
    picture = photo("chelsea.png")
    for name, hasher in HASHERS.items():
        if name == "pdq" and find_spec("pdqhash") is None:  # the `eval` extra, not in `dev`
            continue
        assert 0 <= hasher(picture) < 1 << hasher.bits, name


def test_the_command_writes_a_report(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--images", str(tiny), "--out", str(out), "--stages", "exact,perceptual", "--hashes", "phash,dhash"]
    result = CliRunner().invoke(app, [*args, "--inputs", "", "--limit", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "<!-- quality-table:start -->" in report
    assert "| copy same bytes ◆ | 1.00 | 1.00 | 1.00 (exact 2) |" in report
    assert "MEANINGLESS" not in report
    data = json.loads((out / "report.json").read_text())
    assert set(data["hashes"]) == {"phash", "dhash"}
    assert data["chosen"]["perceptual"] == data["chosen"]["perceptual_rule"]
    with Image.open(out / "pr_curve.png") as figure:
        assert figure.format == "PNG"


def test_the_cost_tool_times_an_earlier_revision_beside_this_one(tiny: Path) -> None:
    """``--against REV`` loads that revision's fingerprint from git under another package name, and both take
    turns on the same pictures; the earlier package is gone from the import path afterwards."""
    import sys

    from tooling.eval import cost

    path = list(sys.path)
    result = CliRunner().invoke(cost.app, ["--images", str(tiny), "--against", "HEAD", "--rounds", "2"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"hash stage, \d+ pictures, fastest of 2 rounds: HEAD [\d.]+ ms, fingerprint [\d.]+ ms per image "
        r"\([\d.]+ ×\)\n",
        result.output,
    ), result.output
    assert "worker_HEAD.fingerprint" in sys.modules
    assert sys.path == path


def test_each_contender_takes_every_turn_on_every_picture() -> None:
    from tooling.eval.cost import Work, fastest_ms

    calls: dict[str, int] = {"a": 0, "b": 0}

    def counted(name: str) -> Work:
        def work(picture: Image.Image) -> None:
            calls[name] += 1

        return work

    pictures = [(b"x", Image.new("RGB", (4, 4))), (b"y", Image.new("RGB", (4, 4)))]
    times = fastest_ms({"a": counted("a"), "b": counted("b")}, pictures, rounds=3)
    assert calls == {"a": 6, "b": 6}
    assert set(times) == {"a", "b"}
    assert all(t >= 0 for t in times.values())


def test_with_random_weights_the_report_says_the_semantic_stage_is_meaningless(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--images", str(tiny), "--out", str(out), "--limit", "2", "--transforms", "copy", "--hashes", ""]
    result = CliRunner().invoke(app, [*args, "--inputs", "", "--no-progress"], env={"DEDUP_MODEL_WEIGHTS": "random"})
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "THE SEMANTIC STAGE IS MEANINGLESS IN THIS REPORT" in report.splitlines()[3]
    assert "semantic crop/avg" in report
    assert "with model weights `random`" in report


def test_blank_and_smooth_sources_are_counted_apart_and_left_out_of_per_category_recall(tmp_path: Path) -> None:
    """A white drawing on a transparent background (an overlay made for a dark desktop) shows nothing once
    flattened onto white: it is counted as blank and its copies are not scored (only its bytes can tell it); a
    transparent picture that shows something is not blank, and its copies count; nor is a faint one. A sky's
    gradient has no edge: it is smooth, which the guard is asked to abstain on, counted apart and left out of the
    recall too, but for the recall that counts it (``recall_with_smooth``)."""
    from tooling.eval.analysis import analyse
    from tooling.eval.categories import per_category
    from tooling.eval.dataset import blank, build_files

    overlay = Image.new("RGBA", (96, 96))
    overlay.putdata([(255, 255, 255, (x * 3) % 256) for x in range(96 * 96)])  # all its drawing in alpha
    drawing = photo("astronaut.png").convert("RGBA")
    mask = Image.new("L", drawing.size)
    ImageDraw.Draw(mask).ellipse((40, 40, drawing.width - 40, drawing.height - 40), fill=255)
    drawing.putalpha(mask)
    faint = Image.new("L", (96, 96), 250)
    faint.paste(244, (30, 30, 60, 60))  # 6 grey levels, a tenth of the picture
    sky = Image.merge("RGB", [Image.linear_gradient("L").resize((160, 120)).point(lambda v: 90 + v // 2)] * 3)
    files = []
    for name, picture, category in [
        ("a/overlay.png", overlay, "transparent"),
        ("a/cat.png", photo("chelsea.png"), "photo"),
        ("b/drawing.png", drawing, "transparent"),
        ("b/coffee.png", photo("coffee.png"), "photo"),
        ("c/sky.png", sky, "texture"),
    ]:
        path = tmp_path / name.replace("/", "-")
        path.write_bytes(png(picture))
        files.append((name, path, category))
    data = build_files(files, [by_key("jpeg q75")], negatives=0)
    assert data.blank == (True, False, False, False, False)
    assert data.smooth == (True, False, False, False, True)  # the blank overlay is smooth too: it counts as blank
    assert not blank(Image.merge("RGB", [overlay.getchannel("A")] * 3))  # its drawing, seen on its own
    assert not blank(faint)
    measured = measure(data, hashers=[PERCEPTUAL.name], progress=False)
    results = analyse(data, measured, semantic_threshold=None, stages=("exact", "perceptual"))
    by = per_category(data, measured, results)

    assert by["abstained"]["transparent"]["sources"] == 2
    assert by["abstained"]["transparent"]["blank"] == 1
    assert by["abstained"]["photo"]["blank"] == 0
    assert (by["abstained"]["transparent"]["smooth"], by["abstained"]["texture"]["smooth"]) == (0, 1)
    assert by["smooth"] == ["c/sky.png"]
    assert "texture" not in by["recall"]["perceptual"]
    assert set(by["recall_with_smooth"]["perceptual"]["texture"]) == {"jpeg q75"}
    assert "transparent" in by["recall_with_smooth"]["perceptual"]  # the blank overlay is in neither
    assert by["recall_with_smooth"]["perceptual"]["transparent"] == {"jpeg q75": 1.0}
    # Per-category recall is over the drawing alone: found, where the blank overlay would count as a miss.
    assert by["recall"]["perceptual"]["transparent"] == {"jpeg q75": 1.0}
    assert by["recall"]["perceptual"]["photo"] == {"jpeg q75": 1.0}


def test_smooth_is_a_picture_without_an_edge_whatever_its_range() -> None:
    """A soft glow with a small bright core and a blurred black blob are smooth however far their levels span; a
    small object on white, a line drawing and a photo are not; the generated gradients and solid colours all are,
    and none of the generated screenshots, document pages, product shots or two-tone colourways."""
    from PIL import ImageFilter

    from tooling.eval.dataset import decode, smooth
    from tooling.eval.negatives import generate

    centre = np.hypot(*(np.mgrid[0:200, 0:200] - 100.0))
    glow = Image.fromarray(np.clip(255 - 60 * np.exp(-((centre / 45) ** 2)), 0, 255).astype(np.uint8))
    glow.paste(255, (97, 97, 103, 103))  # its core: a few pixels brighter than the glow round them
    blob = Image.new("L", (200, 160), 255)
    ImageDraw.Draw(blob).ellipse((60, 40, 140, 120), fill=0)
    speck = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(speck).ellipse((20, 20, 40, 40), fill=90)  # a bullet hole's size on a page of white
    lines = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(lines).line((10, 10, 190, 150), fill=0, width=2)
    assert smooth(glow)
    assert smooth(blob.filter(ImageFilter.GaussianBlur(12)))
    assert not any(smooth(p) for p in (blob, speck, lines, photo("chelsea.png")))
    by: dict[str, list[bool]] = {}
    for negative in generate(4):
        by.setdefault(negative.category, []).append(smooth(decode(negative.data)))
    assert all(by["gradient"])
    assert all(by["solid colour"])
    assert not any(by["screenshot"] + by["document page"] + by["product on white"] + by["bimodal colourway"])


def test_recall_is_reported_per_aspect_class_and_the_folds_table_compares_each_with_under_2_to_1(
    tmp_path: Path,
) -> None:
    """Every source gets an aspect class from its size as decoded; per-aspect recall counts each class's copies,
    and the folds table gives each class's bordered copies and its largest shortfall against under 2:1."""
    from tooling.eval.analysis import analyse
    from tooling.eval.categories import per_aspect
    from tooling.eval.dataset import ASPECTS, aspect_class, build_files
    from tooling.eval.folds import by_aspect
    from tooling.eval.report import aspect_section

    assert [aspect_class(size) for size in ((100, 51), (100, 50), (300, 100), (50, 100), (100, 301))] == [
        "under 2:1",
        "wide 2–3:1",
        "wide 3:1+",
        "tall 2–3:1",
        "tall 3:1+",
    ]
    chelsea = photo("chelsea.png")
    w, h = chelsea.size
    files = []
    for name, picture in [
        ("a/cat.png", chelsea),
        ("a/panorama.png", chelsea.crop((0, h // 2 - w // 8, w, h // 2 + w // 8))),  # 4:1
        ("b/phone.png", photo("coffee.png").crop((200, 0, 200 + 400 // 3, 400))),  # 1:3
    ]:
        path = tmp_path / name.replace("/", "-")
        path.write_bytes(png(picture))
        files.append((name, path, "photo"))
    data = build_files(files, [by_key("border 5% black"), by_key("jpeg q75")], negatives=0)
    assert data.aspects == ("under 2:1", "wide 3:1+", "tall 3:1+")
    measured = measure(data, hashers=[PERCEPTUAL.name], progress=False)
    results = analyse(data, measured, semantic_threshold=None, stages=("exact", "perceptual"))
    by = per_aspect(data, measured, results)

    assert by["sources"] == {"under 2:1": 1, "wide 3:1+": 1, "tall 3:1+": 1}
    for name in by["sources"]:
        assert by["recall"]["perceptual"][name] == {"border 5% black": 1.0, "jpeg q75": 1.0}
    results["aspects"] = by
    assert "| border 5% black | 1.00 | 1.00 | 1.00 |" in aspect_section(results)

    worse = {
        "sources": dict(by["sources"]),
        "recall": {"perceptual": {k: dict(v) for k, v in by["recall"]["perceptual"].items()}},
    }
    worse["recall"]["perceptual"]["wide 3:1+"]["border 5% black"] = 0.5
    rows = by_aspect({"aspects": by}, {"aspects": worse})
    assert rows[0].startswith("| aspect | tune: sources | tune: borders | tune: largest shortfall |")
    assert "| under 2:1 | 1 | 1.00 / — | — | 1 | 1.00 / — | — |" in rows
    assert "| wide 3:1+ | 1 | 1.00 / — | 0.00 | 1 | 0.50 / — | 0.50 (border 5% black) |" in rows
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows[2:]] == [n for n in ASPECTS if n in by["sources"]]


#: The first two screenshots' and solid colours' SHA-256 (16 hex digits) as generated before the product colourways
#: joined the categories.
SCREENSHOT_AND_SOLID = ["0166960bbc0cee87", "7b133df0e3335576", "ccd91cd15a234184", "563a71e3268c2b1c"]


def test_a_products_colourways_differ_in_the_bodys_colour_alone_and_other_categories_are_unchanged() -> None:
    """Four pictures a product (:data:`tooling.eval.negatives.COLOURWAYS`): where any two differ, every two
    differ (the body; the backdrop, shadow and accent are one); the other shade keeps the base's hue and lies
    1.8 times and more from it in level. A category added later leaves the others' pictures as they were (its
    own random stream)."""
    pictures = negatives.generate(per_category=8, categories=("product colourway",))
    for product in (pictures[:4], pictures[4:]):
        rgb = [np.asarray(decode(p.data), dtype=np.float64) for p in product]
        changed = [np.abs(rgb[0] - other).max(axis=2) > 40 for other in rgb[1:]]
        assert all(mask.mean() > 0.02 for mask in changed)
        body = changed[0] & changed[1]
        assert (body.sum() / changed[0].sum()) > 0.9
        base, shade = rgb[0][body].mean(axis=0), rgb[1][body].mean(axis=0)
        assert max(base.sum() / shade.sum(), shade.sum() / base.sum()) > 1.6  # through JPEG and the blur at edges
        assert np.allclose(base / base.sum(), shade / shade.sum(), atol=0.03)  # one chromaticity
    streams = {name: negatives.generate(per_category=2, categories=(name,)) for name in ("screenshot", "solid colour")}
    digests = [hashlib.sha256(p.data).hexdigest()[:16] for p in streams["screenshot"] + streams["solid colour"]]
    assert digests == SCREENSHOT_AND_SOLID
