"""``python -m tooling.eval.tail``: how close unrelated pictures come, over millions of pairs, and what that means
for an index of 1M or 100M originals.

A threshold that is clean on a few thousand negative pairs says little about an index of millions: each upload
is compared with every original, so what matters is the per-pair rate far out in the tail. This takes source
pictures (a folder, or a fold of the corpus), makes copies of each with moderate edits, adds the generated
low-information pictures, fingerprints everything with the worker's own code and scores **every pair of items
from different sources** with the perceptual stage's rule (:func:`worker.decision.perceptual_similarity`:
whole ↔ every view either way round, or two same-region pairs), after its guard; the pairs near enough to
matter are then confirmed by their views' details and colour-checked, as the decision does::

    python -m tooling.eval.tail --corpus data/corpus --fold tune --out data/tail-tune.json
    6,720 items (640 sources with their copies, and low-information pictures), 22,547,040 negative pairs ...

It prints the negative pairs' survival (how many reach each similarity), the copies' recall at the same points,
and the expected number of false neighbours per upload against 1M and 100M originals at the thresholds: the
measured per-pair rate times the originals, and its 95 % upper bound (Poisson: 3 / pairs when none is found).
The pairs are scored as whole arrays (:mod:`tooling.eval.similarity`); 6,700 items (a fold of the corpus) take
about seven minutes on two cores, most of it making and decoding the copies.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

from tooling.eval import negatives as low_information
from tooling.eval import similarity as similarity_rule
from tooling.eval.dataset import decode
from tooling.eval.transforms import REGRESSION, Transform
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import (
    DETAIL,
    DETAIL_REGION,
    GUARD,
    Guard,
    Signals,
    perceptual_similarity,
)
from worker.fingerprint import Fingerprint, fingerprint

Floats = npt.NDArray[np.float32]

#: Similarities at which the survival of negative pairs and the recall of copies are reported.
POINTS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
#: Negative pairs at or above this similarity get the details' confirmation and the colour check (both per pair).
COLOUR_FROM = 0.80
#: Originals an upload is compared with, for the expected false neighbours per upload.
SCALES = (1_000_000, 100_000_000)
#: Details' thresholds of the (descriptor, details) grid reported for choosing both.
GRID_DETAIL = (0.0, 0.9, 0.95, 0.97, 0.98, 0.99)
#: Details' thresholds at which the negative pairs matching at the descriptor threshold are counted.
DETAIL_GRID = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
#: ... and of a whole picture against a region (``Thresholds.detail_region``), the others' fixed.
REGION_GRID = (0.85, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    source: int  # items of one source are copies of each other; every low-information picture is its own source
    category: str
    copy: str | None  # the edit that made it, None for a source picture


@dataclass(frozen=True, slots=True)
class Pairs:
    """Every pair's perceptual similarity and whether the guard lets it through."""

    similarity: Floats  # items × items, symmetric
    guarded: npt.NDArray[np.bool_]  # both pictures pass the perceptual guard


