"""What the near-duplicate stages know of a picture besides its bytes: hashes, information and colour.

One pass over a small thumbnail of the decoded picture gives a :class:`Fingerprint`:

* ``phash`` — the 64-bit DCT perceptual hash (imagehash's pHash algorithm) of the picture **after trimming
  uniform borders** (letterbox bars, passe-partout, a white page margin), so a bordered copy hashes like its
  source;
* ``mirror`` — the same hash of the left-right mirrored picture, searched too, so a mirrored copy is found;
* ``regions`` — hashes of sub-rectangles (:data:`REGIONS`: central ones at a few scales and strips without one
  side), stored and searched against whole pictures in both directions, so a zoomed or cropped copy matches its
  source whichever arrives first;
* ``information`` — how much structure stands behind the hash bits: the median distance, in grey levels, of the
  64 DCT coefficients from the median that sets the bits. A solid colour, a smooth gradient, a near-blank scan
  or a light/dark split has almost every coefficient at the median, so its bits are noise that any other such
  picture shares. Below :data:`worker.decision.Guard` floors a stage abstains;
* ``detail`` — mean luminance gradient of a 64×64 thumbnail (PDQ's quality measure, in grey levels per pixel):
  the semantic stage's guard, since blank and near-uniform pictures also sit close together in embedding space;
* ``colour`` — a coarse layout of chromaticity (a 4×4 grid of brightness-free opponent colours), which tells two
  colourways of one layout apart while a grayscale copy, which has none, still matches (see
  :func:`worker.decision.colour_distance`).

    >>> fp = fingerprint(picture)
    >>> hamming(fp.phash, fingerprint(ImageOps.mirror(picture)).mirror) <= 4
    True

Everything is computed from one thumbnail of at most :data:`WORK_SIDE` pixels, so the cost stays about that of
a single pHash of the decoded picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from PIL import Image

from worker.decision import REGION_COUNT, Look

HASH_SIDE = 8  # 8×8 low frequencies → 64 bits
DCT_SIDE = 32  # of a 32×32 grey thumbnail (imagehash's pHash: hash_size 8, highfreq_factor 4)
WORK_SIDE = 128  # the working thumbnail's longer side
DETAIL_SIDE = 64
COLOUR_GRID = 4

#: Sub-rectangles hashed besides the whole picture, as (left, top, right, bottom) fractions of the trimmed
#: picture, in the order of :attr:`Fingerprint.regions`.
REGIONS: tuple[tuple[float, float, float, float], ...] = (
    (0.05, 0.05, 0.95, 0.95),  # centre 90 %: a 10 % zoom, a 5 % crop all round
    (0.10, 0.10, 0.90, 0.90),  # centre 80 %: a 20 % zoom, a 10 % crop all round
    (0.15, 0.0, 1.0, 1.0),  # without the left 15 %
    (0.0, 0.0, 0.85, 1.0),  # without the right 15 %
    (0.0, 0.15, 1.0, 1.0),  # without the top 15 %
    (0.0, 0.0, 1.0, 0.85),  # without the bottom 15 %
)

assert len(REGIONS) == REGION_COUNT

#: A row or column is part of a uniform border when its grey levels stay within this of the border's colour.
BORDER_TOLERANCE = 10.0
#: Most of a side that trimming may remove (more is the picture, not a border).
BORDER_MAX = 0.35

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The whole picture's hash and the rest of what the near-duplicate stages compare (:class:`Look`)."""

    phash: int
    look: Look

    @property
    def mirror(self) -> int:
        return self.look.variants[0]

    @property
    def regions(self) -> tuple[int, ...]:
        return self.look.variants[1:]


def fingerprint(image: Image.Image) -> Fingerprint:
    """The fingerprint of an RGB picture (any size; the decoder's reduced-size JPEGs are fine)."""
    work = _thumbnail(image.convert("RGB"), WORK_SIDE)
    rgb = np.asarray(work, dtype=np.float64)
    grey = np.asarray(work.convert("L"), dtype=np.float64)
    left, top, right, bottom = trim_box(grey)
    trimmed = work.crop((left, top, right, bottom))
    grey_image = trimmed.convert("L")
    w, h = grey_image.size

    whole = _thumb32(grey_image, (0, 0, w, h))
    coefficients = _low_dct(whole)
    phash = _bits(coefficients)
    mirror = _bits(_low_dct(whole[:, ::-1]))
    regions = tuple(_bits(_low_dct(_thumb32(grey_image, _box(r, w, h)))) for r in REGIONS)
    information = float(np.median(np.abs(coefficients - np.median(coefficients))))
    split = _split_share(whole)
    detail = _detail(grey_image)
    colour = _colour_layout(rgb[top:bottom, left:right])
    return Fingerprint(phash, Look((mirror, *regions), information, split, detail, colour))


