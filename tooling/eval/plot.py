"""The PR-curve figure of a report (matplotlib, Agg backend: no display needed).

>>> write_pr_png(results["curves"], Path("docs/quality/pr_curve.png"), title="49 sources")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt


def write_pr_png(curves: dict[str, Any], path: Path, *, title: str) -> None:
    """Precision–recall (left) and recall against the false-positive rate on negatives (right), per stage."""
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    for name, curve in curves.items():
        pr.plot(curve["recall"], curve["precision"], label=name, drawstyle="steps-post")
        fp = [max(x, 1e-6) for x in curve["fp_rate"]]
        roc.plot(fp, curve["recall"], label=name, drawstyle="steps-post")
    pr.set(xlabel="recall", ylabel="precision", title="precision–recall over all pairs", xlim=(0, 1.02), ylim=(0, 1.02))
    roc.set(xscale="log", xlabel="false-positive rate on negative pairs", ylabel="recall", title="recall vs FP rate")
    roc.set_xlim(1e-6, 1.0)
    for axis in (pr, roc):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})  # no version stamp: reruns give the same file
    plt.close(fig)
