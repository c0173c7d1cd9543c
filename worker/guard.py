"""The guards: floors below which a picture carries too little information for a stage, and the colour check
(:func:`colour_distance`). Part of the decision (:mod:`worker.decision`, which re-exports these names).

    >>> GUARD.perceptual_ok(None), NO_GUARD.colours_agree(None, None)
    (True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from worker.decision import Look


@dataclass(frozen=True, slots=True)
class Guard:
    """Floors below which a picture carries too little information for a stage (chosen with
    ``python -m tooling.eval``, docs/quality.md).

    * perceptual: ``information`` (median distance of the 64 DCT coefficients from their median, grey levels)
      at least ``information``, ``texture`` (share of pixels that are not flat) at least ``texture`` (both
      measured at the picture's best exposure, :func:`worker.fingerprint.exposure`), and a
      light/dark split explaining at most ``split`` of the variance. A picture of fine texture all over (snow,
      a starry sky, a dark wallpaper's grain: ``texture`` at least ``textured``, no two-tone pattern, its split
      at most ``textured_split``) is decided whatever its information: its low frequencies are nearly flat,
      but its details (the 32×32 fine structure every match is confirmed with) tell it from any other;
    * semantic: ``texture`` at least ``semantic_texture`` and the split at most ``semantic_split`` (blank and
      two-tone pictures sit close together in embedding space too);
    * both: colour layouts at most ``colour`` apart (:func:`colour_distance`) unless one picture is grey (its
      mean chroma below ``grey``); and, unless one is greyer still (below ``grey_shade``: a grayscale copy) or
      neither has much colour (less than ``colourful``), shades that a brightness edit could give
      (:func:`shades_apart`: the colourful parts' levels at most ``tone`` apart, their saturations at most
      ``vividness``, both as log ratios).
    """

    # Perceptual floors chosen on the corpus's tuning fold (python -m tooling.eval.tail --fold tune): the lowest
    # texture that leaves no negative pair of its 19M (low-information ones included) at any threshold from 0.80;
    # the details' confirmation is what lets it sit this low (was 0.13). With it and the information floor, no
    # split floor is needed any more: none of those pairs matches without one (0.95 abstained on 6 of the
    # fold's 100 icons, two-tone flags and signs with plenty to tell apart), so 1.0 keeps every split.
    information: float = 0.3
    texture: float = 0.05
    split: float = 1.0
    # Chosen on the tuning fold with the tail: any texture floor from 0.18 to 0.30 decides the same pictures
    # (snow textures, a grainy dark wallpaper, a hatched symbol: 0.30–0.97) and leaves every negative pair
    # apart at any threshold from 0.85 (lower, a generated transparent overlay at 0.18 matches another); 0.25
    # is the middle. Two-tone noise (split 0.97 and more: one pattern in two colourways) matches its twin, so
    # the split stays at most 0.9, above the 0.82 of those decided.
    textured: float = 0.25
    textured_split: float = 0.9
    semantic_texture: float = 0.13
    semantic_split: float = 0.97
    colour: float = 0.10
    grey: float = 0.03
    # The shades (:func:`shades_apart`), chosen on the corpus's tuning fold against the generated product
    # colourways (tooling.eval.negatives, docs/quality.md), each the middle of the gap between the fold's copies
    # and the colourways only it tells apart. A grayscale copy's layout reads 0.0055 (the chroma bytes'
    # rounding of 0), a pale pastel colourway's 0.025 or more. Every copy whose shade lies far from its source's
    # has little colour (a game's sprites on black, a page's thin coloured bar: at most 0.061 colourful,
    # :func:`worker.colours.shade`), every colourway 0.136 or more. Darkening by 40 % moves the colourful
    # parts' level up to 0.489 apart (a log ratio; 0.51 is the factor itself), a colourway 0.55 and more. No
    # copy moves the saturation more than 1.084 (brightened by 40 %, most of its colour clipped white), a pastel
    # beside its saturated sister 1.29.
    grey_shade: float = 0.01
    colourful: float = 0.09
    tone: float = 0.52
    vividness: float = 1.19

    def perceptual_ok(self, look: Look | None) -> bool:
        if look is None:
            return True
        textured = look.texture >= self.textured and look.split <= self.textured_split
        informed = look.information >= self.information or textured
        return informed and look.texture >= self.texture and look.split <= self.split

    def semantic_ok(self, look: Look | None) -> bool:
        return look is None or (look.texture >= self.semantic_texture and look.split <= self.semantic_split)

    def colours_agree(self, a: Look | None, b: Look | None) -> bool:
        if a is None or b is None or not a.colour or not b.colour:
            return True
        least = min(chroma(a.colour), chroma(b.colour))
        if least < self.grey_shade:
            return True
        if least >= self.grey and colour_distance(a.colour, b.colour) > self.colour:
            return False
        tone, vividness, colourful = shades_apart(a.colour, b.colour)
        return colourful < self.colourful or (tone <= self.tone and vividness <= self.vividness)


GUARD = Guard()
#: No guard and no colour check: every pair is compared (the harness's "unguarded" column).
NO_GUARD = Guard(
    information=-1.0,
    texture=-1.0,
    split=2.0,
    semantic_texture=-1.0,
    semantic_split=2.0,
    colour=9.0,
    colourful=99.0,
)

#: A colour layout's length: :data:`CELLS` cells of (level, two chromaticities), then the colourful parts'
#: shade (:func:`shades_apart`), three bytes. A layout stored by a release before the shade has the cells only.
CELLS = 16
LAYOUT_BYTES = 3 * CELLS
SHADE_BYTES = 3
#: Chroma that the shade's saturation and colour bytes read as 255 (the chromaticities' largest magnitude is 1.12).
VIVID_FULL = 1.2
#: Added to a level before its logarithm, and to a saturation: near-black parts and near-grey ones do not count
#: as infinitely far apart.
TONE_OFFSET = 8.0
VIVID_OFFSET = 0.02


@lru_cache(maxsize=8192)
def chroma(colour: bytes) -> float:
    """Weighted mean chroma of a colour layout (0 for a grey picture)."""
    _, weights, c = _cells(colour)
    return float((np.hypot(c[:, 0], c[:, 1]) * weights).sum() / max(float(weights.sum()), 1e-9))


def shades_apart(a: bytes, b: bytes) -> tuple[float, float, float]:
    """How far apart two pictures' colourful parts are in level and in saturation (each as the absolute log ratio),
    and how colourful the more colourful picture is (:func:`worker.colours.shade`); (0, 0, 0) when either
    layout has no shade (stored by an earlier release). A brightness edit moves the level by its factor (0.51 for
    −40 %) and leaves the saturation but where it clips; the same product in another shade of its colour (the same
    chromaticity: the colour layouts agree) moves the level further, a pastel colourway the saturation. The shade
    is measured where the colour is, so the white around a product, which a brightness edit leaves white, does
    not dilute it.

        >>> cells = bytes([200, 200, 150] * 16)
        >>> [round(x, 2) for x in shades_apart(cells + bytes([60, 120, 40]), cells + bytes([130, 120, 40]))]
        [0.71, 0.0, 0.19]
        >>> shades_apart(cells + bytes([60, 120, 40]), cells)
        (0.0, 0.0, 0.0)
    """
    if len(a) < LAYOUT_BYTES + SHADE_BYTES or len(b) < LAYOUT_BYTES + SHADE_BYTES:
        return 0.0, 0.0, 0.0
    (ta, va, ca), (tb, vb, cb) = a[LAYOUT_BYTES : LAYOUT_BYTES + 3], b[LAYOUT_BYTES : LAYOUT_BYTES + 3]
    full = VIVID_FULL / 255.0
    tone = abs(math.log((ta + TONE_OFFSET) / (tb + TONE_OFFSET)))
    vividness = abs(math.log((va * full + VIVID_OFFSET) / (vb * full + VIVID_OFFSET)))
    return tone, vividness, max(ca, cb) * full


def colour_distance(a: bytes, b: bytes) -> float:
    """How far apart two colour layouts are, whatever their arrangement (so a mirrored or cropped copy agrees
    with its source): for each cell of one, the chroma distance to the nearest cell of the other, weighted by
    brightness and averaged; the larger of the two directions. Brightness changes leave chroma alone. Two cells'
    chroma distance counts by how bright the brighter of them is (:func:`_trust`): two near-black cells cannot be
    told apart by their chroma.

        >>> red, blue = bytes([200, 255, 191] * 16), bytes([200, 127, 0] * 16)
        >>> colour_distance(red, red), round(colour_distance(red, blue), 2)
        (0.0, 1.79)
        >>> dark_red, dark_blue = bytes([4, 255, 191] * 16), bytes([4, 127, 0] * 16)
        >>> round(colour_distance(dark_red, dark_blue), 2)
        0.11
    """
    la, wa, ca = _cells(a)
    lb, wb, cb = _cells(b)
    d = np.hypot(ca[:, None, 0] - cb[None, :, 0], ca[:, None, 1] - cb[None, :, 1])
    d *= _trust(np.maximum(la[:, None], lb[None, :]))
    ab = (d.min(axis=1) * wa).sum() / max(float(wa.sum()), 1e-9)
    ba = (d.min(axis=0) * wb).sum() / max(float(wb.sum()), 1e-9)
    return float(max(ab, ba))


#: Mean grey level at which a chroma distance counts half (:func:`_trust`). Chosen on the corpus's tuning fold:
#: the lowest power of two at which every lossy copy's colours agree with its source's (two near-black game
#: screenshots, mean level 5, whose every re-encode, ±20 % brightness and ½ downscale moved their chroma 0.11–0.42
#: apart; 8 left one of them apart).
CHROMA_LEVEL = 16.0


def _trust(level: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """How much a chroma distance counts in cells of mean grey ``level``: level² / (level² + :data:`CHROMA_LEVEL`²).
    In a near-black cell a level or two of a re-encode's rounding, or JPEG's subsampled chroma, is a large share of
    R+G+B. Taken at the brighter of two cells, so that a darkened copy's cells are trusted as its source's are.

        >>> _trust(np.array([4.0, 16.0, 64.0, 128.0])).round(2).tolist()
        [0.06, 0.5, 0.94, 0.98]
    """
    squared = level * level
    out: npt.NDArray[np.float64] = squared / (squared + CHROMA_LEVEL * CHROMA_LEVEL)
    return out


@lru_cache(maxsize=8192)  # a batch compares each layout with many others; the arrays are never modified
def _cells(colour: bytes) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(mean grey level, weight, chroma) per cell: the weight from the cell's brightness (dark cells have
    unreliable chroma)."""
    raw = np.frombuffer(colour[:LAYOUT_BYTES], dtype=np.uint8).reshape(-1, 3).astype(np.float64)
    return raw[:, 0], np.clip(raw[:, 0] / 64.0, 0.0, 1.0), (raw[:, 1:] - 127.5) / 127.5