def trim_box(grey: Floats) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of ``grey`` without its uniform borders (each side on its own, at most
    :data:`BORDER_MAX` of it). A picture that is all border (a solid colour) is kept whole."""
    h, w = grey.shape
    top = _flat_run(grey, h)
    bottom = h - _flat_run(grey[::-1], h)
    left = _flat_run(grey.T, w)
    right = w - _flat_run(grey.T[::-1], w)
    inner = grey[top:bottom, left:right]
    if right - left < 8 or bottom - top < 8 or float(np.ptp(inner)) <= 2 * BORDER_TOLERANCE:
        return (0, 0, w, h)  # nothing but border: a uniform picture
    return (left, top, right, bottom)


def _flat_run(lines: Floats, length: int) -> int:
    """How many leading lines (rows of ``lines``) are uniform and of the first line's colour."""
    limit = int(length * BORDER_MAX)
    colour = float(np.median(lines[0]))
    n = 0
    while n < limit and float(np.max(np.abs(lines[n] - colour))) <= BORDER_TOLERANCE:
        n += 1
    return n if n >= 2 else 0  # a single edge line is JPEG ringing or a frame, not a border


def _thumbnail(image: Image.Image, side: int) -> Image.Image:
    w, h = image.size
    scale = side / max(w, h)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _box(region: tuple[float, float, float, float], w: int, h: int) -> tuple[float, float, float, float]:
    left, top, right, bottom = region
    return (left * w, top * h, right * w, bottom * h)


def _thumb32(grey: Image.Image, box: tuple[float, float, float, float]) -> Floats:
    small = grey.resize((DCT_SIDE, DCT_SIDE), Image.Resampling.LANCZOS, box=box)
    return np.asarray(small, dtype=np.float64)


@cache
def _dct_matrix(n: int) -> Floats:
    """Orthonormal DCT-II: coefficients in grey levels (a positive multiple of scipy's unnormalised one)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    matrix: Floats = m
    return matrix


def _low_dct(pixels: Floats) -> Floats:
    d = _dct_matrix(pixels.shape[0])
    full: Floats = d @ pixels @ d.T
    low: Floats = full[:HASH_SIDE, :HASH_SIDE] / DCT_SIDE * 2  # per-pixel amplitude units
    return low


def _bits(low: Floats) -> int:
    """imagehash's pHash bits: each coefficient above the median, row-major, most significant first."""
    flags = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(flags).tobytes(), "big")


def _detail(grey: Image.Image) -> float:
    small = np.asarray(grey.resize((DETAIL_SIDE, DETAIL_SIDE), Image.Resampling.BILINEAR), dtype=np.float64)
    return float((np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean()) / 2)


def _colour_layout(rgb: Floats) -> bytes:
    """Per cell of a COLOUR_GRID² grid: weight (brightness, 0–255) and two opponent chromaticities
    ((R−G)/S, (R+G−2B)/(2S), S = R+G+B), each mapped from [−1, 1] to a byte."""
    h, w, _ = rgb.shape
    cells = []
    ys = np.linspace(0, h, COLOUR_GRID + 1).astype(int)
    xs = np.linspace(0, w, COLOUR_GRID + 1).astype(int)
    for r in range(COLOUR_GRID):
        for c in range(COLOUR_GRID):
            block = rgb[ys[r] : max(ys[r + 1], ys[r] + 1), xs[c] : max(xs[c + 1], xs[c] + 1)]
            red, green, blue = (float(v) for v in block.reshape(-1, 3).mean(axis=0))
            total = red + green + blue
            c1 = (red - green) / total if total > 0 else 0.0
            c2 = (red + green - 2 * blue) / (2 * total) if total > 0 else 0.0
            cells += [round(total / 3), _byte(c1), _byte(c2)]
    return bytes(cells)


def _byte(value: float) -> int:
    return max(0, min(255, round((value + 1) * 127.5)))


def _split_share(pixels: Floats) -> float:
    """Otsu's effectiveness: the share of the thumbnail's variance that one light/dark split explains."""
    values = np.sort(pixels.ravel())
    total = float(values.var())
    if total <= 1e-9:
        return 1.0
    n = values.size
    prefix = np.cumsum(values)
    k = np.arange(1, n)
    mean_low = prefix[:-1] / k
    mean_high = (prefix[-1] - prefix[:-1]) / (n - k)
    between = (k / n) * (1 - k / n) * (mean_low - mean_high) ** 2
    return float(between.max() / total)
