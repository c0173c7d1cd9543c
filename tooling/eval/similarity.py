"""The perceptual stage's rule for many pairs at once: the harness scores millions of pairs.

:func:`worker.decision.perceptual_similarity` compares two pictures' descriptors view by view and confirms each
view pair with their details. Here the same rule runs on whole arrays: first the descriptors of every pair
(:func:`pairs` for two index arrays, :func:`matrix` for every pair of two sets), then the details' confirmation
(:func:`confirm`), pair by pair but only for the pairs at or above a floor, which are few::

    >>> views = stack(signals)
    >>> found = confirm(signals, a, b, pairs(views, a, b), detail=DETAIL, floor=0.8)

A pair below ``floor`` keeps its unconfirmed value; a confirmed pair gets exactly what the decision measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from worker.decision import (
    BRIGHT,
    REGIONS_AGREEING,
    UNTRIMMED_PAIRS,
    VIEW_COUNT,
    Signals,
    perceptual_similarity,
    views_of,
)

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
CHUNK = 100_000  # pairs per einsum: ~100 MB of views gathered at once


def stack(signals: Sequence[Signals]) -> Floats:
    """items × views × 64: whole, mirror, regions, brightened, untrimmed and its mirror (every item needs its full
    look)."""
    rows = [views_of(item) for item in signals]
    if any(r is None or len(r) != VIEW_COUNT for r in rows):
        raise ValueError(f"every item needs a descriptor and a full look ({VIEW_COUNT} views)")
    out: Floats = np.stack([r for r in rows if r is not None]).astype(np.float32)
    return out


def pairs(views: Floats, a: Ints, b: Ints) -> Floats:
    """The unconfirmed similarity of each pair ``(a[n], b[n])``: whole ↔ every view either way round, untrimmed (or
    its mirror) ↔ untrimmed, or the :data:`~worker.decision.REGIONS_AGREEING`-th best same-region pair."""
    assert REGIONS_AGREEING == 2, "the second-best region is taken below"
    out = np.empty(len(a), dtype=np.float32)
    for start in range(0, len(a), CHUNK):
        va, vb = views[a[start : start + CHUNK]], views[b[start : start + CHUNK]]
        view = np.maximum(
            np.einsum("nd,nkd->nk", va[:, 0], vb).max(axis=1), np.einsum("nkd,nd->nk", va, vb[:, 0]).max(axis=1)
        )
        for k, m in UNTRIMMED_PAIRS:
            np.maximum(view, np.einsum("nd,nd->n", va[:, k], vb[:, m]), out=view)
        regions = np.einsum("nkd,nkd->nk", va[:, 2:BRIGHT], vb[:, 2:BRIGHT])
        second = np.partition(regions, -2, axis=1)[:, -2]
        out[start : start + CHUNK] = np.maximum(view, second)
    return out


def matrix(first: Floats, second: Floats) -> Floats:
    """The unconfirmed similarity of every item of ``first`` with every item of ``second`` (len × len)."""
    whole_a, whole_b = first[:, 0], second[:, 0]
    view = np.full((len(first), len(second)), -1.0, dtype=np.float32)
    for k in range(first.shape[1]):  # the whole of one against every view of the other, either way round
        np.maximum(view, whole_a @ second[:, k].T, out=view)
        np.maximum(view, first[:, k] @ whole_b.T, out=view)
    for k, m in UNTRIMMED_PAIRS:
        np.maximum(view, first[:, k] @ second[:, m].T, out=view)
    best = np.full_like(view, -1.0)
    runner_up = np.full_like(view, -1.0)
    for k in range(2, BRIGHT):  # region k against region k
        same = first[:, k] @ second[:, k].T
        np.maximum(runner_up, np.minimum(best, same), out=runner_up)
        np.maximum(best, same, out=best)
    out: Floats = np.maximum(view, runner_up)
    return out


def confirm(
    signals: Sequence[Signals],
    a: Ints,
    b: Ints,
    values: Floats,
    *,
    detail: float | None,
    floor: float,
    detail_region: float | None = None,
) -> Floats:
    """``values`` with every pair at or above ``floor`` replaced by the decision's confirmed similarity (-1 when
    no view pair's details agree at ``detail``, ``detail_region`` for a whole picture against a region)."""
    out = values.copy()
    for n in np.flatnonzero(values >= floor).tolist():
        found = perceptual_similarity(signals[int(a[n])], signals[int(b[n])], detail, detail_region)
        out[n] = -1.0 if found is None else found
    return out
