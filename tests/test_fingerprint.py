"""The fingerprint the near-duplicate stages compare: border trimming, mirror, region and brightened descriptors,
the information guard and the colour check, on real photos and generated low-information pictures (no service
needed)."""

from __future__ import annotations

import io
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from tests.helpers import ORDER_ROUNDING, faint_wallpaper, light_icon, light_patchwork
from tooling.eval import negatives
from tooling.eval.transforms import border, crop, downscale, letterbox, side_crop, webp, zoom
from tooling.samples import PHOTOS, brightened, grayscale, photo, png
from worker import imaging
from worker.borders import Trim, refined, trim
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import (
    BRIGHT,
    DETAIL,
    DETAIL_REGION,
    GUARD,
    NO_GUARD,
    Signals,
    chroma,
    colour_distance,
    detail_similarities,
    perceptual_similarity,
    similarity,
)
from worker.fingerprint import BRIGHT_SAME, BRIGHTER, LADDER_BELOW, REGIONS, Fingerprint, fingerprint, information
from worker.guard import LAYOUT_BYTES, shades_apart
from worker.hash_rows import searched
from worker.views import BRIGHT_HALF, DETAIL_BRIGHT, UNTRIMMED, amplitudes, brightness_mixed, mixed_details

#: None since the guard measures at the best exposure: an even brick texture, whose DCT coefficients sit 0.28 grey
#: levels from their median at its own exposure (below the floor; decided for its texture, ``Guard.textured``), is
#: a dim picture and carries 0.35 at its best exposure.
UNDER_THE_INFORMATION_FLOOR: set[str] = set()


def sig(name: str, fp: Fingerprint) -> Signals:
    return Signals(name, 1, name, fp.dct, look=fp.look)


def near(a: Signals, b: Signals) -> float:
    """:func:`perceptual_similarity` of two fingerprinted pictures (both have a descriptor), confirmed by their
    details as the decision confirms it."""
    found = perceptual_similarity(a, b, DETAIL, DETAIL_REGION)
    assert found is not None
    return found


def decoded(data: bytes) -> Image.Image:
    return imaging.decode(data, max_pixels=100_000_000, min_side=imaging.DECODE_MIN_SIDE)


def jpeg(image: Image.Image) -> Image.Image:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90)
    return decoded(out.getvalue())


#: No other photo comes this close to a copy (measured: at most 0.53 for these edits, 0.56 for the brightened logo).
OTHER_PHOTOS_BELOW = 0.7


@pytest.mark.parametrize(
    ("edit", "least"),
    [
        (ImageOps.mirror, 0.999),
        (lambda i: letterbox(i, 0.10), 0.99),
        (lambda i: border(i, 0.05, (0, 0, 0)), 0.99),
        (lambda i: zoom(i, 0.10), 0.99),
        (lambda i: crop(i, 0.05), 0.99),
        (lambda i: side_crop(i, (0.0, 0.0, 0.85, 1.0)), 0.99),
    ],
    ids=["mirror", "letterbox", "border", "zoom", "crop", "side-crop"],
)
def test_a_geometric_copy_is_near_its_source_and_far_from_other_photos(edit, least: float) -> None:  # type: ignore[no-untyped-def]
    source = photo("astronaut.png")
    original, copy = sig("o", fingerprint(source)), sig("c", fingerprint(jpeg(edit(source))))
    assert least >= DEFAULT_PERCEPTUAL_THRESHOLD
    assert near(copy, original) >= least
    assert near(original, copy) == pytest.approx(near(copy, original), abs=ORDER_ROUNDING)  # order of arrival
    others = [sig(n, fingerprint(photo(n))) for n in PHOTOS if n != "astronaut.png"]
    assert max(near(copy, o) for o in others) < OTHER_PHOTOS_BELOW


@pytest.mark.parametrize("name", ["hubble_deep_field.jpg", "gravel.png", "grass.png"])
def test_a_small_zoomed_copy_is_confirmed_by_the_whole_against_region_details_threshold(name: str) -> None:
    """A 300-px picture zoomed 10 %: the copy is its source's central region up to the region's box, so the two
    views' details agree at 0.97, not at the 0.98 that views covering the same part of both must reach."""
    source = photo(name).copy()  # photo() is cached: never edit it in place
    source.thumbnail((300, 300))
    original, copy = sig("o", fingerprint(source)), sig("c", fingerprint(jpeg(zoom(source, 0.10))))
    assert perceptual_similarity(copy, original, DETAIL) == -1.0  # one threshold for every pair: missed
    assert DETAIL_REGION < DETAIL
    assert near(copy, original) >= 0.99
    assert near(original, copy) == pytest.approx(near(copy, original), abs=ORDER_ROUNDING)


