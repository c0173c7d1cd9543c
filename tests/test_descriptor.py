"""The perceptual descriptor on small generated pictures (deterministic, no service needed): what it is (a unit
vector of median-centred low DCT coefficients without DC), what it ignores (brightness and contrast gain,
re-encoding, resizing — on dark, low-contrast pictures too) and what it keeps apart."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.helpers import ORDER_ROUNDING
from tooling.eval.transforms import zoom
from tooling.samples import PHOTOS, photo, resized
from worker import imaging
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import (
    DESCRIPTOR_DIM,
    GUARD,
    Signals,
    Thresholds,
    _best_stage,
    _match_signals,
    perceptual_similarity,
    similarity,
)
from worker.fingerprint import Fingerprint, descriptors, fingerprint


def decoded(data: bytes) -> Image.Image:
    return imaging.decode(data, max_pixels=100_000_000, min_side=imaging.DECODE_MIN_SIDE)


def reencoded(image: Image.Image, fmt: str, **options: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return decoded(out.getvalue())


def sig(name: str, fp: Fingerprint) -> Signals:
    return Signals(name, 1, name, fp.dct, look=fp.look)


def near(a: Fingerprint, b: Fingerprint) -> float:
    found = perceptual_similarity(sig("a", a), sig("b", b))
    assert found is not None
    return found


def smooth_field(rng: np.random.Generator, low: float, high: float, cells: tuple[int, int], size: tuple[int, int]):  # type: ignore[no-untyped-def]
    """Random values on a coarse ``cells`` grid (rows, columns) resized to ``size`` (width, height)."""
    coarse = Image.fromarray(rng.uniform(low, high, cells).astype(np.float32), mode="F")
    return np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)


def dark_picture(seed: int, width: int = 960, height: int = 640) -> Image.Image:
    """A night shot: a near-black, low-contrast background (grey levels about 6–12 with a faint texture and sensor
    noise) and one small, dim, striped subject (18–40) off-centre. Its low DCT coefficients sit close to their
    median: this is where one bit per coefficient flipped at random."""
    rng = np.random.default_rng(seed)
    size = (width, height)
    grey = smooth_field(rng, 6, 12, (5, 7), size)
    grey += smooth_field(rng, -4, 4, (height // 12, width // 12), size)
    grey += rng.normal(0, 1.5, (height, width))
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy, r = width * (0.3 + 0.4 * rng.random()), height * (0.3 + 0.4 * rng.random()), min(size) * 0.08
    stripes = 18 + 22 * (0.5 + 0.5 * np.sin((xx + 2 * yy) / 6.0))
    grey = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < r**2, stripes, grey)
    rgb = np.stack([grey * 1.05, grey, grey * 0.8], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def mid_picture(seed: int, width: int = 480, height: int = 320) -> Image.Image:
    """A mid-tone scene (grey levels 40–215, nothing clipped) of soft shapes and texture."""
    rng = np.random.default_rng(seed)
    size = (width, height)
    grey = smooth_field(rng, 70, 180, (4, 6), size) + smooth_field(rng, -12, 12, (height // 10, width // 10), size)
    grey = np.clip(grey, 40, 215)
    rgb = np.stack([grey, grey * 0.95 + 5, grey * 0.85 + 10], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_dark_low_contrast_picture_matches_its_re_encodes_and_thumbnail(seed: int) -> None:
    source = dark_picture(seed)
    assert float(np.asarray(source.convert("L")).mean()) < 20  # dark
    original = fingerprint(source)
    assert GUARD.perceptual_ok(original.look)  # not a blank picture: the stage decides it
    width = 320
    copies = {
        "png": reencoded(source, "PNG"),
        "jpeg-q40": reencoded(source, "JPEG", quality=40),
        "thumbnail-320": reencoded(source.resize((width, source.height * width // source.width)), "PNG"),
    }
    for name, image in copies.items():
        copy = fingerprint(image)
        assert GUARD.perceptual_ok(copy.look), name
        assert near(copy, original) >= DEFAULT_PERCEPTUAL_THRESHOLD, name
        assert near(original, copy) == pytest.approx(near(copy, original), abs=ORDER_ROUNDING), name
        assert similarity(copy.dct, original.dct) >= 0.99, name  # the whole picture itself, not only a region
    if seed == 0:
        png = fingerprint(copies["png"])
        assert np.array_equal(png.dct, original.dct)  # a lossless round trip: the very same descriptor


def test_dark_pictures_of_other_scenes_do_not_match() -> None:
    prints = [fingerprint(dark_picture(seed)) for seed in range(4)]
    for i, a in enumerate(prints):
        for b in prints[i + 1 :]:
            assert near(a, b) < DEFAULT_PERCEPTUAL_THRESHOLD - 0.1


@pytest.mark.parametrize("picture", ["dark", "mid", "astronaut.png", "coffee.png"])
def test_every_descriptor_is_a_unit_vector_with_nothing_in_the_dc_slot(picture: str) -> None:
    image = {"dark": dark_picture(0), "mid": mid_picture(0)}.get(picture) or photo(picture)
    fp = fingerprint(image)
    rows = np.concatenate([fp.dct[None, :], fp.look.variants])
    assert rows.shape == (16, DESCRIPTOR_DIM)  # whole, mirror, ten regions, brightened, untrimmed, its mirror, half
    assert rows.dtype == np.float32
    assert np.linalg.norm(rows, axis=1) == pytest.approx(np.ones(len(rows)), abs=1e-5)
    assert (rows[:, 0] == 0.0).all()  # DC: overall brightness says nothing about the picture
    assert (np.median(rows[:, 1:], axis=1) == 0.0).all()  # centred on the median of the 63 AC coefficients
    assert fp.mirror.shape == fp.bright.shape == fp.untrimmed.shape == (DESCRIPTOR_DIM,)
    assert fp.regions.shape == (10, DESCRIPTOR_DIM)


@pytest.mark.parametrize("colour", [(0, 0, 0), (200, 30, 30), (255, 255, 255), (128, 128, 128)])
def test_a_picture_without_structure_gets_an_all_zero_descriptor(colour: tuple[int, int, int]) -> None:
    fp = fingerprint(Image.new("RGB", (300, 200), colour))
    assert not fp.dct.any()
    assert not fp.look.variants.any()
    solid = sig("s", fp)
    assert perceptual_similarity(solid, solid) == 0.0  # it matches nothing, not even another solid picture
    assert perceptual_similarity(solid, sig("m", fingerprint(mid_picture(0)))) == 0.0


def test_descriptors_drop_dc_and_ignore_gain_and_offset() -> None:
    rng = np.random.default_rng(5)
    low = rng.normal(0, 20, (3, 8, 8))
    described = descriptors(low)
    assert described.shape == (3, DESCRIPTOR_DIM)
    changed = 2.5 * low
    changed[:, 0, 0] += 300.0  # brighter: only the DC term moves
    assert descriptors(changed) == pytest.approx(described, abs=1e-6)
    flat = np.zeros((2, 8, 8))
    flat[1, 0, 0] = 500.0  # a DC term alone: a uniform picture of any brightness
    assert not descriptors(flat).any()


@pytest.mark.parametrize(
    "edit",
    [
        lambda i: ImageEnhance.Brightness(i).enhance(0.8),
        lambda i: ImageEnhance.Brightness(i).enhance(1.15),
        lambda i: ImageEnhance.Contrast(i).enhance(0.6),
        lambda i: ImageEnhance.Contrast(i).enhance(1.2),
        lambda i: i.point(lambda v: int(v * 0.7 + 30)),
    ],
    ids=["darker", "brighter", "less-contrast", "more-contrast", "gain-and-offset"],
)
def test_brightness_and_contrast_gain_leave_the_descriptor_unchanged(edit) -> None:  # type: ignore[no-untyped-def]
    for seed in (0, 2):
        source = mid_picture(seed)
        original, changed = fingerprint(source), fingerprint(edit(source))
        assert similarity(changed.dct, original.dct) >= 0.99, seed
        others = [fingerprint(mid_picture(other)) for other in (10, 11, 12)]
        assert max(similarity(changed.dct, o.dct) for o in others) < DEFAULT_PERCEPTUAL_THRESHOLD - 0.3, seed
        assert max(near(changed, o) for o in others) < DEFAULT_PERCEPTUAL_THRESHOLD, seed


def test_generated_scenes_are_far_from_the_sample_photos() -> None:
    photos = [fingerprint(photo(name)) for name in PHOTOS]
    for picture in (dark_picture(0), mid_picture(0)):
        fp = fingerprint(picture)
        assert max(near(fp, p) for p in photos) < DEFAULT_PERCEPTUAL_THRESHOLD


def test_batch_mates_are_matched_alike_whether_or_not_their_descriptors_are_compared_first() -> None:
    """decide() compares an image with its batch's earlier originals on the descriptors first and reads the details
    only for pairs that reach the threshold without them: every match is the full comparison's, for copies, near
    misses and unrelated pictures alike, at thresholds around the default."""
    sources = [photo(name).convert("RGB") for name in PHOTOS[:4]]
    edits: list[Callable[[Image.Image], Image.Image]] = [
        lambda p: p,
        lambda p: resized(p, 0.5),
        lambda p: zoom(p, 0.1),
        lambda p: zoom(p, 0.3),
    ]
    batch = [
        Signals(f"b/{n}-{k}.jpg", 10 * n + k, f"{n}-{k}", fp.dct, look=fp.look)
        for n, source in enumerate(sources)
        for k, edit in enumerate(edits)
        for fp in [fingerprint(edit(source))]
    ]
    matched = 0
    for threshold in (0.85, 0.9, 0.95):
        t = Thresholds(perceptual=threshold, semantic=None)
        for item in batch:
            for other in batch:
                if other is item:
                    continue
                full = _best_stage(
                    other.id,
                    other.event_time_ms,
                    same_bytes=False,
                    perceptual=perceptual_similarity(item, other, t.detail, t.detail_region),
                    cosine=None,
                    looks=(item.look, other.look),
                    thresholds=t,
                )
                assert _match_signals(item, other, t) == full, (item.id, other.id, threshold)
                matched += full is not None
    assert matched > 0  # copies were among the pairs
