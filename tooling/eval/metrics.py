"""Pair scores per stage, and precision / recall / F1 / threshold sweeps over them.

Every stage scores a pair of items by a *similarity*: exact 1 or 0 (same SHA-256), perceptual the descriptors'
cosine (:func:`worker.decision.perceptual_similarity`), a plain hash ``-hamming`` (so that "≥ -t" is "at most t
bits apart"), semantic the cosine. A pair matches at threshold τ when its
similarity is ≥ τ. Positive pairs are (variant, its source); negative pairs are (variant, every other source),
(source, source) and the hard pairs::

    >>> pairs = pair_index(data)
    >>> scores = score_pairs(pairs, hamming_scorer(measured.hashes["phash"], bits=64))
    >>> at(scores, -10).recall["crop 5%"]
    0.67

The default-threshold rule (:func:`halfway`): halfway between a perfect match and the closest negative pair,
so copies and unrelated pictures keep the same margin on both sides as the index grows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tooling.eval import similarity
from tooling.eval.dataset import Dataset, Role
from worker.decision import Guard, Signals

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
#: Similarity of pairs: (rows a, rows b) → one score per pair.
Scorer = Callable[[Ints, Ints], Floats]

#: Negative groups: a variant vs every other source, sources among themselves, two far-apart crops of one image,
#: the low-information pictures (each against the others and every source) and the product colourways (the same,
#: :data:`COLOURWAYS`: one product in several colours, which a brightness edit must not be taken for).
NEGATIVE_GROUPS = ("other sources", "hard", "low-information", "colourways")
#: Low-information pairs of pictures from two different categories.
ACROSS = "across categories"
#: The negatives' category whose pairs (with each other and with every source) are the ``colourways`` group.
COLOURWAYS = "product colourway"


@dataclass(frozen=True, slots=True)
class PairIndex:
    """Item indices of every pair. ``positive[t]`` / ``negative_of[t]``: the pairs of transform ``t``."""

    positive: dict[str, tuple[Ints, Ints]]
    negative_of: dict[str, tuple[Ints, Ints]]
    originals: tuple[Ints, Ints]
    hard: tuple[Ints, Ints]
    low_info: dict[str, tuple[Ints, Ints]]  # category (or ACROSS) → its pairs


@dataclass(frozen=True, slots=True)
class Scores:
    positive: dict[str, Floats]  # transform → similarity of each variant to its source
    negative_of: dict[str, Floats]  # transform → similarity of each variant to every other source
    originals: Floats
    hard: Floats
    low_info: dict[str, Floats]  # category (or ACROSS) → similarity of its pairs

    @property
    def all_positive(self) -> Floats:
        return np.concatenate(list(self.positive.values()))

    def negatives(self, group: str) -> Floats:
        if group == "hard":
            return self.hard
        if group == "low-information":
            return np.concatenate([np.zeros(0), *(v for k, v in self.low_info.items() if k != COLOURWAYS)])
        if group == "colourways":
            return self.low_info.get(COLOURWAYS, np.zeros(0))
        return np.concatenate([*self.negative_of.values(), self.originals])

    @property
    def all_negative(self) -> Floats:
        return np.concatenate([self.negatives(g) for g in NEGATIVE_GROUPS])


@dataclass(frozen=True, slots=True)
class AtThreshold:
    threshold: float
    recall: dict[str, float]  # per transform
    precision: dict[str, float]  # per transform: its positives vs its variants' negatives
    f1: dict[str, float]
    fp_rate: dict[str, float]  # per negative group
    false_positives: dict[str, int]
    overall_recall: float
    overall_precision: float


def pair_index(data: Dataset) -> PairIndex:
    originals = np.array(data.of_role(Role.ORIGINAL), dtype=np.int64)
    source_row = {data.items[i].source: i for i in originals}
    positive: dict[str, tuple[list[int], list[int]]] = {}
    negative: dict[str, tuple[list[int], list[int]]] = {}
    for i in data.of_role(Role.VARIANT):
        item = data.items[i]
        key = str(item.transform)
        pa, pb = positive.setdefault(key, ([], []))
        pa.append(i)
        pb.append(source_row[item.source])
        na, nb = negative.setdefault(key, ([], []))
        others = [int(o) for o in originals if o != source_row[item.source]]
        na.extend([i] * len(others))
        nb.extend(others)
    ia, ib = np.triu_indices(len(originals), k=1)
    low: dict[str, tuple[list[int], list[int]]] = {}
    weak = data.of_role(Role.LOW_INFO)
    for n, i in enumerate(weak):
        category = str(data.items[i].category)
        la, lb = low.setdefault(category, ([], []))
        la.extend([i] * len(originals))
        lb.extend(int(o) for o in originals)
        for j in weak[n + 1 :]:
            group = category if data.items[j].category == category else ACROSS
            ga, gb = low.setdefault(group, ([], []))
            ga.append(i)
            gb.append(j)
    return PairIndex(
        {k: (np.array(a), np.array(b)) for k, (a, b) in positive.items()},
        {k: (np.array(a), np.array(b)) for k, (a, b) in negative.items()},
        (originals[ia], originals[ib]),
        (np.array(data.of_role(Role.HARD_A), dtype=np.int64), np.array(data.of_role(Role.HARD_B), dtype=np.int64)),
        {k: (np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)) for k, (a, b) in low.items()},
    )


def score_pairs(pairs: PairIndex, scorer: Scorer) -> Scores:
    return Scores(
        {k: scorer(*ab) for k, ab in pairs.positive.items()},
        {k: scorer(*ab) for k, ab in pairs.negative_of.items()},
        scorer(*pairs.originals),
        scorer(*pairs.hard) if len(pairs.hard[0]) else np.zeros(0),
        {k: scorer(*ab) for k, ab in pairs.low_info.items()},
    )


# Scorers --------------------------------------------------------------------------------------------------------


def exact_scorer(sha256: Sequence[str]) -> Scorer:
    codes = np.unique(np.array(sha256), return_inverse=True)[1]
    return lambda a, b: (codes[a] == codes[b]).astype(np.float64)


def bit_matrix(hashes: Sequence[int], bits: int) -> npt.NDArray[np.uint8]:
    raw = b"".join(h.to_bytes(bits // 8, "big") for h in hashes)
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).reshape(len(hashes), bits)


def hamming_scorer(hashes: Sequence[int], bits: int) -> Scorer:
    """Similarity ``-hamming`` of two hashes of ``bits`` bits."""
    matrix = bit_matrix(hashes, bits)
    return lambda a, b: -np.count_nonzero(matrix[a] != matrix[b], axis=1).astype(np.float64)


#: The similarity of a pair a near-duplicate stage abstains for: below every threshold of the sweeps.
ABSTAINED = -1000.0


#: Pairs at or above this descriptor similarity are confirmed by details and colour-checked pair by pair, as the
#: decision does; below it they keep their unconfirmed similarity (which can only overstate a negative's), so
#: thresholds are swept from here up.
CONFIRM_FROM = 0.8


def look_scorer(
    signals: Sequence[Signals], guard: Guard, detail: float | None, detail_region: float | None = None
) -> Scorer:
    """The worker's perceptual stage: :func:`~worker.decision.perceptual_similarity` over the allowed pairs of
    descriptors (whole, mirror, regions, brightened) whose details agree at ``detail`` (``detail_region`` for a
    whole picture against a region; from
    :data:`CONFIRM_FROM` up), or :data:`ABSTAINED` when the guard keeps either picture out or (from
    :data:`CONFIRM_FROM` up) their colours disagree."""
    views = similarity.stack(signals)
    passes = np.array([guard.perceptual_ok(item.look) for item in signals])

    def score(a: Ints, b: Ints) -> Floats:
        found = similarity.confirm(
            signals, a, b, similarity.pairs(views, a, b), detail=detail, floor=CONFIRM_FROM, detail_region=detail_region
        ).astype(np.float64)
        found[~(passes[a] & passes[b])] = ABSTAINED
        for n in np.flatnonzero(found >= CONFIRM_FROM).tolist():
            if not guard.colours_agree(signals[int(a[n])].look, signals[int(b[n])].look):
                found[n] = ABSTAINED
        return found

    return score


def cosine_scorer(rows: npt.NDArray[np.float32]) -> Scorer:
    """Dot products of unit rows (cosines)."""
    return lambda a, b: np.einsum("ij,ij->i", rows[a], rows[b]).astype(np.float64)


# Metrics --------------------------------------------------------------------------------------------------------


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def at(scores: Scores, threshold: float) -> AtThreshold:
    """Everything measured at one threshold (a pair matches when its similarity ≥ ``threshold``)."""
    recall, precision, f1 = {}, {}, {}
    for key, pos in scores.positive.items():
        tp = int(np.count_nonzero(pos >= threshold))
        fp = int(np.count_nonzero(scores.negative_of[key] >= threshold))
        recall[key] = tp / len(pos)
        precision[key] = tp / (tp + fp) if tp + fp else 1.0
        f1[key] = _f1(precision[key], recall[key])
    fps = {g: int(np.count_nonzero(scores.negatives(g) >= threshold)) for g in NEGATIVE_GROUPS}
    rates = {g: fps[g] / len(scores.negatives(g)) if len(scores.negatives(g)) else 0.0 for g in NEGATIVE_GROUPS}
    allpos = scores.all_positive
    tp = int(np.count_nonzero(allpos >= threshold))
    fp = sum(fps.values())
    return AtThreshold(
        threshold, recall, precision, f1, rates, fps, tp / len(allpos), tp / (tp + fp) if tp + fp else 1.0
    )


def best_range(scores: Scores, key: str | None, thresholds: Iterable[float]) -> tuple[float, float, float]:
    """``(F1, lowest, highest)`` threshold reaching the best F1 for one transform (``None``: all pairs)."""
    pos = scores.all_positive if key is None else scores.positive[key]
    neg = scores.all_negative if key is None else scores.negative_of[key]
    best: tuple[float, float, float] = (-1.0, math.nan, math.nan)
    for t in thresholds:
        tp = int(np.count_nonzero(pos >= t))
        fp = int(np.count_nonzero(neg >= t))
        f1 = _f1(tp / (tp + fp) if tp + fp else 1.0, tp / len(pos))
        if f1 > best[0] + 1e-12:
            best = (f1, t, t)
        elif abs(f1 - best[0]) <= 1e-12:
            best = (best[0], min(best[1], t), max(best[2], t))
    return best


def sweep(scores: Scores, thresholds: Iterable[float]) -> list[AtThreshold]:
    return [at(scores, t) for t in thresholds]


def pr_curve(scores: Scores) -> tuple[Floats, Floats, Floats]:
    """Precision, recall and false-positive rate over every distinct threshold, from strict to lax."""
    pos, neg = scores.all_positive, scores.all_negative
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tp = np.searchsorted(np.sort(pos), thresholds, side="left")
    fp = np.searchsorted(np.sort(neg), thresholds, side="left")
    tp, fp = len(pos) - tp, len(neg) - fp
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return precision, tp / len(pos), fp / max(len(neg), 1)


#: The negative groups the default-threshold rule (:func:`halfway`) looks at. Not the colourways: to the
#: descriptors a product and its colourway are one picture (0.9999), only the colour check parts them, and no
#: threshold below 1 would; counted, they took the rule to 1.0 on every folder of pictures.
RULE_GROUPS = ("other sources", "hard", "low-information")


def halfway(scores: Scores, perfect: float) -> float:
    """The default-threshold rule: halfway between a perfect match and the closest negative pair (of
    :data:`RULE_GROUPS`)."""
    closest = float(np.max(np.concatenate([scores.negatives(g) for g in RULE_GROUPS])))
    return closest + (perfect - closest) / 2
