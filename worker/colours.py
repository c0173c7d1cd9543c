"""What a picture's colours are, for the colour check (:mod:`worker.guard`): a coarse layout of chromaticity
(:func:`colour_layout`) and the colourful parts' shade (:func:`shade`), both from one box-averaged view of the
trimmed picture. Part of the fingerprint (:func:`worker.fingerprint.fingerprint`), stored as the ``colour``
field.

    >>> grid = Image.new("RGB", (SHADE_GRID, SHADE_GRID), (0, 100, 0))
    >>> len(colour_layout(grid.reduce(SHADE_GRID // COLOUR_GRID)) + shade(grid))
    51
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from worker.guard import TONE_OFFSET, VIVID_FULL

Floats = npt.NDArray[np.float64]

COLOUR_GRID = 4
#: The colourful parts' shade (:func:`shade`) is measured on a picture box-averaged to this many cells a side,
#: whose blocks are also the colour layout's cells: fine enough that an object's colour is not averaged with the
#: white around it (at 4 × 4 a product two times darker moved 1.6 times), and a resize no dearer than the 4 × 4
#: one (64 cost 0.06 ms more a picture and told the tuning fold's colourways apart no better).
SHADE_GRID = 32


def colour_layout(cells: Image.Image) -> bytes:
    """Per cell of a COLOUR_GRID² grid (``cells``, box-averaged): weight (brightness, 0–255) and two opponent
    chromaticities ((R−G)/S, (R+G−2B)/(2S), S = R+G+B), each mapped from [−1, 1] to a byte."""
    red, green, blue = (np.asarray(cells, dtype=np.float64)[..., i].ravel() for i in range(3))
    total = red + green + blue
    safe = np.where(total > 0, total, 1.0)
    c1 = np.where(total > 0, (red - green) / safe, 0.0)
    c2 = np.where(total > 0, (red + green - 2 * blue) / (2 * safe), 0.0)
    out = np.stack([np.round(total / 3), _bytes(c1), _bytes(c2)], axis=1)
    return bytes(out.astype(np.uint8).ravel().tolist())


def shade(cells: Image.Image) -> bytes:
    """Three bytes: the level of the picture's colourful parts (the geometric mean of ``level + 8`` over its
    pixels, each weighted by its chroma, less 8), their saturation (the chroma-weighted mean chroma) and how
    colourful the picture is (its mean chroma), both of the last with :data:`worker.guard.VIVID_FULL` as 255.
    Chroma counts less in dark pixels, as in the colour layout's weight. All 0 for a grey picture. A brightness
    edit multiplies the level and leaves the saturation; a colourway of one hue moves the level further, a pastel
    one the saturation (:func:`worker.guard.shades_apart`).

        >>> list(shade(Image.new("RGB", (8, 8), (0, 100, 0)))), list(shade(Image.new("RGB", (8, 8), (0, 200, 0))))
        ([33, 238, 124], [67, 238, 238])
        >>> list(shade(Image.new("RGB", (8, 8), (90, 90, 90))))
        [0, 0, 0]
    """
    rgb = np.asarray(cells, dtype=np.float32).reshape(-1, 3)
    red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    total = red + green + blue
    inverse = np.reciprocal(np.maximum(total, 1.0))
    c1, c2 = (red - green) * inverse, (red + green - 2 * blue) * (0.5 * inverse)
    chroma = np.sqrt(c1 * c1 + c2 * c2)
    weight = chroma * np.minimum(total * (1 / 192.0), 1.0)  # full from a mean level of 64 up
    mass = float(weight.sum())
    if mass <= 1e-9:
        return bytes(3)
    tone = math.exp(float(weight @ np.log(total * (1 / 3.0) + TONE_OFFSET)) / mass) - TONE_OFFSET
    vividness = float(weight @ chroma) / mass
    colourful = mass / len(weight)
    return bytes(
        [min(255, max(0, round(tone))), *(min(255, round(x / VIVID_FULL * 255)) for x in (vividness, colourful))]
    )


def _bytes(values: Floats) -> Floats:
    return np.clip(np.round((values + 1) * 127.5), 0, 255)
