"""Per-category figures for a corpus run: recall per transform and abstentions, for each category of source.

    >>> by = per_category(data, measured, results)
    >>> by["recall"]["perceptual"]["photo"]["jpeg q75"], by["abstained"]["photo"]
    (1.0, {'sources': 120, 'blank': 0, 'smooth': 0, 'perceptual': 3, 'semantic': 0})

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

from typing import Any

import numpy as np

from tooling.eval import combined
from tooling.eval.dataset import Dataset, Role
from tooling.eval.measure import Measured
from tooling.eval.metrics import Scorer, cosine_scorer, exact_scorer, look_scorer
from worker.decision import DETAIL, DETAIL_REGION, GUARD, Guard

UNCATEGORISED = "uncategorised"


def source_category(data: Dataset, source: int) -> str:
    return data.categories[source] if data.categories else UNCATEGORISED


def per_category(data: Dataset, measured: Measured, results: dict[str, Any], guard: Guard = GUARD) -> dict[str, Any]:
    """Recall per stage × category × transform at the run's thresholds (sources neither blank nor smooth), and
    blank and smooth sources and abstentions per category."""
    originals = {data.items[i].source: i for i in data.of_role(Role.ORIGINAL)}
    unknown = (False,) * len(data.sources)  # a dataset built without the measures
    blank = data.blank or unknown
    smooth = [s and not b for s, b in zip(data.smooth or unknown, blank, strict=True)]  # blank ones count as blank
    shown = [not (b or s) for b, s in zip(blank, smooth, strict=True)]
    variants = [i for i in data.of_role(Role.VARIANT) if not blank[data.items[i].source]]
    a = np.array(variants, dtype=np.int64)
    b = np.array([originals[data.items[i].source] for i in variants], dtype=np.int64)
    signals = combined.signals(data, measured, None)
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
    categories = [source_category(data, data.items[i].source) for i in variants]
    transforms = [str(data.items[i].transform) for i in variants]
    counted = [shown[data.items[i].source] for i in variants]
    recall: dict[str, dict[str, dict[str, float]]] = {}
    with_smooth: dict[str, dict[str, dict[str, float]]] = {}
    for name, scorer in scorers.items():
        matched = scorer(a, b) >= results["stages"][name]["threshold"] if len(a) else np.zeros(0, dtype=bool)
        hits: dict[str, dict[str, list[int]]] = {}
        all_hits: dict[str, dict[str, list[int]]] = {}
        for category, key, hit, count in zip(categories, transforms, matched.tolist(), counted, strict=True):
            for tally in (hits, all_hits) if count else (all_hits,):
                counts = tally.setdefault(category, {}).setdefault(key, [0, 0])
                counts[0] += bool(hit)
                counts[1] += 1
        recall[name], with_smooth[name] = (
            {
                category: {key: found / total for key, (found, total) in per.items()}
                for category, per in sorted(tally.items())
            }
            for tally in (hits, all_hits)
        )
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
