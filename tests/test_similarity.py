"""The harness's vectorised perceptual rule (tooling.eval.similarity) is the decision's, pair for pair."""

from __future__ import annotations

import numpy as np

from tooling.eval import similarity
from worker.decision import (
    DESCRIPTOR_DIM,
    DETAIL,
    DETAIL_SIZE,
    VIEW_COUNT,
    Details,
    Look,
    Signals,
    Vector,
    perceptual_similarity,
)


def random_signals(n: int, seed: int) -> list[Signals]:
    rng = np.random.default_rng(seed)
    out: list[tuple[int, Vector, Details]] = []
    for i in range(n):
        views = rng.standard_normal((VIEW_COUNT, DESCRIPTOR_DIM)).astype(np.float32)
        if i % 3:  # every third is a near copy of the one before: some pairs far up the scale
            views = out[-1][1] + 0.05 * views
        views /= np.linalg.norm(views, axis=1, keepdims=True)
        details = rng.integers(-127, 128, (VIEW_COUNT, DETAIL_SIZE)).astype(np.int8)
        out.append((i, views, details))
    return [Signals(f"s{i}", i, f"sha{i}", v[0], look=Look(v[1:], details=d)) for i, v, d in out]


def test_pairs_and_matrix_give_what_the_decision_measures() -> None:
    items = random_signals(24, seed=3)
    views = similarity.stack(items)
    a, b = np.triu_indices(len(items), k=1)
    expected = np.array([perceptual_similarity(items[i], items[j]) for i, j in zip(a, b, strict=True)])
    assert np.allclose(similarity.pairs(views, a, b), expected, atol=1e-5)
    full = similarity.matrix(views, views)
    assert np.allclose(full[a, b], expected, atol=1e-5)
    assert np.allclose(full, full.T, atol=1e-5)
    assert expected.max() > 0.9  # the near copies are there


def test_confirm_replaces_only_the_pairs_at_or_above_the_floor() -> None:
    items = random_signals(12, seed=5)  # random details: no near copy's details agree
    views = similarity.stack(items)
    a, b = np.triu_indices(len(items), k=1)
    unconfirmed = similarity.pairs(views, a, b)
    confirmed = similarity.confirm(items, a, b, unconfirmed, detail=DETAIL, floor=0.9)
    high = unconfirmed >= 0.9
    assert high.any()
    assert np.all(confirmed[high] == -1.0)
    assert np.array_equal(confirmed[~high], unconfirmed[~high])
    same = similarity.confirm(items, a, b, unconfirmed, detail=None, floor=0.9)
    assert np.allclose(same, unconfirmed, atol=1e-5)
