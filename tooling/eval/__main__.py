"""``python -m tooling.eval``: how well the service's decisions hold up, on your own images.

Takes a folder of distinct images, makes labelled variants (zoom, crop, brightness, grayscale, re-encodes,
downscales, rotations, a flip, an overlay, a letterbox) and hard negatives, runs them through the worker's
own decoding, hashes, model and ``decide()``, and writes ``report.md``, ``report.json`` and ``pr_curve.png``::

    python -m tooling.eval.sources data/eval-sources              # ~50 sample photos, if you have none
    python -m tooling.eval --images data/eval-sources --stages exact,perceptual --out data/eval-report
    python -m tooling.eval.corpus fetch                           # the held-out corpus (tooling.eval.corpus)
    python -m tooling.eval --corpus data/corpus --fold tune --stages exact,perceptual --out data/eval-tune
    DEDUP_MODEL_WEIGHTS=imagenet python -m tooling.eval --images my-photos --out my-report   # all three stages

Model weights and device come from ``DEDUP_MODEL_WEIGHTS`` / ``DEDUP_DEVICE`` like the worker's.
"""

from __future__ import annotations

import shlex
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

from tooling.eval.measure import SemanticSetup

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)

STAGES = ("exact", "perceptual", "semantic")
ALL_HASHES = "phash,dhash,whash,phash256,pdq"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@app.command()
def main(
    images: Annotated[
        Path | None, typer.Option(help="Folder of distinct source images.", exists=True, file_okay=False)
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="A fetched corpus (python -m tooling.eval.corpus fetch) instead of --images.", file_okay=False
        ),
    ] = None,
    fold: Annotated[str, typer.Option(help="With --corpus: tune, test or all.")] = "all",
    out: Annotated[Path, typer.Option(help="Where report.md, report.json and pr_curve.png go.")] = Path(
        "data/eval-report"
    ),
    stages: Annotated[str, typer.Option(help="Comma-separated: exact, perceptual, semantic.")] = ",".join(STAGES),
    hashes: Annotated[str, typer.Option(help="Perceptual hashes to compare ('' for the worker's only).")] = ALL_HASHES,
    preprocess: Annotated[str, typer.Option(help="Semantic preprocessing(s): crop (the worker's), resize.")] = "crop",
    pooling: Annotated[str, typer.Option(help="Semantic pooling(s): avg (the worker's), max, gem.")] = "avg",
    inputs: Annotated[str, typer.Option(help="Compare model inputs under these preprocessings ('' to skip).")] = (
        "crop,resize"
    ),
    perceptual_threshold: Annotated[
        float | None, typer.Option(help="Decide with this cosine instead of the rule's choice (combined column).")
    ] = None,
    worker_thresholds: Annotated[
        bool,
        typer.Option(
            help="Decide with the worker's own perceptual threshold (DEDUP_PERCEPTUAL_THRESHOLD) instead of the "
            "rule's choice on this run: for a test fold, whose thresholds were chosen on the tuning fold."
        ),
    ] = False,
    semantic_threshold: Annotated[
        float | None, typer.Option(help="Semantic threshold for the combined column (default: the worker's).")
    ] = None,
    transforms: Annotated[str, typer.Option(help="Only these transform names, comma-separated ('': all).")] = "",
    limit: Annotated[
        int | None,
        typer.Option(help="Use only N images: the first N of the folder; of a corpus, N spread evenly over it."),
    ] = None,
    negatives: Annotated[
        int, typer.Option(help="Low-information negatives per category (solid colours, scans, …); 0: none.")
    ] = 40,
    batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 16,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Measure, then write the report; prints where it went and how long it took."""
    from tooling.eval import analysis, categories, report
    from tooling.eval.dataset import build, build_files
    from tooling.eval.measure import measure
    from tooling.eval.transforms import TRANSFORMS
    from worker.config import load_settings
    from worker.hashing import HASHERS, PERCEPTUAL

    started = time.monotonic()
    wanted = _split(stages)
    unknown = set(wanted) - set(STAGES)
    if unknown or not wanted:
        raise typer.BadParameter(f"unknown stage(s) {sorted(unknown)}; use {', '.join(STAGES)}", param_hint="--stages")
    hashers = [PERCEPTUAL.name] if "perceptual" in wanted else []
    hashers += [h for h in _split(hashes) if h not in hashers]
    for h in hashers:
        if h not in HASHERS:
            raise typer.BadParameter(f"unknown hash {h!r}; use {', '.join(HASHERS)}", param_hint="--hashes")
    if "pdq" in hashers and find_spec("pdqhash") is None:
        typer.echo("note: PDQ left out of the hash comparison: pip install 'image-dedup-worker[eval]'", err=True)
        hashers.remove("pdq")
    settings = load_settings()
    semantic = (
        [SemanticSetup(p, q) for p in _split(preprocess) for q in _split(pooling)] if "semantic" in wanted else []
    )
    if semantic and settings.random_weights:
        typer.secho(report.RANDOM_BANNER.replace("> ", ""), fg="red", bold=True, err=True)

    chosen_transforms = [t for t in TRANSFORMS if not _split(transforms) or t.name in _split(transforms)]
    if not chosen_transforms:
        names = ", ".join(dict.fromkeys(t.name for t in TRANSFORMS))
        raise typer.BadParameter(f"no transform called {transforms!r}; use {names}", param_hint="--transforms")
    if (images is None) == (corpus is None):
        raise typer.BadParameter("give either --images FOLDER or --corpus FOLDER", param_hint="--images / --corpus")
    if corpus is not None:
        data = build_files(corpus_files(corpus, fold, limit), chosen_transforms, negatives=negatives, where=corpus)
    else:
        assert images is not None
        data = build(images, chosen_transforms, limit=limit, negatives=negatives)
    measured = measure(
        data,
        hashers=hashers,
        semantic=semantic,
        inputs=_split(inputs),
        weights=settings.model_weights,
        device=settings.device,
        batch_size=batch_size,
        progress=progress,
    )
    sem_threshold = semantic_threshold if semantic_threshold is not None else settings.effective_semantic_threshold
    decided_at = settings.perceptual_threshold if worker_thresholds else perceptual_threshold
    results = analysis.analyse(
        data,
        measured,
        semantic_threshold=sem_threshold if semantic else None,
        perceptual_threshold=decided_at,
        stages=wanted,
    )
    if data.categories:
        results["categories"], results["aspects"] = categories.per_source(data, measured, results)
        results["folds"] = {"fold": fold, "corpus": str(corpus)}
    command = _command(
        images=images,
        corpus=corpus,
        fold=fold if corpus is not None else "all",
        out=out,
        stages=stages,
        hashes=hashes,
        preprocess=preprocess,
        pooling=pooling,
        inputs=inputs,
        perceptual_threshold=None if worker_thresholds else perceptual_threshold,
        worker_thresholds=worker_thresholds,
        semantic_threshold=semantic_threshold,
        transforms=transforms,
        limit=limit,
        negatives=negatives,
    )
    written = report.write(results, out, command=command, weights=settings.model_weights, semantic_run=bool(semantic))
    for path in written:
        typer.echo(f"wrote {path}")
    rule = results["chosen"].get("perceptual_rule")
    if rule is not None and rule != settings.perceptual_threshold:
        typer.echo(
            f"note: the rule chooses perceptual ≥ {rule:.3f} on this run; DEDUP_PERCEPTUAL_THRESHOLD is "
            f"{settings.perceptual_threshold}"
        )
    typer.echo(f"done in {time.monotonic() - started:.0f} s")


def corpus_files(root: Path, fold: str, limit: int | None) -> list[tuple[str, Path, str | None]]:
    """The corpus's pictures of ``fold`` as ``(name, path, category)``; with ``limit``, N spread evenly over the
    manifest (every collection keeps about its share)."""
    from tooling.eval.corpus import load

    try:
        pictures = load(root, fold)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fold") from exc
    if limit is not None and limit < len(pictures):
        pictures = [pictures[round(i * len(pictures) / limit)] for i in range(limit)]
    return [(p.name, p.path, p.category) for p in pictures]


def _command(**options: object) -> str:
    """The command line that reproduces a run: the options that differ from their defaults (for the report)."""
    defaults: dict[str, object] = {
        "stages": ",".join(STAGES),
        "hashes": ALL_HASHES,
        "preprocess": "crop",
        "pooling": "avg",
    }
    defaults |= {"inputs": "crop,resize", "perceptual_threshold": None, "semantic_threshold": None, "limit": None}
    defaults |= {"images": None, "corpus": None, "fold": "all", "worker_thresholds": False}
    defaults["transforms"] = ""
    defaults["negatives"] = 40
    parts = ["python -m tooling.eval"]
    for name, value in options.items():
        if name in defaults and value == defaults[name]:
            continue
        flag = f"--{name.replace('_', '-')}"
        parts.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


if __name__ == "__main__":
    app()
