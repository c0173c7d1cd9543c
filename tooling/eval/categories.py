"""Per-category and per-aspect figures for a corpus run: recall per transform and abstentions, for each category
of source, and recall per transform for each aspect class (:func:`tooling.eval.dataset.aspect_class`).

    >>> by = per_category(data, measured, results)
    >>> by["recall"]["perceptual"]["photo"]["jpeg q75"], by["abstained"]["photo"]
    (1.0, {'sources': 120, 'blank': 0, 'smooth': 0, 'perceptual': 3, 'semantic': 0})
    >>> per_aspect(data, measured, results)["recall"]["perceptual"]["wide 3:1+"]["border 5% black"]
    0.96

* **recall**: per stage (as the report's per-stage columns, at the threshold the run chose), per source
  category, per transform: the share of that category's variants whose pair with their own source matches,
  over the sources that are neither blank (:func:`tooling.eval.dataset.blank`: nothing shows once flattened, so
  only the bytes can tell such a copy) nor smooth (:func:`tooling.eval.dataset.smooth`: a gradient or a glow
  without an edge, which the guard is asked to abstain on); **recall_with_smooth** the same with the smooth
  sources counted too;
* **abstained**: per source category, how many sources are blank, how many of the others are smooth, and how many
  a near-duplicate stage's information guard keeps out (:meth:`worker.decision.Guard.perceptual_ok` /
  :meth:`~worker.decision.Guard.semantic_ok`, the floors that :func:`worker.decision.low_information` reports):
  such a picture can only ever be found by its exact bytes. Blank sources are among those kept out;
* **smooth**: the smooth sources' names.

Sources without a category (``--images``) count as ``uncategorised``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tooling.eval import combined
from tooling.eval.dataset import ASPECTS, Dataset, Role
from tooling.eval.measure import Measured
from tooling.eval.metrics import Scorer, cosine_scorer, exact_scorer, look_scorer
from worker.decision import DETAIL, DETAIL_REGION, GUARD, Guard, Signals

UNCATEGORISED = "uncategorised"

#: Recall per stage, group (a category or an aspect class) and transform.
Recall = dict[str, dict[str, dict[str, float]]]


def source_category(data: Dataset, source: int) -> str:
    return data.categories[source] if data.categories else UNCATEGORISED


def per_source(
    data: Dataset, measured: Measured, results: dict[str, Any], guard: Guard = GUARD
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`per_category` and :func:`per_aspect` together, every variant scored once for both (the perceptual
    scorer over every variant is the costly part)."""
    signals = combined.signals(data, measured, None)
    blank, smooth = _blank_and_smooth(data)
    matched = _matched(data, measured, results, signals, guard, blank)
    return (
        _per_category(data, matched, signals, guard, blank, smooth),
        _per_aspect(data, matched, blank, smooth),
    )


def per_category(data: Dataset, measured: Measured, results: dict[str, Any], guard: Guard = GUARD) -> dict[str, Any]:
    """Recall per stage × category × transform at the run's thresholds (sources neither blank nor smooth), and
    blank and smooth sources and abstentions per category."""
    return per_source(data, measured, results, guard)[0]


def per_aspect(data: Dataset, measured: Measured, results: dict[str, Any], guard: Guard = GUARD) -> dict[str, Any]:
    """Recall per stage × aspect class × transform at the run's thresholds (sources neither blank nor smooth, as
    :func:`per_category`), and the sources of each class."""
    return per_source(data, measured, results, guard)[1]


def _per_category(
    data: Dataset, matched: Matched, signals: list[Signals], guard: Guard, blank: list[bool], smooth: list[bool]
) -> dict[str, Any]:
    originals = {data.items[i].source: i for i in data.of_role(Role.ORIGINAL)}
    recall, with_smooth = _recall(data, matched, blank, smooth, lambda s: source_category(data, s))
    abstained: dict[str, dict[str, int]] = {}
    for source, i in sorted(originals.items()):
        look = signals[i].look
        row = abstained.setdefault(
            source_category(data, source), {"sources": 0, "blank": 0, "smooth": 0, "perceptual": 0, "semantic": 0}
        )
        row["sources"] += 1
        row["blank"] += blank[source]
        row["smooth"] += smooth[source]
        row["perceptual"] += not guard.perceptual_ok(look)
        row["semantic"] += not guard.semantic_ok(look)
    return {
        "recall": recall,
        "recall_with_smooth": with_smooth,
        "abstained": dict(sorted(abstained.items())),
        "smooth": [data.sources[source] for source in sorted(originals) if smooth[source]],
    }


