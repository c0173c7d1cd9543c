"""Details compared up to a fraction of a pixel (:mod:`worker.alignment`), and where the decision uses it: the
whole views of a pair whose trims were measured a little apart (a white-bordered copy of line art)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tooling.eval.transforms import border
from worker import imaging
from worker.alignment import ALIGN_FROM, EDGE, aligned_similarity
from worker.decision import DETAIL, DETAIL_REGION, Signals, detail_similarities, details_agree, perceptual_similarity
from worker.fingerprint import details, fingerprint
from worker.thumbnails import thumbs32


def views_of(picture: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """The details of ``boxes`` of a grey picture, as the fingerprint makes them."""
    return details(thumbs32(picture, boxes))


def smooth_noise(seed: int, side: int = 128, coarse: int = 8) -> np.ndarray:
    """A grey picture with structure at every scale the details see (down to ``coarse`` pixels)."""
    rng = np.random.default_rng(seed)
    cells = Image.fromarray(rng.integers(0, 256, (side // coarse, side // coarse), dtype=np.uint8))
    return np.asarray(cells.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)


def test_views_a_fraction_of_a_pixel_apart_agree_once_aligned_and_unrelated_ones_do_not() -> None:
    picture = smooth_noise(1)
    exact, off = views_of(picture, [(10.0, 10.0, 118.0, 118.0), (11.2, 10.6, 116.5, 118.9)])
    plain = float(detail_similarities(exact[None], off[None])[0, 0])
    assert plain < 0.97  # a third of a 32-pixel view's pixel off, and stretched 2 %
    assert aligned_similarity(exact, off) >= 0.98
    assert aligned_similarity(exact, off) == aligned_similarity(off, exact)  # exact: the larger of the same two
    assert aligned_similarity(exact, exact) >= 0.9999
    (other,) = views_of(smooth_noise(2), [(10.0, 10.0, 118.0, 118.0)])
    assert aligned_similarity(exact, other) < 0.5


def test_a_trim_measured_between_the_grids_steps_is_aligned_past_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid's steps are 1 % of scale and a quarter of a pixel; a copy's trim that falls between them (here a
    sixth of a 32-pixel view's pixel longer) is refined to within half a step, which leaves less than half of
    what the grid alone leaves of the cosine's shortfall."""
    picture = smooth_noise(1, coarse=5)
    exact, off = views_of(picture, [(10.0, 10.0, 118.0, 118.0), (10.0, 10.0, 118.0, 118.54)])
    refined = aligned_similarity(exact, off)
    monkeypatch.setattr("worker.alignment.FINE_ROUNDS", 0)
    grid = aligned_similarity(exact, off)
    assert grid < refined
    assert 1.0 - refined < 0.5 * (1.0 - grid)


def test_the_edges_a_warp_can_only_repeat_are_left_out_of_the_aligned_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trimmed copy's outermost pixels hold its border's JPEG ringing and the last fraction of a pixel of its
    trim, and a warp reaches past the view's edge there, where it can only repeat it: the aligned comparison
    leaves :data:`~worker.alignment.EDGE` pixels of each side out (on the tuning fold, white-bordered textures
    and screenshots differ from their sources there and nowhere else)."""
    picture = smooth_noise(4)
    exact, off = views_of(picture, [(10.0, 10.0, 118.0, 118.0), (10.6, 10.3, 117.8, 118.4)])
    disturbed = off.reshape(32, 32).astype(np.int16)
    outer = np.ones((32, 32), dtype=bool)
    outer[EDGE:-EDGE, EDGE:-EDGE] = False
    disturbed[outer] = np.where(np.indices((32, 32)).sum(axis=0)[outer] % 2, 60, -60)  # ringing along the edge
    ringing = disturbed.astype(np.int8).ravel()
    assert aligned_similarity(exact, ringing) >= DETAIL
    monkeypatch.setattr("worker.alignment.INSIDE", slice(0, 32))
    assert aligned_similarity(exact, ringing) < DETAIL


def test_only_whole_views_close_enough_are_aligned() -> None:
    """Region pairs keep their plain details (their floor is lower already), and details below ALIGN_FROM are not
    warped at all."""
    picture = smooth_noise(3)
    exact, off = views_of(picture, [(10.0, 10.0, 118.0, 118.0), (11.2, 10.6, 116.5, 118.9)])
    plain = float(detail_similarities(exact[None], off[None])[0, 0])
    assert ALIGN_FROM <= plain < DETAIL
    assert details_agree(0, 0, plain, DETAIL, exact, off)
    assert not details_agree(0, 3, plain, DETAIL, exact, off)
    assert not details_agree(2, 2, plain, DETAIL, exact, off)
    assert not details_agree(0, 0, ALIGN_FROM - 0.01, DETAIL, exact, off)


def line_art(seed: int, side: int = 500) -> Image.Image:
    """A card of thin lines and a word on white, its margins uneven: clip art's kind of fine structure."""
    rng = random.Random(seed)
    out = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    x0, y0 = rng.randint(20, 90), rng.randint(20, 90)
    x1, y1 = side - rng.randint(20, 90), side - rng.randint(20, 90)
    draw.rounded_rectangle((x0, y0, x1, y1), radius=40, outline=(0, 0, 0), width=3, fill=(250, 220, 120))
    for _ in range(12):
        start = (rng.randint(x0 + 10, x1 - 10), rng.randint(y0 + 10, y1 - 10))
        end = (rng.randint(x0 + 10, x1 - 10), rng.randint(y0 + 10, y1 - 10))
        draw.line([start, end], fill=(rng.randint(0, 120),) * 3, width=rng.choice([1, 2, 3]))
    draw.text((x0 + 30, y0 + 30), "icon", fill=(0, 0, 0), font=ImageFont.load_default(size=40))
    return out


def test_a_white_bordered_copy_of_line_art_is_confirmed_by_its_aligned_details() -> None:
    """A 10 % white passe-partout: the copy trims back to the card, but a fraction of a pixel off, and its whole
    views' details agree at 0.97 where 0.98 is asked. Aligned, they agree; the copy is found either way round."""
    source = line_art(8)
    out = io.BytesIO()
    border(source, 0.10, (255, 255, 255)).save(out, "JPEG", quality=90)
    bordered = imaging.decode(out.getvalue(), max_pixels=10**8, min_side=imaging.DECODE_MIN_SIDE)
    original, copy = fingerprint(source), fingerprint(bordered)
    plain = float(detail_similarities(original.look.details[:1], copy.look.details[:1])[0, 0])
    assert plain < DETAIL
    assert aligned_similarity(original.look.details[0], copy.look.details[0]) >= DETAIL
    a, b = Signals("o", 1, "o", original.dct, look=original.look), Signals("c", 2, "c", copy.dct, look=copy.look)
    found = perceptual_similarity(b, a, DETAIL, DETAIL_REGION)
    assert found is not None
    assert found >= 0.99
    assert perceptual_similarity(a, b, DETAIL, DETAIL_REGION) == found
