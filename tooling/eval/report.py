"""Write a report: ``report.md`` (what a person reads), ``report.json`` (everything) and ``pr_curve.png``.

    >>> write(results, Path("docs/quality"), command="python -m tooling.eval --images data/eval-sources", ...)

The Markdown's "Quality at the chosen thresholds" table is the one the README quotes; it lies between
:data:`TABLE_START` and :data:`TABLE_END` so a test can check the README still shows it verbatim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tooling.eval.plot import write_pr_png
from tooling.eval.transforms import TRANSFORMS, Transform

TABLE_START = "<!-- quality-table:start -->"
TABLE_END = "<!-- quality-table:end -->"

RANDOM_BANNER = """\
> [!WARNING]
> **THE SEMANTIC STAGE IS MEANINGLESS IN THIS REPORT.** It ran with `DEDUP_MODEL_WEIGHTS=random`: a ResNet-50
> with random weights, whose embeddings make every pair of images look alike (cosine ≈ 0.998). Its columns,
> curves and suggested thresholds say nothing about real weights. Rerun with real weights
> (`DEDUP_MODEL_WEIGHTS=imagenet` or a weights file) to measure it."""

NO_SEMANTIC_NOTE = """\
> The semantic stage was not run (`--stages` leaves it out), so no row below reflects it; with
> `DEDUP_MODEL_WEIGHTS=random` its numbers would be meaningless anyway."""


def _present(results: dict[str, Any]) -> list[Transform]:
    """The transforms this run measured, in report order."""
    return [t for t in TRANSFORMS if t.key in results["combined"]["recall"]]


def _pct(x: float) -> str:
    return f"{x:.2f}"


def _fp(count: int, total: int) -> str:
    return f"{count} / {total:,} ({100 * count / total:.3f} %)" if total else "—"


def _threshold(stage: str, value: float) -> str:
    if stage == "exact":
        return "same bytes"
    return f"≥ {value:.3f}"


def _widest(bits: int) -> str:
    return f"≤ {bits}" if bits >= 0 else "none (pairs at 0 bits)"


def _range(stage: str, low: float, high: float) -> str:
    if stage == "exact":
        return "same bytes"
    return f"{low:.3f}" if low == high else f"{low:.4f}–{high:.4f}"


def quality_table(results: dict[str, Any]) -> list[str]:
    stages = results["stages"]
    names = list(stages)
    head = ["transform", *[f"{n} ({_threshold(n, stages[n]['threshold'])})" for n in names], "combined"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    comb = results["combined"]
    for t in _present(results):
        key = t.key
        cells = [_pct(stages[n]["transforms"][key]["recall"]) for n in names]
        kinds = comb["by_kind"].get(key, {})
        via = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        mark = " ◆" if t.moderate and t.aligned else " ◇" if t.moderate else ""
        lines.append(
            f"| {key}{mark} | "
            + " | ".join(cells)
            + f" | {_pct(comb['recall'][key])}"
            + (f" ({via})" if via else "")
            + " |"
        )
    for group, label in (
        ("other sources", "other sources"),
        ("hard", "hard negatives"),
        ("low-information", "low-information negatives"),
        ("colourways", "product colourways"),
    ):
        cells = [_fp(stages[n]["false_positives"][group], stages[n]["negatives"][group]) for n in names]
        total = comb["decisions"][group]
        lines.append(
            f"| **FP rate, {label}** | " + " | ".join(cells) + f" | {_fp(comb['false_positives'][group], total)} |"
        )
    return lines


def markdown(results: dict[str, Any], *, command: str, weights: str, semantic_run: bool) -> str:
    counts, chosen, stages, comb = results["counts"], results["chosen"], results["stages"], results["combined"]
    random = weights.lower() == "random"
    out = ["# Detection quality", ""]
    if semantic_run and random:
        out += [RANDOM_BANNER, ""]
    elif not semantic_run:
        out += [NO_SEMANTIC_NOTE, ""]
    out += [
        f"Produced by `{command}`" + (f" with model weights `{weights}`." if semantic_run else "."),
        "",
        f"* {counts['sources']} source images, {counts['variants']} labelled variants ({counts['transforms']} "
        f"transforms × strengths, each source), {counts['hard_pairs']} hard-negative pairs (two far-apart crops "
        f"of one picture), {counts.get('low_information', 0)} low-information pictures (`tooling.eval.negatives`). "
        "Negative pairs: every variant and every source against every *other* source, the hard pairs, and every "
        "low-information picture against every other one and every source; the product colourways (one product in "
        "several colours), against each other and every source, are a group of their own.",
        "* Each upload is decoded, hashed and embedded by the worker's own functions; for the combined column "
        "`worker.decision.decide` decides each variant against every source, with exact in-memory distances "
        "standing in for the Milvus search (same rows as a search whose limit covers every source).",
        f"* Perceptual stage: the worker's fingerprint (`worker.fingerprint`: {results['hasher']['dim']}-d "
        "descriptors — pHash's low DCT coefficients, median-centred and unit length, compared by cosine — of the "
        "picture with uniform borders trimmed, of its mirror, of the picture brightened with clipping, of the "
        "picture as uploaded and its mirror, and of ten regions of the picture as uploaded; details confirm each "
        "pair of views) with its information guard and colour check (`worker.decision.Guard`).",
    ]
    if counts["skipped"]:
        out.append(f"* Skipped (not decodable): {', '.join(counts['skipped'])}.")
    out += ["", "## Chosen thresholds", ""]
    if "perceptual" in stages:
        p = stages["perceptual"]
        rule = (
            f"Rule: halfway between a perfect match (1) and the closest negative pair "
            f"({p['closest_negative']:.4f}) → {chosen['perceptual_rule']:.3f}"
        )
        if chosen["perceptual"] == chosen["perceptual_rule"]:
            out.append(
                f"* **perceptual: ≥ {chosen['perceptual']:.3f}.** {rule}. Every negative is then at least as far "
                "below the threshold as a copy can be."
            )
        else:
            out.append(f"* **perceptual: ≥ {chosen['perceptual']:.3f}**, set with `--perceptual-threshold`. {rule}.")
    for name in stages:
        if name.startswith("semantic"):
            note = " — **meaningless: random weights**" if random else ""
            out.append(
                f"* {name}: the same rule suggests cosine ≥ {chosen[name + ' rule']:.3f} (closest negative "
                f"{stages[name]['closest_negative']:.4f}){note}."
            )
    sem = comb["semantic"]
    out.append(
        f"* combined: `decide()` with perceptual ≥ {comb['perceptual']:.3f} and semantic "
        + (f"≥ {sem}" if sem is not None else "off (random weights, or not run)")
        + "."
    )
    out += [
        "",
        "## Quality at the chosen thresholds",
        "",
        "Recall per transform (share of variants matched to their own source) and false positives on negatives. "
        "Per-stage columns count pairs; the combined column counts decisions (a variant pointed at another source, "
        "a source called a duplicate of another, or the later crop of a hard pair called a duplicate of the first). "
        "◆ marks the moderate-strength transforms that keep the picture's geometry: the regression tests hold the "
        "exact and perceptual stages to them. ◇ marks moderate geometric edits and overlays: the mirror, border and "
        "region hashes catch some of them, the rest are left to the semantic stage.",
        "",
        TABLE_START,
        *quality_table(results),
        TABLE_END,
        "",
        "## Per stage: precision, recall, F1 and the best threshold",
        "",
        "Precision counts a transform's variants against every other source; *best* is the range of thresholds "
        "with the highest F1 for that transform alone (a threshold tuned to one transform, for comparison).",
    ]
    for name, s in stages.items():
        out += ["", f"### {name} (at {_threshold(name, s['threshold'])})", ""]
        out += ["| transform | precision | recall | F1 | best F1 | best threshold |", "|---|---|---|---|---|---|"]
        for key, v in s["transforms"].items():
            out.append(
                f"| {key} | {_pct(v['precision'])} | {_pct(v['recall'])} | {_pct(v['f1'])} | {_pct(v['best_f1'])} "
                f"| {_range(name, *v['best_threshold'])} |"
            )
        b = s["best_overall"]
        out.append(
            f"| **all** | {_pct(s['overall']['precision'])} | {_pct(s['overall']['recall'])} | | {_pct(b['f1'])} "
            f"| {_range(name, *b['threshold'])} |"
        )
    out += category_section(results)
    out += aspect_section(results)
    out += low_information_section(results)
    out += hash_section(results) + inputs_section(results) + sweep_section(results)
    return "\n".join(out) + "\n"


def category_section(results: dict[str, Any]) -> list[str]:
    """Recall per transform for each category of source, per stage, and how many sources each guard keeps out
    (a corpus run: :mod:`tooling.eval.categories`)."""
    by = results.get("categories")
    if not by:
        return []
    fold = results.get("folds", {}).get("fold", "all")
    abstained = by["abstained"]
    names = list(abstained)
    out = [
        "",
        f"## Per category of source (corpus fold: {fold})",
        "",
        "Sources per category; how many are blank (nothing shows once flattened onto white: fewer than 1 pixel "
        "in 10,000 more than 2 grey levels from the median, `tooling.eval.dataset.blank`); how many of the others "
        "are smooth (a gradient, a glow, a blurred blob: fewer than 1 pixel in 100 of a 128-pixel thumbnail more "
        "than 4 grey levels off its 2-pixel blur, `tooling.eval.dataset.smooth`; the guard is asked to abstain on "
        "gradients); and how many each near-duplicate stage's information guard keeps out "
        "(`worker.decision.Guard`: too little detail, texture or a light/dark split; such a picture is matched by "
        "its exact bytes only, whatever the threshold; blank ones included). Both guards are counted whether or "
        "not the stage ran. The recall tables below count the sources that are neither blank nor smooth; the "
        "smooth ones are listed after this table.",
        "",
        "| category | sources | blank | smooth | perceptual abstains | semantic abstains |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        row = abstained[name]
        out.append(
            f"| {name} | {row['sources']} | {row['blank']} | {row.get('smooth', 0)} | {row['perceptual']} "
            f"| {row['semantic']} |"
        )
    smooth = by.get("smooth", [])
    if smooth:
        out += ["", "Smooth sources, left out of the recall tables: " + ", ".join(f"`{s}`" for s in smooth) + "."]
    for stage, per in by["recall"].items():
        if stage == "exact":
            continue
        threshold = _threshold(stage, results["stages"][stage]["threshold"])
        out += ["", f"### Recall per category: {stage} (at {threshold})", ""]
        cats = list(per)
        out += ["| transform | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
        for t in _present(results):
            cells = [_pct(per[c][t.key]) if t.key in per[c] else "—" for c in cats]
            out.append(f"| {t.key} | " + " | ".join(cells) + " |")
    return out


def aspect_section(results: dict[str, Any]) -> list[str]:
    """Recall per transform for each aspect class of source, per near-duplicate stage (a corpus run:
    :func:`tooling.eval.categories.per_aspect`)."""
    by = results.get("aspects")
    if not by:
        return []
    fold = results.get("folds", {}).get("fold", "all")
    classes = list(by["sources"])
    out = [
        "",
        f"## Per aspect ratio (corpus fold: {fold})",
        "",
        "Sources by the ratio of their longer side to their shorter, as decoded "
        "(`tooling.eval.dataset.aspect_class`), neither blank nor smooth, as in the per-category tables: "
        + ", ".join(f"{c} {by['sources'][c]}" for c in classes)
        + ".",
    ]
    for stage, per in by["recall"].items():
        if stage == "exact":
            continue
        threshold = _threshold(stage, results["stages"][stage]["threshold"])
        out += ["", f"### Recall per aspect ratio: {stage} (at {threshold})", ""]
        out += ["| transform | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        for t in _present(results):
            cells = [_pct(per[c][t.key]) if t.key in per.get(c, {}) else "—" for c in classes]
            out.append(f"| {t.key} | " + " | ".join(cells) + " |")
    return out


def low_information_section(results: dict[str, Any]) -> list[str]:
    """False positives and the closest pair per low-information category, for each stage."""
    stages = {n: s for n, s in results["stages"].items() if s.get("low_information")}
    if not stages:
        return []
    out = [
        "",
        "## Low-information negatives",
        "",
        "Distinct pictures that global hashes confuse (`tooling.eval.negatives`): pairs within each category, and of "
        "each picture with every source; *across categories* pairs two pictures of different categories. "
        "*closest* is the most similar pair a stage did not abstain for (− means it abstained for every pair).",
    ]
    for name, s in stages.items():
        out += ["", f"### {name} (at {_threshold(name, s['threshold'])})", ""]
        out += ["| category | pairs | false positives | closest |", "|---|---|---|---|"]
        for category, v in s["low_information"].items():
            closest = v["closest"]
            if name == "exact":
                shown = "same bytes" if closest >= 1 else "never the same"
            elif closest <= -999:
                shown = "−"
            else:
                shown = _threshold(name, closest).replace("≤ ", "").replace("≥ ", "")
            out.append(f"| {category} | {v['pairs']:,} | {v['false_positives']} | {shown} |")
    return out


def hash_section(results: dict[str, Any]) -> list[str]:
    hashes = results["hashes"]
    if not hashes:
        return []
    out = [
        "",
        "## Perceptual hashes compared",
        "",
        "Each hash at its own threshold from the same rule (so none has a false positive on this set), and at the "
        "widest threshold without one. *crop* = mean recall over the zoom and crop transforms; *moderate* = over the ◆ "
        "transforms (moderate strength, geometry kept).",
        "",
        "| hash | bits | closest negative | threshold (rule) | crop | moderate | all "
        "| widest 0-FP threshold | crop | all |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, h in hashes.items():
        out.append(
            f"| `{name}` | {h['bits']} | {h['closest_negative']} | ≤ {h['threshold']} | {_pct(h['crop_recall'])} "
            f"| {_pct(h['moderate_recall'])} | {_pct(h['overall_recall'])} | {_widest(h['zero_fp_threshold'])} "
            f"| {_pct(h['zero_fp_crop_recall'])} | {_pct(h['zero_fp_overall_recall'])} |"
        )
    names = list(hashes)
    out += ["", "Recall per transform at each hash's rule threshold:", ""]
    out += ["| transform | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    for t in _present(results):
        out.append(f"| {t.key} | " + " | ".join(_pct(hashes[n]["recall"][t.key]) for n in names) + " |")
    return out


def inputs_section(results: dict[str, Any]) -> list[str]:
    inputs = results["inputs"]
    if not inputs:
        return []
    names = list(inputs)
    out = [
        "",
        "## Semantic preprocessing: what the model gets to see",
        "",
        "No model involved: the 224×224 model input of each variant under each preprocessing, reduced to a 32×32 "
        "grey view, correlated with its source's. *mean*: mean correlation; *sep*: share of variants more alike "
        "their source than the closest negative pair is. Higher means the model starts from more of the same picture.",
        "",
        "| transform | " + " | ".join(f"{n}: mean | {n}: sep" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for t in _present(results):
        cells = [
            f"{_pct(inputs[n]['mean'][t.key])} | {_pct(inputs[n]['above_closest_negative'][t.key])}" for n in names
        ]
        out.append(f"| {t.key} | " + " | ".join(cells) + " |")
    closest = " | ".join(f"{inputs[n]['closest_negative']:.2f} | " for n in names)
    out.append(f"| *closest negative* | {closest}|")
    return out


def sweep_section(results: dict[str, Any]) -> list[str]:
    sweep = results.get("sweep")
    if not sweep:
        return []
    out = [
        "",
        "## Threshold sweep (perceptual)",
        "",
        "| ≥ similarity | recall (all) | recall (◆) | precision | FP other sources | FP hard |",
        "|---|---|---|---|---|---|",
    ]
    for row in sweep:
        out.append(
            f"| {row['threshold']:.2f} | {_pct(row['recall'])} | {_pct(row['moderate_recall'])} "
            f"| {row['precision']:.4f} | {row['fp']['other sources']} | {row['fp']['hard']} |"
        )
    return out


def write(results: dict[str, Any], out: Path, *, command: str, weights: str, semantic_run: bool) -> list[Path]:
    """Write the three files into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, js, png = out / "report.md", out / "report.json", out / "pr_curve.png"
    md.write_text(markdown(results, command=command, weights=weights, semantic_run=semantic_run))
    slim = {k: v for k, v in results.items() if k != "curves"}
    js.write_text(json.dumps({"command": command, "weights": weights, **slim}, indent=1, ensure_ascii=False) + "\n")
    write_pr_png(results["curves"], png, title=f"{results['counts']['sources']} sources — {command}")
    return [md, js, png]