def _per_aspect(data: Dataset, matched: Matched, blank: list[bool], smooth: list[bool]) -> dict[str, Any]:
    recall, _ = _recall(data, matched, blank, smooth, lambda s: data.aspects[s])
    sources: dict[str, int] = {}
    for i in data.of_role(Role.ORIGINAL):
        source = data.items[i].source
        if not (blank[source] or smooth[source]):
            sources[data.aspects[source]] = sources.get(data.aspects[source], 0) + 1
    ordered = [name for name in ASPECTS if name in sources]
    return {
        "sources": {name: sources[name] for name in ordered},
        "recall": {stage: {name: per[name] for name in ordered if name in per} for stage, per in recall.items()},
    }


def _blank_and_smooth(data: Dataset) -> tuple[list[bool], list[bool]]:
    """Each source's blank and smooth flags (a smooth blank source counts as blank only)."""
    unknown = (False,) * len(data.sources)  # a dataset built without the measures
    blank = list(data.blank or unknown)
    smooth = [s and not b for s, b in zip(data.smooth or unknown, blank, strict=True)]
    return blank, smooth


#: The variants of sources that are not blank, and per stage whether each matched its own source.
Matched = tuple[list[int], dict[str, list[bool]]]


def _matched(
    data: Dataset,
    measured: Measured,
    results: dict[str, Any],
    signals: list[Signals],
    guard: Guard,
    blank: list[bool],
) -> Matched:
    """Every variant of a source that is not blank, scored against its own source by each stage at the run's
    threshold."""
    originals = {data.items[i].source: i for i in data.of_role(Role.ORIGINAL)}
    variants = [i for i in data.of_role(Role.VARIANT) if not blank[data.items[i].source]]
    a = np.array(variants, dtype=np.int64)
    b = np.array([originals[data.items[i].source] for i in variants], dtype=np.int64)
    scorers: dict[str, Scorer] = {}
    for name in results["stages"]:
        if name == "exact":
            scorers[name] = exact_scorer(measured.sha256)
        elif name == "perceptual":
            chosen = results["chosen"]
            scorers[name] = look_scorer(
                signals, guard, chosen.get("detail", DETAIL), chosen.get("detail_region", DETAIL_REGION)
            )
        elif name.startswith("semantic ") and name.removeprefix("semantic ") in measured.embeddings:
            scorers[name] = cosine_scorer(measured.embeddings[name.removeprefix("semantic ")])
    matched = {
        name: (scorer(a, b) >= results["stages"][name]["threshold"]).tolist() if len(a) else []
        for name, scorer in scorers.items()
    }
    return variants, matched


def _recall(
    data: Dataset, matched: Matched, blank: list[bool], smooth: list[bool], group_of: Callable[[int], str]
) -> tuple[Recall, Recall]:
    """Recall per stage × group (``group_of`` a source) × transform over the sources neither blank nor smooth, and
    the same with the smooth ones."""
    variants, hits_by_stage = matched
    shown = [not (b or s) for b, s in zip(blank, smooth, strict=True)]
    groups = [group_of(data.items[i].source) for i in variants]
    transforms = [str(data.items[i].transform) for i in variants]
    counted = [shown[data.items[i].source] for i in variants]
    recall: Recall = {}
    with_smooth: Recall = {}
    for name, matches in hits_by_stage.items():
        hits: dict[str, dict[str, list[int]]] = {}
        all_hits: dict[str, dict[str, list[int]]] = {}
        for group, key, hit, count in zip(groups, transforms, matches, counted, strict=True):
            for tally in (hits, all_hits) if count else (all_hits,):
                counts = tally.setdefault(group, {}).setdefault(key, [0, 0])
                counts[0] += bool(hit)
                counts[1] += 1
        recall[name], with_smooth[name] = (
            {group: {key: found / total for key, (found, total) in per.items()} for group, per in sorted(tally.items())}
            for tally in (hits, all_hits)
        )
    return recall, with_smooth