def strip(name: str, ratio: float, *, tall: bool = False) -> Image.Image:
    """A band across the middle of a photo, ``ratio`` times longer than it is wide: a panorama, a banner, or
    (``tall``) a phone's screenshot or a comic's column."""
    picture = photo(name)
    w, h = picture.size
    if tall:
        side = round(h / ratio)
        return picture.crop(((w - side) // 2, 0, (w + side) // 2, h))
    side = round(w / ratio)
    return picture.crop((0, (h - side) // 2, w, (h + side) // 2))


@pytest.mark.parametrize("name", ["camera.png", "coffee.png", "chelsea.png", "rocket.jpg"])
@pytest.mark.parametrize(("ratio", "tall"), [(4.0, False), (6.0, False), (3.5, True)], ids=["4:1", "6:1", "1:3.5"])
def test_a_wide_or_tall_pictures_bordered_copy_is_near_it(name: str, ratio: float, tall: bool) -> None:
    """Borders are looked for on a thumbnail whose shorter side is 64 lines: on the working thumbnail, 32 lines
    high at 4:1, a border of 5 % of the height is 1.6 lines, blurred into the picture's own first lines."""
    source = strip(name, ratio, tall=tall)
    original = sig("o", fingerprint(source))
    for fill, side in (((0, 0, 0), 0.05), ((255, 255, 255), 0.10)):
        copy = sig("c", fingerprint(jpeg(border(source, side, fill))))
        assert near(copy, original) >= 0.99, fill


def toolbar(seed: int, *, tall: bool = False) -> Image.Image:
    """A generated application toolbar, 1024 × 192 (5.3:1): rows of small words and coloured buttons on a light
    ground, the fine structure a thumbnail set by the longer side has 36 lines for; ``tall``: turned upright."""
    rng = np.random.default_rng(seed)
    w, h = 1024, 192
    out = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(200, 250, 3)))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=16)
    y = 8
    while y < h - 20:
        x = 8
        while x < w - 60:
            if rng.random() < 0.2:
                draw.rounded_rectangle((x, y, x + 70, y + 24), 6, fill=tuple(int(v) for v in rng.integers(0, 200, 3)))
                x += 80
            else:
                word = "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(3, 9))))
                draw.text((x, y), word, fill=(30, 30, 30), font=font)
                x += int(draw.textlength(word, font=font)) + 12
        y += int(rng.integers(20, 34))
    return out.transpose(Image.Transpose.ROTATE_90) if tall else out


@pytest.mark.parametrize("tall", [False, True], ids=["wide", "tall"])
def test_a_wide_or_tall_screenshots_zoomed_cropped_and_bordered_copies_are_near_it(tall: bool) -> None:
    """The working thumbnail has 64 lines on the shorter side of a picture wider or taller than 2:1: with 128 on
    the longer one, a 5.3:1 toolbar's centre region was 32 lines enlarged to the view's 32, where its zoomed copy's
    view was reduced from its own 36, and their details disagreed (0.96–0.97); and a white border's copy of one was
    missed."""
    for seed in range(6):
        source = toolbar(seed, tall=tall)
        original = sig("o", fingerprint(source))
        for edit in (partial(zoom, amount=0.10), partial(crop, side=0.05), partial(crop, side=0.10)):
            copy = sig("c", fingerprint(jpeg(edit(source))))
            assert min(near(copy, original), near(original, copy)) >= 0.99, (seed, edit)
        copy = sig("c", fingerprint(jpeg(border(source, 0.10, (255, 255, 255)))))
        assert min(near(copy, original), near(original, copy)) >= 0.98, seed


def test_of_two_opposite_steps_a_line_apart_the_further_is_the_pictures_own_strip() -> None:
    """A picture whose own last rows are nearly white, in a white border: the thumbnail found the border as wide at
    both ends, and the bottom side's step, five rows further in than the top's, is the picture's strip, which its
    source keeps (a toolbar's light last rows: its copy lost 7 of 205 rows and was missed)."""
    rng = np.random.default_rng(3)
    picture = rng.uniform(60, 200, (100, 200))
    picture[-5:] = 252
    framed = np.full((140, 240), 255.0)
    framed[20:120, 20:220] = picture
    white = Trim((5, 5, 55, 30), (5.0, 5.0, 55.0, 30.0), 6.0, (255.0,) * 4)  # found on a quarter-size thumbnail
    assert refined(Image.fromarray(framed.astype(np.uint8)).convert("RGB"), (20, 20, 220, 120), 4, white) == (
        20,
        20,
        220,
        120,
    )


def cartoon(seed: int, side: int = 200) -> Image.Image:
    """A small flat illustration: outlined rectangles and ellipses of random colours on a light ground."""
    rng = np.random.default_rng(seed)
    out = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(150, 255, 3)))
    draw = ImageDraw.Draw(out)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, side, 2))
        w, h = (int(v) for v in rng.integers(side // 10, side // 3, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 255, 3)), outline=(20, 20, 20), width=2)
    return out


def test_a_half_size_copy_of_a_small_illustration_comes_to_its_views_through_the_same_working_size() -> None:
    """A 200-px illustration is reduced to the 128-px working thumbnail; its ½ downscale, 100 px, is enlarged to
    it. Left at 100 px, the copy came to its 32×32 views along another chain, and its details, a little sharper,
    met its source's at 0.984–0.993 for these seeds; through the same working size, at 0.998 or more."""
    for seed in range(1, 8):
        source = cartoon(seed)
        original, copy = fingerprint(jpeg(source)), fingerprint(jpeg(downscale(source, 0.5)))
        assert copy.look.details.shape == original.look.details.shape
        assert detail_similarities(copy.look.details[:1], original.look.details[:1])[0, 0] >= 0.995, seed


def tall_disc_on_white() -> Image.Image:
    """A marked red disc on white, 5 % from the top and bottom and a quarter from the sides."""
    out = Image.new("RGB", (600, 400), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.ellipse((120, 20, 480, 380), fill=(190, 0, 40))
    draw.ellipse((190, 150, 250, 210), fill=(255, 230, 0))
    draw.rectangle((300, 250, 420, 280), fill=(20, 60, 170))
    return out


@pytest.mark.parametrize(
    ("edit", "region"),
    [(lambda i: crop(i, 0.10), (0.1, 0.1, 0.9, 0.9)), (lambda i: side_crop(i, (0.0, 0.15, 1.0, 1.0)), (0, 0.15, 1, 1))],
    ids=["crop 10%", "top 15% off"],
)
def test_a_cropped_copy_of_an_object_on_white_is_a_region_of_the_picture_as_uploaded(edit, region) -> None:  # type: ignore[no-untyped-def]
    """A crop cuts the uploaded picture, not the trimmed one: these cut into the disc at the top and leave white at
    the sides, so the copy trims to no region of the trimmed source (whole ↔ region was -1 when the regions were
    the trimmed picture's). Its untrimmed view is the source's region as uploaded, and that pair counts, at the
    whole ↔ region details floor."""
    source = tall_disc_on_white()
    original, copy = fingerprint(source), fingerprint(jpeg(edit(source)))
    assert similarity(copy.untrimmed, original.regions[REGIONS.index(region)]) >= 0.99
    assert max(similarity(copy.dct, r) for r in original.regions) < DEFAULT_PERCEPTUAL_THRESHOLD  # trimmed: none
    assert near(sig("c", copy), sig("o", original)) >= 0.99
    o, c = sig("o", original), sig("c", copy)
    assert near(o, c) == pytest.approx(near(c, o), abs=ORDER_ROUNDING)


def test_without_its_regions_and_mirror_a_copy_is_far() -> None:
    source = photo("chelsea.png")
    full = fingerprint(source)
    mirrored = fingerprint(jpeg(ImageOps.mirror(source)))
    bare = Signals("m", 1, "m", mirrored.dct)  # no look: the whole-picture descriptor alone
    assert near(bare, Signals("o", 1, "o", full.dct)) < 0.5
    assert near(sig("m", mirrored), sig("o", full)) >= 0.999


@pytest.mark.parametrize("factor", [1.2, 1.35])  # at +40 % the details of the ×1.25 view no longer agree
def test_a_brightened_copy_whose_colours_clip_matches_through_the_brightened_descriptor(factor: float) -> None:
    """The logo's saturated colours clip channel by channel when brightened: its grey levels change unevenly and
    the whole-picture descriptors drift apart (at +20 % they still meet the default threshold; at +35 % they do
    not); the stored and searched brightened descriptor meets the copy, whichever arrives first."""
    source = photo("logo.png")
    original, copy = fingerprint(source), fingerprint(jpeg(brightened(source, factor)))
    whole = similarity(original.dct, copy.dct)
    if factor > 1.2:
        assert whole < DEFAULT_PERCEPTUAL_THRESHOLD
    assert similarity(original.bright, original.dct) < BRIGHT_SAME  # the logo has something to clip
    assert near(sig("c", copy), sig("o", original)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    assert near(sig("o", original), sig("c", copy)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    assert near(sig("c", copy), sig("o", original)) > whole + 0.02  # the brightened row is what meets it
    others = [sig(n, fingerprint(photo(n))) for n in PHOTOS]
    assert max(near(sig("c", copy), o) for o in others) < OTHER_PHOTOS_BELOW


def test_the_brightened_view_is_brightened_before_the_thumbnail_averages_it() -> None:
    """Light stripes four pixels wide, finer than a thumbnail pixel, beside plain patches: a brightened copy
    clips the stripes before any thumbnail averages them, so its patches and stripes no longer have the source's
    relation. Brightening the thumbnail (the averages) missed that: the source's brightened view was its whole
    one and met the copy at 0.967 (details 0.977); brightened on the reduced picture, it meets it at 0.9999."""
    rng = np.random.default_rng(5)
    grey = np.kron(rng.uniform(60, 200, (24, 32)), np.ones((32, 32)))  # plain patches, 1024 × 768
    striped = np.kron(rng.random((6, 8)) < 0.5, np.ones((128, 128))).astype(bool)
    stripes = np.broadcast_to((np.arange(1024) // 4) % 2 == 0, grey.shape)
    grey = np.where(striped, np.where(stripes, 250.0, 110.0), grey)
    source = Image.fromarray(grey.astype(np.uint8)).convert("RGB")
    copy = fingerprint(decoded(png(ImageEnhance.Brightness(source).enhance(BRIGHTER))))
    original = fingerprint(source)
    assert similarity(original.dct, copy.dct) < 0.98  # the whole views do not meet
    assert similarity(original.bright, copy.dct) > 0.999
    assert detail_similarities(original.look.details[BRIGHT : BRIGHT + 1], copy.look.details[:1])[0, 0] > 0.999


def test_an_icon_is_brightened_as_uploaded_since_brightening_moves_its_trim() -> None:
    """An object on white with a soft grey shadow: the source is trimmed at the shadow's edge, and a copy
    brightened by 20 % clips the shadow to white and is trimmed at the object, a frame of its own. The brightened
    view is of the picture as uploaded and meets the copy's untrimmed view as a copy meets its source (brightened
    after trimming, it met the copy at 0.978)."""
    shadow = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(shadow).ellipse((30, 30, 226, 226), fill=255)
    source = Image.composite(
        Image.new("RGB", (256, 256), (222, 222, 222)),
        Image.new("RGB", (256, 256), (255, 255, 255)),
        shadow.filter(ImageFilter.GaussianBlur(12)),
    )
    draw = ImageDraw.Draw(source)
    draw.ellipse((70, 70, 186, 186), fill=(200, 60, 40))
    draw.rectangle((110, 90, 150, 170), fill=(250, 220, 60))
    copied = jpeg(brightened(source, 1.2))
    frames = [trim(np.asarray(p.convert("L"), dtype=np.float64)).box for p in (source, copied)]
    assert frames[0] != frames[1]  # brightening moved the trim
    original, copy = fingerprint(source), fingerprint(copied)
    bright_and_untrimmed = detail_similarities(
        original.look.details[BRIGHT : BRIGHT + 1], copy.look.details[UNTRIMMED : UNTRIMMED + 1]
    )[0, 0]
    assert bright_and_untrimmed >= 0.995
    assert near(sig("c", copy), sig("o", original)) >= 0.995


def test_a_copy_brightened_less_than_the_brightened_view_meets_a_mix_of_its_sources_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A light patchwork brightened by 20 % clips less than its source's ×1.25 brightened view: their details agree
    at 0.974, under :data:`DETAIL_BRIGHT`. The copy's details lie between the source's own and the brightened
    view's, and the closest mix of the two (:func:`worker.views.mixed`) meets them at 0.996, either way round."""
    source = light_patchwork(3)
    original, copy = fingerprint(source), fingerprint(jpeg(brightened(source, 1.2)))
    plain = detail_similarities(copy.look.details, original.look.details)
    assert plain[UNTRIMMED, BRIGHT] < DETAIL_BRIGHT
    assert brightness_mixed(plain, copy.look.details, original.look.details)[UNTRIMMED, BRIGHT] >= DETAIL_BRIGHT
    assert near(sig("c", copy), sig("o", original)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    assert near(sig("o", original), sig("c", copy)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    monkeypatch.setattr("worker.views.brightness_mixed", lambda plain, a, b: plain)  # the brightened view alone
    assert near(sig("c", copy), sig("o", original)) < DEFAULT_PERCEPTUAL_THRESHOLD


def test_a_picture_most_of_which_clips_takes_a_half_brightened_rung_that_meets_its_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A light icon most of whose fill clips at +20 %: its untrimmed and ×1.25 views' details lie far apart (under
    :data:`LADDER_BELOW`), and the closest mix of the two meets a +20 % copy's at 0.967, under
    :data:`DETAIL_BRIGHT`. The picture takes the ladder's middle rung (×1.12, :data:`BRIGHT_HALF`), and the mix of
    all three meets the copy at 0.995, either way round; without it, the copy is not found. (Every pair is held to
    its :func:`~worker.views.detail_floor` here: the generated icon's clipped views are quiet enough for the floor
    re-encoding noise leaves to confirm them anyway.) A picture whose two ends lie close takes no half rung: the
    slot repeats the untrimmed view, which is neither stored nor searched nor mixed."""
    monkeypatch.setattr("worker.views.DETAIL_NOISE", 0.0)
    source = light_icon(3)
    original, copy = fingerprint(source), fingerprint(jpeg(brightened(source, 1.2)))
    ends = detail_similarities(original.look.details[UNTRIMMED : UNTRIMMED + 1], original.look.details[BRIGHT:])
    assert ends[0, 0] < LADDER_BELOW
    assert not np.array_equal(original.look.details[BRIGHT_HALF], original.look.details[UNTRIMMED])
    mine, theirs = copy.look.details, original.look.details
    two = mixed_details(mine[UNTRIMMED], theirs[[UNTRIMMED, BRIGHT]])
    three = mixed_details(mine[UNTRIMMED], theirs[[UNTRIMMED, BRIGHT, BRIGHT_HALF]])
    assert two < DETAIL_BRIGHT <= three
    plain = detail_similarities(mine, theirs)
    assert max(plain[UNTRIMMED, BRIGHT], plain[UNTRIMMED, BRIGHT_HALF]) < DETAIL_BRIGHT  # no rung alone
    assert near(sig("c", copy), sig("o", original)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    assert near(sig("o", original), sig("c", copy)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    with monkeypatch.context() as patched:
        patched.setattr("worker.fingerprint.LADDER_BELOW", 0.0)  # no picture takes the half rung
        without = fingerprint(source)
    assert np.array_equal(without.look.details[BRIGHT_HALF], without.look.details[UNTRIMMED])
    assert near(sig("c", copy), sig("o", without)) < DEFAULT_PERCEPTUAL_THRESHOLD
    close = fingerprint(light_patchwork(3))  # its two ends at 0.92
    assert np.array_equal(close.look.variants[BRIGHT_HALF - 1], close.look.variants[UNTRIMMED - 1])
    assert BRIGHT_HALF not in {v for v, _ in searched(sig("p", close))}
    # ... and the repeat is no rung of its ladder: a copy's views meet it as they meet the untrimmed view (the
    # index has no such row to mix), while its brightened view is mixed
    lighter = fingerprint(jpeg(brightened(light_patchwork(3), 1.2))).look.details
    plain = detail_similarities(lighter, close.look.details)
    mixed = brightness_mixed(plain, lighter, close.look.details)
    assert mixed[UNTRIMMED, BRIGHT] > plain[UNTRIMMED, BRIGHT]
    assert mixed[UNTRIMMED, BRIGHT_HALF] == plain[UNTRIMMED, BRIGHT_HALF] == plain[UNTRIMMED, UNTRIMMED]


def test_a_brightened_view_must_agree_more_closely_than_other_views() -> None:
    """Two generated pictures with one light/dark split and different detail: brightening clips the light side
    flat, and what is left of one agrees with the other's whole at 0.9805, over the 0.98 other views need. A whole
    picture against a brightened view needs :data:`DETAIL_BRIGHT`, and they stay apart."""
    pictures = negatives.generate(per_category=14, categories=("bimodal colourway",))
    first, second = (fingerprint(decoded(p.data)) for p in pictures[12:14])
    assert GUARD.perceptual_ok(first.look)
    assert GUARD.perceptual_ok(second.look)
    assert GUARD.colours_agree(first.look, second.look)
    whole_and_bright = detail_similarities(first.look.details[:1], second.look.details[BRIGHT : BRIGHT + 1])[0, 0]
    assert DETAIL < whole_and_bright < DETAIL_BRIGHT
    assert near(sig("a", first), sig("b", second)) < DEFAULT_PERCEPTUAL_THRESHOLD


def test_a_picture_with_nothing_to_clip_keeps_its_whole_descriptor_as_the_brightened_one() -> None:
    for name in ("chelsea.png", "coins.png", "gravel.png"):
        fp = fingerprint(photo(name))
        # no extra row to store or search, no new pair to go wrong
        assert np.array_equal(fp.bright, fp.dct), name
        assert np.array_equal(fp.look.details[BRIGHT], fp.look.details[0]), name
    # the astronaut's white suit clips: its details change though its descriptor hardly does, so it keeps the row
    clipped = fingerprint(photo("astronaut.png"))
    assert similarity(clipped.bright, clipped.dct) >= BRIGHT_SAME
    assert not np.array_equal(clipped.bright, clipped.dct)


def test_uniform_borders_are_trimmed_and_a_solid_picture_is_kept_whole() -> None:
    grey = np.full((100, 120), 0.0)
    grey[20:80, 10:110] = np.random.default_rng(1).uniform(30, 220, (60, 100))
    assert trim(grey).box == (11, 21, 109, 79)  # the borders and the line blending them into the picture
    assert trim(np.full((50, 50), 128.0)).box == (0, 0, 50, 50)
    one_sided = grey.copy()
    one_sided[80:] = 90.0  # a strip of another colour at the bottom: the top is no letterbox bar then
    assert trim(one_sided).box[1::2] == (0, 100)


def test_a_border_edge_is_found_to_a_fraction_of_a_line() -> None:
    """A picture behind a border 10.4 lines wide, blurred as a thumbnail blurs it: the edge comes out within a
    tenth of a line, while whole lines can only say 11."""
    rng = np.random.default_rng(3)
    fine = np.zeros((1000, 1200))
    fine[104:896, 104:1096] = rng.uniform(40, 220, (80, 100)).repeat(10, axis=0).repeat(10, axis=1)[:792, :992]
    grey = fine.reshape(100, 10, 120, 10).mean(axis=(1, 3))  # a box-filtered tenth: 10.4 lines of border
    found = trim(grey)
    assert found.box == (11, 11, 109, 89)
    assert found.edges == pytest.approx((10.4, 10.4, 109.6, 89.6), abs=0.1)


@pytest.mark.parametrize(
    ("label", "edit"),
    [
        ("frame and mat", lambda i: ImageOps.expand(ImageOps.expand(i, 24, (255, 255, 255)), 16, (0, 0, 0))),
        ("white border", lambda i: border(i, 0.10, (255, 255, 255))),
        ("black border", lambda i: border(i, 0.05, (0, 0, 0))),
    ],
)
def test_a_bordered_copy_is_described_as_its_source_down_to_its_details(label: str, edit) -> None:  # type: ignore[no-untyped-def]
    """The borders are cut off the picture itself at the edges found, a mat inside a frame too, and the thumbnail
    is made again: the copy's whole view is its source's, details included (were 0.66–0.95 with the border
    blurred into the first line, or a third of a pixel off)."""
    source = photo("coffee.png").copy()  # photo() is cached: never edit it in place
    source.thumbnail((320, 320))
    original, copy = fingerprint(source), fingerprint(jpeg(edit(source)))
    assert similarity(original.dct, copy.dct) >= 0.995, label
    assert detail_similarities(original.look.details[:1], copy.look.details[:1])[0, 0] >= DETAIL, label


def test_a_bordered_copy_is_cut_where_the_picture_itself_starts_not_where_the_thumbnail_blurs() -> None:
    """A picture framed by a light line one pixel wide: on the thumbnail that line reads as part border, and a
    white-bordered copy lost a pixel of the picture on each side (details 0.984); cut where the picture itself
    steps from the border, the copy is its source again, details included."""
    source = photo("coffee.png").copy()  # photo() is cached: never edit it in place
    source.thumbnail((300, 300))
    w, h = source.size
    for box in ((0, 0, 1, h), (w - 1, 0, w, h), (0, 0, w, 1), (0, h - 1, w, h)):
        source.paste((225, 225, 225), box)
    framed = border(source, 0.10, (255, 255, 255))
    dx, dy = (framed.width - w) // 2, (framed.height - h) // 2
    found = Trim((0, 0, 1, 1), (0.0, 0.0, 1.0, 1.0), 10.0, (255.0,) * 4)  # a white border on every side
    assert refined(framed, (dx + 1, dy + 1, dx + w - 1, dy + h - 1), 2, found) == (dx, dy, dx + w, dy + h)
    original, copy = fingerprint(source), fingerprint(jpeg(framed))
    assert detail_similarities(original.look.details[:1], copy.look.details[:1])[0, 0] >= 0.995


def test_a_border_is_cut_where_an_objects_faint_tip_touches_it_and_the_other_side_as_wide() -> None:
    """An object on white whose faint tip (13 grey levels off white, four pixels a line) touches the picture's
    right edge: a white-bordered copy's thumbnail blurs the tip into the border and puts the border's edge four
    pixels into the picture. Cut where the tip is, in the picture itself, and as wide on the left (borders come in
    pairs), where the thumbnail's edge fell in the picture's own white margin, the copy is the source's frame
    again."""
    source = Image.new("RGB", (200, 200), (255, 255, 255))
    source.paste((128, 128, 128), (10, 10, 170, 150))  # the object, on a white margin of its own
    source.paste((242, 242, 242), (170, 100, 200, 104))  # its faint tip, touching the right edge
    framed = border(source, 0.10, (255, 255, 255))  # 20 white pixels on every side
    found = Trim((0, 0, 1, 1), (0.0, 0.0, 1.0, 1.0), 10.0, (255.0,) * 4)  # a white border on every side
    assert refined(framed, (24, 20, 216, 220), 2, found) == (20, 20, 220, 220)


def test_jpeg_ringing_before_a_sharp_edge_does_not_hide_where_the_border_ends() -> None:
    """A screenshot whose dark title bar meets a white-bordered copy's border: JPEG rings a few grey levels in the
    border's last lines before that edge, and the ringing hid the edge (the faint-tip rule then took a ringing
    line for the picture's start and cut both sides wider). Within half a JPEG block of a straight edge, and
    within three tolerances, ringing is border."""
    screen = Image.new("RGB", (320, 200), (236, 236, 236))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, 319, 15), fill=(40, 44, 52))  # a dark title bar, with light marks along its top
    for x in range(2, 316, 4):
        draw.line((x, 0, x, 7), fill=(220, 220, 220))
    draw.rectangle((20, 40, 300, 180), fill=(200, 210, 230))
    out = io.BytesIO()
    border(screen, 0.10, (255, 255, 255)).save(out, "JPEG", quality=90)  # 20 white lines above the bar
    framed = decoded(out.getvalue())
    ringed = np.abs(np.asarray(framed.convert("L"), dtype=np.float64)[13:20, 32:352] - 255)
    assert 2 * 3.0 < ringed.max() <= 3 * 3.0  # the border's lines before the bar are not white
    found = Trim((0, 0, 1, 1), (0.0, 0.0, 1.0, 1.0), 3.0, (255.0,) * 4)  # a white border on every side
    assert refined(framed, (32, 20, 352, 220), 3, found) == (32, 20, 352, 220)


def test_a_border_that_runs_on_into_the_pictures_own_edge_is_trimmed_as_wide_as_the_other_side() -> None:
    """A picture whose top rows are as black as the border a copy adds: that border is trimmed as wide at the
    top as at the bottom, and the picture's black top stays, as it does in the source (a uniform strip on one
    side only is part of the picture)."""
    source = photo("astronaut.png").copy()  # photo() is cached: never edit it in place
    source.thumbnail((320, 320))
    source.paste((0, 0, 0), (0, 0, source.width, 40))  # a black sky
    original, copy = fingerprint(source), fingerprint(jpeg(border(source, 0.05, (0, 0, 0))))
    assert trim(np.asarray(source.convert("L"), dtype=np.float64)).box[1] == 0
    assert similarity(original.dct, copy.dct) >= 0.995
    assert detail_similarities(original.look.details[:1], copy.look.details[:1])[0, 0] >= DETAIL


@pytest.mark.parametrize("category", sorted(negatives.CATEGORIES))
def test_the_guard_or_the_colour_check_keeps_every_low_information_category_apart(category: str) -> None:
    pictures = negatives.generate(per_category=10, categories=(category,))
    prints = [sig(p.id, fingerprint(decoded(p.data))) for p in pictures]
    for i, a in enumerate(prints):
        for b in prints[i + 1 :]:
            passes = GUARD.perceptual_ok(a.look) and GUARD.perceptual_ok(b.look) and GUARD.colours_agree(a.look, b.look)
            assert not passes or near(a, b) < DEFAULT_PERCEPTUAL_THRESHOLD, (a.id, b.id, near(a, b))


def test_solid_colours_are_below_the_guard_and_photos_above_it() -> None:
    solid = fingerprint(Image.new("RGB", (300, 200), (200, 30, 30)))
    assert not GUARD.perceptual_ok(solid.look)
    assert not GUARD.semantic_ok(solid.look)
    for name in PHOTOS:
        look = fingerprint(photo(name)).look
        assert (look.information < GUARD.information) == (name in UNDER_THE_INFORMATION_FLOOR), name
        assert GUARD.perceptual_ok(look), name
        assert GUARD.semantic_ok(look), name


def _two_tone(shape: str) -> Image.Image:
    """A red design on white, two colours only: a centred cross, a centred disc or three horizontal stripes."""
    out = Image.new("RGB", (600, 400), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    red = (190, 0, 40)
    if shape == "cross":
        draw.rectangle((250, 0, 350, 400), fill=red)
        draw.rectangle((0, 150, 600, 250), fill=red)
    elif shape == "disc":
        draw.ellipse((180, 80, 420, 320), fill=red)
    else:
        draw.rectangle((0, 133, 600, 266), fill=red)
    return out


def test_a_symmetric_two_tone_design_is_decided_and_a_striped_one_still_abstains() -> None:
    """A cross leaves most of its DCT coefficients at 0 (their median distance is 0) and one light/dark split
    explains 97 % of it, so the guard used to abstain; its few coefficients far from the median
    (:func:`worker.fingerprint.information`) now let it through, its copies are found and a disc of the same
    colours is not one of them. Three stripes put their coefficients in one column: that still abstains."""
    cross, disc, stripes = (_two_tone(shape) for shape in ("cross", "disc", "stripes"))
    look = fingerprint(cross).look
    assert look.split > 0.95  # the old floor
    assert GUARD.perceptual_ok(look)
    original = sig("cross", fingerprint(cross))
    for copy in (jpeg(cross.resize((300, 200), Image.Resampling.LANCZOS)), ImageOps.grayscale(cross)):
        found = sig("copy", fingerprint(copy))
        assert GUARD.perceptual_ok(found.look)
        assert near(found, original) >= DEFAULT_PERCEPTUAL_THRESHOLD
    other = sig("disc", fingerprint(disc))
    assert GUARD.perceptual_ok(other.look)
    assert (perceptual_similarity(other, original, DETAIL, DETAIL_REGION) or -1.0) < DEFAULT_PERCEPTUAL_THRESHOLD
    assert not GUARD.perceptual_ok(fingerprint(stripes).look)


def _grain(seed: int) -> Image.Image:
    """Fine grain all over and nothing else (snow, a starry sky): its low frequencies are nearly flat."""
    noise = np.random.default_rng(seed).uniform(90, 170, (400, 600)).astype(np.uint8)
    return Image.fromarray(noise).convert("RGB").filter(ImageFilter.GaussianBlur(1))


def test_a_fine_texture_is_decided_by_its_details_though_its_information_is_low() -> None:
    """Grain has almost nothing in its low frequencies (information far under the floor), which used to make the
    guard abstain on snow textures and grainy dark wallpapers; its texture lets it through, its copies are found
    and another grain of the same kind is not one of them."""
    grain = fingerprint(_grain(1))
    assert grain.look.information < GUARD.information
    assert grain.look.texture >= GUARD.textured
    assert GUARD.perceptual_ok(grain.look)
    original = sig("grain", grain)
    for copy in (jpeg(_grain(1)), jpeg(_grain(1).resize((300, 200), Image.Resampling.LANCZOS))):
        found = sig("copy", fingerprint(copy))
        assert GUARD.perceptual_ok(found.look)
        assert near(found, original) >= DEFAULT_PERCEPTUAL_THRESHOLD
    other = sig("other", fingerprint(_grain(2)))
    assert (perceptual_similarity(other, original, DETAIL, DETAIL_REGION) or -1.0) < DEFAULT_PERCEPTUAL_THRESHOLD


def test_a_faint_pictures_details_are_held_to_what_re_encoding_noise_leaves_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A WebP copy of a dark, faint picture moves its details further than ``DETAIL`` allows, because the noise
    is as loud as they are; their amplitude, kept for quiet views, lowers that pair's floor to what the noise
    leaves. Another faint picture with the same glows and other blotches stays apart: its details are not the
    same structure at all."""
    picture = decoded(faint_wallpaper(1))
    source, copy = fingerprint(picture), fingerprint(decoded(webp(picture)))
    assert GUARD.perceptual_ok(source.look)
    assert np.all(amplitudes(source.look.details[:1]) < 1.5)  # quiet: its amplitude is known
    assert detail_similarities(source.look.details[:1], copy.look.details[:1])[0, 0] < DETAIL
    assert near(sig("copy", copy), sig("source", source)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    another = fingerprint(decoded(faint_wallpaper(2)))
    other = sig("other", another)
    assert similarity(another.dct, source.dct) >= 0.99  # the same glows: only the details tell them apart
    assert (perceptual_similarity(other, sig("source", source), DETAIL, DETAIL_REGION) or -1.0) < 0.5

    monkeypatch.setattr("worker.views.DETAIL_NOISE", 0.0)  # every pair held to DETAIL, as before
    assert (perceptual_similarity(sig("copy", copy), sig("source", source), DETAIL, DETAIL_REGION) or -1.0) < 0.9


def _faint_stripes() -> Image.Image:
    """Stripes four grey levels apart (a wallpaper of faint lines) and a white disc: darkened by a fifth, the
    stripes are three levels apart, which the texture counts as flat at the picture's own exposure."""
    grey = np.full((384, 512), 100, dtype=np.uint8)
    for x in range(0, 512, 16):
        grey[:, x : x + 8] = 104
    out = Image.fromarray(grey).convert("RGB")
    ImageDraw.Draw(out).ellipse((380, 20, 490, 130), fill=(255, 255, 255))
    return out


def test_a_copy_darkened_by_a_fifth_is_guarded_as_its_source_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard measures a picture as if its brightest level were white (at most 25 % brighter): a copy darkened
    by 20 % carries the information its source did and keeps its faint stripes as texture. At its own exposure
    its texture fell under the floor and the guard abstained on a copy of a picture it decides."""
    source = fingerprint(_faint_stripes()).look
    darker = fingerprint(brightened(_faint_stripes(), 0.8)).look
    assert GUARD.perceptual_ok(source)
    assert GUARD.perceptual_ok(darker)
    assert darker.information == pytest.approx(source.information, rel=0.02)
    assert darker.texture >= source.texture

    monkeypatch.setattr("worker.fingerprint.exposure", lambda whole: 1.0)
    own = fingerprint(brightened(_faint_stripes(), 0.8)).look
    assert own.texture < GUARD.texture
    assert not GUARD.perceptual_ok(own)


def test_information_is_the_median_distance_or_a_share_of_the_peak() -> None:
    flat = np.zeros((8, 8))
    assert information(flat) == 0.0
    sparse = np.zeros((8, 8))
    sparse[0, 0], sparse[::2, ::2].flat[1:] = 500.0, 40.0  # DC, and 15 of the 63 others far from their median 0
    assert information(sparse) == pytest.approx(0.04 * 40.0)
    dense = np.arange(64.0).reshape(8, 8)  # every coefficient its own distance from the median
    assert information(dense) == pytest.approx(16.0)


def test_colour_tells_colourways_apart_but_not_a_grayscale_or_brightened_copy() -> None:
    source = photo("coffee.png")
    look = fingerprint(source).look
    hue_shifted = Image.merge("RGB", source.split()[::-1])  # red ↔ blue: same layout, other colours
    assert not GUARD.colours_agree(look, fingerprint(hue_shifted).look)
    assert GUARD.colours_agree(look, fingerprint(jpeg(grayscale(source))).look)
    assert chroma(fingerprint(grayscale(source)).look.colour) < GUARD.grey
    assert colour_distance(look.colour, fingerprint(jpeg(brightened(source))).look.colour) < GUARD.colour


def _product(body: tuple[int, int, int]) -> Image.Image:
    """A bottle in ``body`` with a grey label, on white with a soft shadow: one product's catalogue picture."""
    canvas = Image.new("RGB", (480, 360), (255, 255, 255))
    shadow = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(shadow).ellipse((150, 300, 330, 324), fill=90)
    canvas.paste((200, 200, 200), mask=shadow.filter(ImageFilter.GaussianBlur(8)))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((215, 40, 265, 110), fill=body)
    draw.rounded_rectangle((160, 90, 320, 312), radius=36, fill=body)
    draw.rectangle((160, 180, 320, 230), fill=(120, 120, 120))
    return canvas.filter(ImageFilter.GaussianBlur(1.0))


def test_a_product_in_another_shade_or_a_pastel_is_another_picture_but_its_brightened_copy_is_not() -> None:
    """The dark green, light green and pastel green bottle share a layout and a chromaticity (the colour layouts
    agree: the light one is the dark one brightened 2.2 times, on the object alone); their colourful parts' level
    and saturation tell them apart (:func:`worker.guard.shades_apart`), as a product's colourways are different
    products. Each one's copies brightened or darkened by up to 40 % keep their shade within reach."""
    dark, light, pastel = _product((20, 90, 30)), _product((44, 198, 66)), _product((190, 235, 196))
    prints = {name: fingerprint(jpeg(p)).look for name, p in (("dark", dark), ("light", light), ("pastel", pastel))}
    assert colour_distance(prints["dark"].colour, prints["light"].colour) < GUARD.colour
    for a, b in (("dark", "light"), ("light", "pastel"), ("dark", "pastel")):
        assert not GUARD.colours_agree(prints[a], prints[b]), (a, b)
    _, vividness, colourful = shades_apart(prints["light"].colour, prints["pastel"].colour)
    assert vividness > GUARD.vividness
    assert colourful >= GUARD.colourful
    for name, picture in (("dark", dark), ("light", light), ("pastel", pastel)):
        for factor in (0.6, 0.8, 1.2, 1.4):
            copy = fingerprint(jpeg(ImageEnhance.Brightness(picture).enhance(factor))).look
            assert GUARD.colours_agree(prints[name], copy), (
                name,
                factor,
                shades_apart(prints[name].colour, copy.colour),
            )
    assert NO_GUARD.colours_agree(prints["dark"], prints["light"])


def test_a_layout_stored_before_the_shade_is_compared_by_its_cells_alone() -> None:
    """A colour layout stored by the release before the shade has its 48 bytes only: the shade is not compared,
    the cells are, as they were then."""
    dark, light = fingerprint(jpeg(_product((20, 90, 30)))).look, fingerprint(jpeg(_product((44, 198, 66)))).look
    stored = replace(dark, colour=dark.colour[:LAYOUT_BYTES])
    assert shades_apart(stored.colour, light.colour) == (0.0, 0.0, 0.0)
    assert GUARD.colours_agree(stored, light)
    blue = replace(light, colour=bytes([128, 127, 0] * 16))
    assert not GUARD.colours_agree(stored, blue)


def test_a_near_black_pictures_copy_agrees_in_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """A game screen of dark green specks on black (mean level 2): JPEG's subsampled chroma and its rounding of a
    level or two turn the copy's colour layout half grey (0.65 apart, where 0.10 is asked). A chroma distance counts
    by how bright the brighter cell is (:data:`worker.guard.CHROMA_LEVEL`), so the copy is found; counted in full,
    its colours disagree."""
    rng = np.random.default_rng(0)
    screen = np.zeros((240, 320, 3), np.uint8)
    screen[rng.random((240, 320)) < 0.3] = (1, 16, 1)
    for x, y, w, h in rng.integers((0, 0, 2, 2), (300, 220, 20, 10), (30, 4)):
        screen[y : y + h, x : x + w] = (2, 48, 2)
    source = Image.fromarray(screen)
    original, copy = fingerprint(source), fingerprint(jpeg(source))
    assert GUARD.perceptual_ok(original.look)
    assert GUARD.colours_agree(original.look, copy.look)
    assert near(sig("c", copy), sig("o", original)) >= DEFAULT_PERCEPTUAL_THRESHOLD
    monkeypatch.setattr("worker.guard.CHROMA_LEVEL", 1e-9)  # every chroma distance counted in full
    assert not GUARD.colours_agree(original.look, copy.look)
