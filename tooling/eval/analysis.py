"""From measured signals to the numbers the report shows: per stage, per hash, per preprocessing, combined.

    >>> results = analyse(data, measured, semantic_threshold=None, weights="random")
    >>> results["chosen"]["perceptual"]
    0.95

Everything here is plain data (dicts, lists, floats) so that it can be written as JSON and rendered as Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tooling.eval import combined
from tooling.eval.dataset import Dataset, Role
from tooling.eval.measure import Measured
from tooling.eval.metrics import (
    CONFIRM_FROM,
    NEGATIVE_GROUPS,
    Scores,
    at,
    best_range,
    cosine_scorer,
    exact_scorer,
    halfway,
    hamming_scorer,
    look_scorer,
    pair_index,
    pr_curve,
    score_pairs,
)
from tooling.eval.transforms import REGRESSION, TRANSFORMS
from worker.decision import DESCRIPTOR_DIM, DETAIL, DETAIL_REGION, GUARD, Guard, Thresholds
from worker.hashing import HASHERS, PERCEPTUAL

#: Transform families whose recall is a hash's "crop robustness".
CROP_FAMILIES = ("zoom", "crop")
COSINE_GRID = [round(0.5 + 0.0025 * i, 4) for i in range(201)]
COSINE_STEP = 0.005
#: The perceptual threshold sweep: descriptor similarities from 0.80 to 1.00.
SWEEP = [round(0.80 + 0.01 * i, 2) for i in range(21)]


def moderate_keys() -> list[str]:
    """The regression set: moderate strength, geometry kept (see :data:`~tooling.eval.transforms.REGRESSION`)."""
    return [t.key for t in REGRESSION]


def stage_summary(scores: Scores, threshold: float, grid: list[float]) -> dict[str, Any]:
    """Recall / precision / F1 per transform at ``threshold``, the best-F1 threshold range, FP rates."""
    chosen = at(scores, threshold)
    per: dict[str, Any] = {}
    for key in scores.positive:
        f1, low, high = best_range(scores, key, grid)
        per[key] = {
            "recall": chosen.recall[key],
            "precision": chosen.precision[key],
            "f1": chosen.f1[key],
            "best_f1": f1,
            "best_threshold": [low, high],
        }
    f1, low, high = best_range(scores, None, grid)
    return {
        "threshold": threshold,
        "transforms": per,
        "overall": {"recall": chosen.overall_recall, "precision": chosen.overall_precision},
        "best_overall": {"f1": f1, "threshold": [low, high]},
        "false_positives": chosen.false_positives,
        "negatives": {g: len(scores.negatives(g)) for g in NEGATIVE_GROUPS},
        "fp_rate": chosen.fp_rate,
        "closest_negative": float(np.max(scores.all_negative)),
        "closest_negative_by_group": {
            g: float(np.max(scores.negatives(g), initial=-math.inf)) for g in NEGATIVE_GROUPS
        },
        "low_information": {
            category: {
                "pairs": len(values),
                "false_positives": int(np.count_nonzero(values >= threshold)),
                "closest": float(np.max(values, initial=-math.inf)),
            }
            for category, values in sorted(scores.low_info.items())
        },
    }


def hamming_threshold(scores: Scores) -> int:
    """The rule (:func:`~tooling.eval.metrics.halfway`) as a whole number of bits."""
    return min(PERCEPTUAL.bits // 2, math.floor(-halfway(scores, 0.0)))


def cosine_threshold(scores: Scores) -> float:
    """The rule for cosines, rounded up to a multiple of :data:`COSINE_STEP`."""
    return min(1.0, math.ceil(halfway(scores, 1.0) / COSINE_STEP - 1e-9) * COSINE_STEP)


def mean_recall(recall: dict[str, float], keys: list[str]) -> float:
    """Mean recall over the ``keys`` this run measured (NaN when none)."""
    present = [recall[k] for k in keys if k in recall]
    return float(np.mean(present)) if present else math.nan


def perceptual_sweep(scores: Scores) -> list[dict[str, Any]]:
    rows = []
    for threshold in SWEEP:
        a = at(scores, threshold)
        rows.append(
            {
                "threshold": threshold,
                "recall": a.overall_recall,
                "moderate_recall": mean_recall(a.recall, moderate_keys()),
                "precision": a.overall_precision,
                "fp": a.false_positives,
            }
        )
    return rows


def compare_hashes(pairs: Any, measured: Measured) -> dict[str, Any]:
    crop_keys = [t.key for t in TRANSFORMS if t.name in CROP_FAMILIES]
    out: dict[str, Any] = {}
    for name, hashes in measured.hashes.items():
        bits = HASHERS[name].bits
        scores = score_pairs(pairs, hamming_scorer(hashes, bits))
        t = hamming_threshold(scores)
        closest = -int(np.max(scores.all_negative))
        rule, widest = at(scores, -t), at(scores, -(closest - 1))
        out[name] = {
            "bits": bits,
            "description": HASHERS[name].description,
            "closest_negative": closest,
            "threshold": t,
            "crop_recall": mean_recall(rule.recall, crop_keys),
            "moderate_recall": mean_recall(rule.recall, moderate_keys()),
            "overall_recall": rule.overall_recall,
            "zero_fp_threshold": closest - 1,
            "zero_fp_crop_recall": mean_recall(widest.recall, crop_keys),
            "zero_fp_overall_recall": widest.overall_recall,
            "recall": rule.recall,
        }
    return out


def compare_inputs(pairs: Any, measured: Measured) -> dict[str, Any]:
    """How alike the model's inputs are (grey correlation) under each preprocessing: per transform, the mean
    correlation of a variant with its source and the share above the closest negative pair."""
    out: dict[str, Any] = {}
    for name, rows in measured.inputs.items():
        scores = score_pairs(pairs, cosine_scorer(rows))
        closest = float(np.max(scores.all_negative))
        out[name] = {
            "closest_negative": closest,
            "mean": {k: float(np.mean(v)) for k, v in scores.positive.items()},
            "above_closest_negative": {k: float(np.mean(v > closest)) for k, v in scores.positive.items()},
        }
    return out


def analyse(
    data: Dataset,
    measured: Measured,
    *,
    semantic_threshold: float | None,
    perceptual_threshold: float | None = None,
    stages: Sequence[str] = ("exact", "perceptual", "semantic"),
    guard: Guard = GUARD,
    detail: float | None = DETAIL,
    detail_region: float | None = DETAIL_REGION,
) -> dict[str, Any]:
    """All results. ``perceptual_threshold`` None: the rule chooses it; ``semantic_threshold``: for ``combined``.
    A stage left out of ``stages`` is left out of the combined decision too."""
    if "exact" not in stages:  # no two items share bytes: decide() finds no exact match
        measured = replace(measured, sha256=[f"item {i}" for i in range(len(measured.sha256))])
    pairs = pair_index(data)
    scored: dict[str, Scores] = {}
    grids: dict[str, list[float]] = {}
    if "exact" in stages:
        scored["exact"] = score_pairs(pairs, exact_scorer(measured.sha256))
        grids["exact"] = [1.0]
    if "perceptual" in stages:
        every = combined.signals(data, measured, None)
        scored["perceptual"] = score_pairs(pairs, look_scorer(every, guard, detail, detail_region))
        grids["perceptual"] = [t for t in COSINE_GRID if t >= CONFIRM_FROM]
    for setup, rows in measured.embeddings.items():
        scored[f"semantic {setup}"] = score_pairs(pairs, cosine_scorer(rows))
        grids[f"semantic {setup}"] = COSINE_GRID

    chosen: dict[str, Any] = {"exact": "same SHA-256", "detail": detail, "detail_region": detail_region}
    thresholds: dict[str, float] = {"exact": 1.0}
    if "perceptual" in scored:
        rule = cosine_threshold(scored["perceptual"])
        chosen["perceptual_rule"] = rule
        chosen["perceptual"] = rule if perceptual_threshold is None else perceptual_threshold
        thresholds["perceptual"] = float(chosen["perceptual"])
    for name, scores in scored.items():
        if name.startswith("semantic"):
            suggested = cosine_threshold(scores)
            chosen[f"{name} rule"] = suggested
            thresholds[name] = semantic_threshold if semantic_threshold is not None else suggested
    chosen["semantic"] = semantic_threshold

    first_semantic = next(iter(measured.embeddings), None)
    decided = combined.run(
        data,
        measured,
        Thresholds(
            perceptual=chosen.get("perceptual"),
            semantic=semantic_threshold,
            guard=guard,
            detail=detail,
            detail_region=detail_region,
        ),
        embedding=first_semantic,
    )
    curves = {}
    for name, scores in scored.items():
        precision, recall, fp_rate = pr_curve(scores)
        curves[name] = {"precision": precision.tolist(), "recall": recall.tolist(), "fp_rate": fp_rate.tolist()}

    return {
        "sweep": perceptual_sweep(scored["perceptual"]) if "perceptual" in scored else [],
        "counts": {
            "sources": len(data.sources),
            "variants": len(data.of_role(Role.VARIANT)),
            "transforms": len({item.transform for item in data.items if item.role is Role.VARIANT}),
            "hard_pairs": len(data.of_role(Role.HARD_B)),
            "low_information": len(data.of_role(Role.LOW_INFO)),
            "skipped": list(data.skipped),
        },
        "hasher": {"name": PERCEPTUAL.name, "bits": PERCEPTUAL.bits, "dim": DESCRIPTOR_DIM},
        "chosen": chosen,
        "stages": {name: stage_summary(s, thresholds[name], grids[name]) for name, s in scored.items()},
        "combined": {
            "perceptual": decided.thresholds.perceptual,
            "semantic": decided.thresholds.semantic,
            "embedding": first_semantic,
            "recall": decided.recall,
            "wrong_original": decided.wrong,
            "by_kind": decided.by_kind,
            "false_positives": decided.false_positives,
            "decisions": decided.decisions,
        },
        "hashes": compare_hashes(pairs, measured),
        "inputs": compare_inputs(pairs, measured),
        "curves": curves,
        "moderate": moderate_keys(),
    }
