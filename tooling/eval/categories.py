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


def per_category(data: Dataset, measured: Measured, results: dict[str, Any], guard: Guard = GUARD) -> dict[str, Any]:
    """Recall per stage × category × transform at the run's thresholds (sources neither blank nor smooth), and
    blank and smooth sources and abstentions per category."""
    originals = {data.items[i].source: i for i in data.of_role(Role.ORIGINAL)}
    blank, smooth = _blank_and_smooth(data)
    signals = combined.signals(data, measured, None)
    recall, with_smooth = _recall(data, measured, results, signals, guard, lambda s: source_category(data, s))
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


def per_aspect(data: Dataset, measured: Measured, results: dict[str, Any], guard: Guard = GUARD) -> dict[str, Any]:
    """Recall per stage × aspect class × transform at the run's thresholds (sources neither blank nor smooth, as
    :func:`per_category`), and the sources of each class."""
    blank, smooth = _blank_and_smooth(data)
    signals = combined.signals(data, measured, None)
    recall, _ = _recall(data, measured, results, signals, guard, lambda s: data.aspects[s])
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


def _recall(
    data: Dataset,
    measured: Measured,
    results: dict[str, Any],
    signals: list[Signals],
    guard: Guard,
    group_of: Callable[[int], str],
) -> tuple[Recall, Recall]:
    """Recall per stage × group (``group_of`` a source) × transform over the sources neither blank nor smooth, and
    the same with the smooth ones."""
    originals = {data.items[i].source: i for i in data.of_role(Role.ORIGINAL)}
    blank, smooth = _blank_and_smooth(data)
    shown = [not (b or s) for b, s in zip(blank, smooth, strict=True)]
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
    groups = [group_of(data.items[i].source) for i in variants]
    transforms = [str(data.items[i].transform) for i in variants]
    counted = [shown[data.items[i].source] for i in variants]
    recall: Recall = {}
    with_smooth: Recall = {}
    for name, scorer in scorers.items():
        matched = scorer(a, b) >= results["stages"][name]["threshold"] if len(a) else np.zeros(0, dtype=bool)
        hits: dict[str, dict[str, list[int]]] = {}
        all_hits: dict[str, dict[str, list[int]]] = {}
        for group, key, hit, count in zip(groups, transforms, matched.tolist(), counted, strict=True):
            for tally in (hits, all_hits) if count else (all_hits,):
                counts = tally.setdefault(group, {}).setdefault(key, [0, 0])
                counts[0] += bool(hit)
                counts[1] += 1
        recall[name], with_smooth[name] = (
            {group: {key: found / total for key, (found, total) in per.items()} for group, per in sorted(tally.items())}
            for tally in (hits, all_hits)
        )
    return recall, with_smooth