def measure(
    items: Sequence[Item],
    prints: Sequence[Fingerprint],
    threshold: float,
    guard: Guard = GUARD,
    detail: float | None = DETAIL,
    detail_region: float | None = DETAIL_REGION,
) -> dict[str, Any]:
    """The negative pairs' tail and the copies' recall (plain data, for JSON). The sweeps along the details'
    threshold (``along_detail``, ``grid``) use one threshold for every pair of views; ``along_detail_region``
    sweeps the one for a whole picture against a region (``detail_region``) with ``detail`` fixed."""
    signals = [
        Signals(item.name, n, "", p.dct, look=p.look) for n, (item, p) in enumerate(zip(items, prints, strict=True))
    ]
    views = similarity_rule.stack(signals)
    similarity = similarity_rule.matrix(views, views)
    ok = np.array([guard.perceptual_ok(p.look) for p in prints])
    source = np.array([item.source for item in items])
    upper = np.triu(np.ones_like(similarity, dtype=bool), k=1)
    negative = upper & (source[:, None] != source[None, :])
    guarded = negative & ok[:, None] & ok[None, :]
    values = similarity[guarded]
    signals = [
        Signals(item.name, n, "", p.dct, look=p.look) for n, (item, p) in enumerate(zip(items, prints, strict=True))
    ]

    # The details' confirmation and the colour check, pair by pair, only where they can matter.
    rows, cols = np.nonzero(guarded & (similarity >= COLOUR_FROM))
    pairs = list(zip(rows.tolist(), cols.tolist(), strict=True))
    unconfirmed = similarity[rows, cols]
    confirmed = np.array(
        [perceptual_similarity(signals[i], signals[j], detail, detail_region) for i, j in pairs],
        dtype=np.float32,
    ).reshape(-1)
    colour_ok = np.array(
        [guard.colours_agree(prints[i].look, prints[j].look) for i, j in pairs],
        dtype=bool,
    ).reshape(-1)
    after = confirmed[colour_ok]
    closest = sorted(
        zip(after.tolist(), rows[colour_ok].tolist(), cols[colour_ok].tolist(), strict=True), reverse=True
    )[:20]

    copies = [n for n, item in enumerate(items) if item.copy is not None]
    original_of = {item.source: n for n, item in enumerate(items) if item.copy is None}
    recall_values = np.array(
        [
            perceptual_similarity(signals[n], signals[original_of[items[n].source]], detail, detail_region)
            for n in copies
        ],
        dtype=np.float32,
    )
    recall_ok = np.array([ok[n] and ok[original_of[items[n].source]] for n in copies], dtype=bool)

    # Along the details' threshold, at the descriptor threshold: how fast the confirmation thins the tail out.
    near = [
        pair for pair, value, colour in zip(pairs, unconfirmed, colour_ok, strict=True) if colour and value >= threshold
    ]
    joint = {
        f"{d:.2f}": sum((perceptual_similarity(signals[i], signals[j], d) or -1.0) >= threshold for i, j in near)
        for d in DETAIL_GRID
    }
    along_region = {
        f"{r:.2f}": sum(
            (perceptual_similarity(signals[i], signals[j], detail, r) or -1.0) >= threshold for i, j in near
        )
        for r in REGION_GRID
    }

    # Both thresholds at once, for choosing them: negatives matching and copies found at each (t, d).
    candidates = [pair for pair, colour in zip(pairs, colour_ok, strict=True) if colour]
    grid: dict[str, dict[str, dict[str, float]]] = {}
    for d in GRID_DETAIL:
        negative_at = np.array([perceptual_similarity(signals[i], signals[j], d) or -1.0 for i, j in candidates])
        copy_at = np.array(
            [perceptual_similarity(signals[n], signals[original_of[items[n].source]], d) or -1.0 for n in copies]
        )
        grid[f"{d:.2f}"] = {
            f"{t:.2f}": {
                "negatives": int(np.count_nonzero(negative_at >= t)),
                "recall": float(np.mean((copy_at >= t) & recall_ok)) if copies else math.nan,
            }
            for t in POINTS
        }
    by_transform: dict[str, list[bool]] = {}
    by_category: dict[str, list[bool]] = {}
    for n, value, passed in zip(copies, recall_values.tolist(), recall_ok.tolist(), strict=True):
        found = passed and value >= threshold
        by_transform.setdefault(str(items[n].copy), []).append(found)
        by_category.setdefault(items[n].category, []).append(found)

    survival = {f"{t:.2f}": int(np.count_nonzero(after >= t)) for t in POINTS}
    return {
        "grid": grid,
        "recall_by_transform": {k: float(np.mean(v)) for k, v in sorted(by_transform.items())},
        "recall_by_category": {k: float(np.mean(v)) for k, v in sorted(by_category.items())},
        "items": len(items),
        "sources": len({item.source for item in items if item.copy is None and item.category != "low-information"}),
        "negative_pairs": int(np.count_nonzero(negative)),
        "guarded_pairs": int(values.size),
        "survival_guard_only": {f"{t:.2f}": int(np.count_nonzero(values >= t)) for t in POINTS},
        "survival_unconfirmed": {f"{t:.2f}": int(np.count_nonzero(unconfirmed[colour_ok] >= t)) for t in POINTS},
        "survival": survival,
        "threshold": threshold,
        "detail": detail,
        "detail_region": detail_region,
        "at_threshold": int(np.count_nonzero(after >= threshold)),
        "closest": [
            {
                "similarity": s,
                "a": items[i].name,
                "b": items[j].name,
                "categories": [items[i].category, items[j].category],
            }
            for s, i, j in closest
        ],
        "recall": {
            f"{t:.2f}": float(np.mean((recall_values >= t) & recall_ok)) if len(copies) else math.nan for t in POINTS
        },
        "copies": len(copies),
        "abstained": {
            category: int(np.count_nonzero([not ok[n] for n, item in enumerate(items) if item.category == category]))
            for category in sorted({item.category for item in items})
        },
        "per_category": {
            category: int(np.count_nonzero([item.category == category for item in items]))
            for category in sorted({item.category for item in items})
        },
        "along_detail": joint,
        "along_detail_region": along_region,
    }


def poisson_upper(count: int, confidence: float = 0.95) -> float:
    """The upper confidence bound of a Poisson mean after observing ``count`` events (3.0 for none at 95 %)."""

    def at_most(mean: float) -> float:  # P(X <= count)
        term = total = math.exp(-mean)
        for k in range(1, count + 1):
            term *= mean / k
            total += term
        return total

    low, high = 0.0, count + 10 * math.sqrt(count + 1) + 10
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if at_most(mid) > 1 - confidence else (low, mid)
    return high


