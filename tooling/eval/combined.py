"""The combined decision: :func:`worker.decision.decide` itself, on what the index would return.

The originals play the index. For each item the Milvus search is stood in for by *exact* distances to every
original (a search with ``DEDUP_SEARCH_LIMIT`` ≥ the number of originals returns the same rows), merged into one
:class:`~worker.decision.Neighbour` per original as :meth:`worker.index.Index.neighbours` does; ``decide`` makes
every decision. Originals are decided as one batch in upload order (``decide`` compares a batch with itself), so
two originals that match each other show up as a false positive too.

    >>> result = run(data, measured, Thresholds(perceptual=0.95, semantic=None), embedding="crop/avg")
    >>> result.recall["crop 5%"], result.false_positives
    (0.71, {'other sources': 0, 'hard': 0})
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tooling.eval import similarity
from tooling.eval.dataset import Dataset, Role
from tooling.eval.measure import Measured
from tooling.eval.metrics import COLOURWAYS, NEGATIVE_GROUPS
from tooling.eval.similarity import Floats
from worker.decision import Neighbour, Signals, Status, Thresholds, decide, perceptual_similarity


@dataclass(frozen=True, slots=True)
class Combined:
    thresholds: Thresholds
    recall: dict[str, float]  # transform → share of variants that are duplicates of their own source
    wrong: dict[str, int]  # transform → variants pointed at another source (false positives)
    by_kind: dict[str, dict[str, int]]  # transform → {exact|perceptual|semantic: count}
    false_positives: dict[str, int]  # negative group → decisions that called an unrelated image a duplicate
    decisions: dict[str, int]  # negative group → decisions made

    def fp_rate(self, group: str) -> float:
        return self.false_positives[group] / self.decisions[group] if self.decisions[group] else 0.0


def signals(data: Dataset, measured: Measured, embedding: str | None) -> list[Signals]:
    """Each item's :class:`Signals`; ``event_time_ms`` is its position (originals come first)."""
    rows = measured.embeddings.get(embedding) if embedding else None
    prints = measured.fingerprints
    return [
        Signals(
            item.id,
            i,
            measured.sha256[i],
            prints[i].dct if prints else None,
            None if rows is None else rows[i],
            look=prints[i].look if prints else None,
        )
        for i, item in enumerate(data.items)
    ]


def neighbours_of(
    item: Signals, originals: list[Signals], thresholds: Thresholds, near: Floats | None = None
) -> list[Neighbour]:
    """What the index adapter would return for ``item``: the originals with all three measurements, the
    perceptual one confirmed by details as the index confirms the rows it finds at the threshold. With ``near``,
    the unconfirmed similarities to ``originals`` (:func:`tooling.eval.similarity.matrix`), only the originals
    that can match at ``thresholds`` are returned (the same decisions, without a Neighbour for each of
    thousands of originals); without it, every original."""

    def cosine(o: Signals) -> float | None:
        if item.embedding is None or o.embedding is None:
            return None
        return float(np.dot(item.embedding, o.embedding))

    def can_match(n: int, o: Signals) -> bool:
        if near is None or o.sha256 == item.sha256:
            return True
        if thresholds.perceptual is not None and near[n] >= thresholds.perceptual:
            return True
        found = cosine(o)
        return found is not None and thresholds.semantic is not None and found >= thresholds.semantic

    return [
        Neighbour(
            o.id,
            o.event_time_ms,
            sha256=o.sha256,
            perceptual=perceptual_similarity(item, o, thresholds.detail, thresholds.detail_region),
            look=o.look,
            cosine=cosine(o),
        )
        for n, o in enumerate(originals)
        if can_match(n, o)
    ]


def run(data: Dataset, measured: Measured, thresholds: Thresholds, embedding: str | None = None) -> Combined:
    """Decide every variant against the originals, the originals as one batch, and each hard pair."""
    every = signals(data, measured, embedding)
    first = data.of_role(Role.ORIGINAL)
    originals = [every[i] for i in first]
    views = similarity.stack(every) if measured.fingerprints else None

    def near(i: int, among: list[int]) -> Floats | None:
        return None if views is None else similarity.matrix(views[[i]], views[among])[0]

    source_id = {data.items[i].source: data.items[i].id for i in data.of_role(Role.ORIGINAL)}

    found: dict[str, int] = {}
    total: dict[str, int] = {}
    wrong: dict[str, int] = {}
    kinds: dict[str, dict[str, int]] = {}
    fp = dict.fromkeys(NEGATIVE_GROUPS, 0)
    decided = dict.fromkeys(NEGATIVE_GROUPS, 0)
    for i in data.of_role(Role.VARIANT):
        item, key = data.items[i], str(data.items[i].transform)
        (decision,) = decide(
            [every[i]], {every[i].id: neighbours_of(every[i], originals, thresholds, near(i, first))}, thresholds
        )
        total[key] = total.get(key, 0) + 1
        decided["other sources"] += 1
        if decision.match is None:
            continue
        if decision.match.original == source_id[item.source]:
            found[key] = found.get(key, 0) + 1
            per = kinds.setdefault(key, {})
            per[decision.match.kind.value] = per.get(decision.match.kind.value, 0) + 1
        else:
            wrong[key] = wrong.get(key, 0) + 1
            fp["other sources"] += 1

    for decision in decide(originals, {}, thresholds):
        decided["other sources"] += 1
        fp["other sources"] += decision.status is Status.DUPLICATE

    # Low-information pictures are uploaded after the sources, as one batch: every duplicate among them is false.
    # The product colourways are a batch of their own (their group: one product in several colours).
    weak = data.of_role(Role.LOW_INFO)
    colourways = [i for i in weak if data.items[i].category == COLOURWAYS]
    others = [i for i in weak if data.items[i].category != COLOURWAYS]
    for group, batch in (("low-information", others), ("colourways", colourways)):
        if not batch:
            continue
        neighbours = {every[i].id: neighbours_of(every[i], originals, thresholds, near(i, first)) for i in batch}
        for decision in decide([every[i] for i in batch], neighbours, thresholds):
            decided[group] += 1
            fp[group] += decision.status is Status.DUPLICATE

    for a, b in zip(data.of_role(Role.HARD_A), data.of_role(Role.HARD_B), strict=True):
        (decision,) = decide(
            [every[b]], {every[b].id: neighbours_of(every[b], [every[a]], thresholds, near(b, [a]))}, thresholds
        )
        decided["hard"] += 1
        fp["hard"] += decision.status is Status.DUPLICATE

    return Combined(
        thresholds,
        {k: found.get(k, 0) / n for k, n in total.items()},
        {k: wrong.get(k, 0) for k in total},
        {k: kinds.get(k, {}) for k in total},
        fp,
        decided,
    )
