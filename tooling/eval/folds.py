"""``python -m tooling.eval.folds``: the test fold's figures beside the tuning fold's, and the gap between them.

Every floor and threshold is chosen on the corpus's tuning fold; the figures that count are the test fold's,
which nothing was tuned on. This reads the two harness reports (``make eval`` writes ``docs/quality/tune`` and
``docs/quality/test``) and writes ``docs/quality/folds.md``: per transform, the combined decision's recall on
each fold and the gap (test − tune), then each fold's false duplicates (decisions) and the perceptual stage's
false pairs; then, per category of source, the perceptual stage's lowest recall over the moderate edits (◆) but
the same-bytes copy (the exact stage finds it) among the sources that are neither blank nor smooth, with the edit
that gives it; then, per aspect class (under 2:1, wide or tall 2–3:1 and 3:1 and more), the bordered copies'
recall and the largest shortfall of any edit against pictures under 2:1. The README shows those tables verbatim
(between :data:`TABLE_START` and :data:`TABLE_END`)::

    python -m tooling.eval.folds docs/quality
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tooling.eval.dataset import ASPECTS
from tooling.eval.metrics import NEGATIVE_GROUPS

TABLE_START = "<!-- folds-table:start -->"
TABLE_END = "<!-- folds-table:end -->"


def table(tune: dict[str, Any], test: dict[str, Any]) -> list[str]:
    """The Markdown table: recall per transform on both folds and the gap, then false positives per fold."""
    lines = [
        TABLE_START,
        f"| transform | tune ({tune['counts']['sources']} sources) | test ({test['counts']['sources']} sources) "
        "| gap (test − tune) |",
        "|---|---|---|---|",
    ]
    recall_tune, recall_test = tune["combined"]["recall"], test["combined"]["recall"]
    for key in recall_test:
        a, b = recall_tune.get(key), recall_test[key]
        gap = "—" if a is None else f"{b - a:+.2f}"
        lines.append(f"| {key} | {'—' if a is None else f'{a:.2f}'} | {b:.2f} | {gap} |")
    for group in NEGATIVE_GROUPS:
        cells = [_fp(run["combined"], group) for run in (tune, test)]
        lines.append(f"| **false duplicates (decisions), {group}** | {cells[0]} | {cells[1]} | |")
    for group in NEGATIVE_GROUPS:
        cells = [_pairs(run["stages"]["perceptual"], group) for run in (tune, test)]
        lines.append(f"| **false pairs, perceptual stage, {group}** | {cells[0]} | {cells[1]} | |")
    lines += ["", *moderate_by_category(tune, test)]
    if "aspects" in tune and "aspects" in test:
        lines += ["", *by_aspect(tune, test)]
    return [*lines, TABLE_END]


#: Bordered copies, reported for every aspect class: on a wide or tall picture's working thumbnail a border is
#: a line or two.
BORDER_EDITS = ("border 5% black", "border 10% white")


def by_aspect(tune: dict[str, Any], test: dict[str, Any]) -> list[str]:
    """Per aspect class, on each fold: sources, the perceptual stage's recall on the bordered copies (5 % black /
    10 % white), and the largest shortfall of any edit's recall against the same edit's on pictures under 2:1, with
    that edit; a class missing from a fold shows −."""
    lines = [
        "| aspect | tune: sources | tune: borders | tune: largest shortfall | test: sources | test: borders "
        "| test: largest shortfall |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ASPECTS:
        if all(name not in run["aspects"]["sources"] for run in (tune, test)):
            continue
        cells = []
        for run in (tune, test):
            sources = run["aspects"]["sources"].get(name)
            if sources is None:
                cells += ["—", "—", "—"]
                continue
            recall = run["aspects"]["recall"]["perceptual"]
            per, under = recall.get(name, {}), recall.get(ASPECTS[0], {})
            borders = " / ".join(f"{per[key]:.2f}" if key in per else "—" for key in BORDER_EDITS)
            gaps = {key: under[key] - per[key] for key in per if key in under}
            worst = max(gaps, key=lambda key: gaps[key], default=None)
            if name == ASPECTS[0] or worst is None:
                shortfall = "—"
            else:
                shortfall = f"{max(gaps[worst], 0.0):.2f}" + (f" ({worst})" if gaps[worst] > 0 else "")
            cells += [str(sources), borders, shortfall]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def moderate_by_category(tune: dict[str, Any], test: dict[str, Any]) -> list[str]:
    """Per category: sources (blank and smooth ones in brackets) and the perceptual stage's lowest recall over the
    moderate edits but the same-bytes copy, with that edit, on each fold. Recall counts the sources that are neither
    blank nor smooth (:func:`tooling.eval.dataset.blank`, :func:`~tooling.eval.dataset.smooth`); a category missing
    from a fold shows −."""
    moderate = [key for key in test["moderate"] if key != "copy same bytes"]  # the exact stage's: always found
    names = sorted(set(tune["categories"]["abstained"]) | set(test["categories"]["abstained"]))
    lines = [
        "| category | tune: sources (blank, smooth) | tune: lowest moderate | test: sources (blank, smooth) "
        "| test: lowest moderate |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        cells = []
        for run in (tune, test):
            row = run["categories"]["abstained"].get(name)
            recall = run["categories"]["recall"]["perceptual"].get(name)
            if row is None:
                cells += ["—", "—"]
                continue
            cells.append(f"{row['sources']} ({row['blank']}, {row.get('smooth', 0)})")
            if recall is None:
                cells.append("—")
                continue
            worst = min(moderate, key=lambda key: recall[key])
            cells.append(f"{recall[worst]:.3f}" + (f" ({worst})" if recall[worst] < 1.0 else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _fp(combined: dict[str, Any], group: str) -> str:
    return f"{combined['false_positives'][group]} / {combined['decisions'][group]:,}"


def _pairs(stage: dict[str, Any], group: str) -> str:
    return f"{stage['false_positives'][group]} / {stage['negatives'][group]:,}"


app = typer.Typer(add_completion=False)


@app.command()
def main(root: Annotated[Path, typer.Argument(help="Holds tune/report.json and test/report.json.")]) -> None:
    """Write ``folds.md`` beside the two reports."""
    tune, test = (json.loads((root / fold / "report.json").read_text()) for fold in ("tune", "test"))
    out = root / "folds.md"
    out.write_text("\n".join(table(tune, test)) + "\n")
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