def rate_at(result: dict[str, Any]) -> tuple[float, float]:
    """The per-pair false-neighbour rate at the result's thresholds: as measured, and its 95 % upper bound."""
    pairs, count = result["guarded_pairs"], result["at_threshold"]
    if not pairs:
        return math.nan, math.nan
    return count / pairs, poisson_upper(count) / pairs


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"{result['items']:,} items ({result['sources']:,} sources with their copies, and low-information "
        f"pictures), {result['negative_pairs']:,} negative pairs, {result['guarded_pairs']:,} past the guard",
        "similarity ≥ | negatives (guard) | (guard, colour) | (guard, colour, details) | copies found",
    ]
    for t in POINTS:
        key = f"{t:.2f}"
        lines.append(
            f"{key} | {result['survival_guard_only'][key]:,} | {result['survival_unconfirmed'][key]:,} | "
            f"{result['survival'][key]:,} | {result['recall'][key]:.3f}"
        )
    lines.append(
        "at the threshold, pairs still matching by details' threshold: "
        + ", ".join(f"{d}: {n}" for d, n in result["along_detail"].items())
    )
    if "along_detail_region" in result:
        lines.append(
            f"... by the whole ↔ region details' threshold (the others at {result['detail']}): "
            + ", ".join(f"{d}: {n}" for d, n in result["along_detail_region"].items())
        )
    rate, upper = rate_at(result)
    lines.append(
        f"per-pair false-neighbour rate at {result['threshold']} (details {result['detail']}, whole ↔ region "
        f"{result.get('detail_region', result['detail'])}): {rate:.2e} "
        f"({result['at_threshold']} of {result['guarded_pairs']:,} pairs), 95 % upper bound {upper:.2e}"
    )
    for n in SCALES:
        lines.append(
            f"expected false neighbours per upload against {n:,} originals: {rate * n:.3g} measured, "
            f"at most {upper * n:.3g} (95 %)"
        )
    lines.append(
        "closest negative pairs: "
        + "; ".join(f"{c['similarity']:.4f} {c['a']} ~ {c['b']}" for c in result["closest"][:5])
    )
    return "\n".join(lines)


def build(
    sources: Sequence[tuple[str, str, bytes]], transforms: Sequence[Transform], negatives: int
) -> tuple[list[Item], list[Fingerprint]]:
    """Fingerprint each source ``(name, category, bytes)``, its copies and the low-information pictures."""
    items: list[Item] = []
    prints: list[Fingerprint] = []
    for s, (name, category, data) in enumerate(sources):
        picture = decode(data)
        items.append(Item(name, s, category, None))
        prints.append(fingerprint(picture))
        for t in transforms:
            items.append(Item(f"{name}~{t.key}", s, category, t.key))
            prints.append(fingerprint(decode(t.apply(picture, data))))
    for n, weak in enumerate(low_information.generate(negatives) if negatives else ()):
        items.append(Item(weak.id, len(sources) + n, "low-information", None))
        prints.append(fingerprint(decode(weak.data)))
    return items, prints


app = typer.Typer(add_completion=False)


@app.command()
def main(
    images: Annotated[Path | None, typer.Option(help="A folder of distinct source pictures.")] = None,
    corpus: Annotated[Path | None, typer.Option(help="The corpus root (manifest.json), instead of --images.")] = None,
    fold: Annotated[str, typer.Option(help="With --corpus: tune, test or all.")] = "test",
    copies: Annotated[int, typer.Option(help="Copies per source, from the moderate edits (◆).")] = 7,
    negatives: Annotated[int, typer.Option(help="Low-information pictures per category.")] = 40,
    threshold: Annotated[float, typer.Option(help="The perceptual threshold to extrapolate at.")] = (
        DEFAULT_PERCEPTUAL_THRESHOLD
    ),
    detail: Annotated[float, typer.Option(help="The details' confirmation threshold.")] = DETAIL,
    detail_region: Annotated[
        float, typer.Option(help="The details' threshold of a whole picture against a region of the other.")
    ] = DETAIL_REGION,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """Score every pair of unrelated pictures and print the tail."""
    started = time.monotonic()
    sources = _sources(images, corpus, fold)
    items, prints = build(sources, REGRESSION[:copies], negatives)
    result = measure(items, prints, threshold, detail=detail, detail_region=detail_region)
    result |= {"fold": fold if corpus else str(images), "copies_per_source": copies}
    typer.echo(summary(result))
    typer.echo(f"({time.monotonic() - started:.0f} s)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")


def _sources(images: Path | None, corpus: Path | None, fold: str) -> list[tuple[str, str, bytes]]:
    if (images is None) == (corpus is None):
        raise typer.BadParameter("give exactly one of --images and --corpus")
    if images is not None:
        files = sorted(p for p in images.iterdir() if p.is_file() and not p.name.startswith("."))
        return [(p.name, "photo", p.read_bytes()) for p in files]
    assert corpus is not None
    manifest = json.loads((corpus / "manifest.json").read_text())
    entries = manifest["pictures"] if isinstance(manifest, dict) else manifest
    chosen = [e for e in entries if fold == "all" or e["fold"] == fold]
    return [(e["path"], e["category"], (corpus / e["path"]).read_bytes()) for e in chosen]


if __name__ == "__main__":
    app()
