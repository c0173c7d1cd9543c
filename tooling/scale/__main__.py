"""``python -m tooling.scale``: fill an index with each of ``--sizes`` originals, and measure it."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from tooling.scale import inputs
from tooling.scale.run import Result, measure

app = typer.Typer(add_completion=False)
WORK = Path(tempfile.gettempdir(), "image-dedup-scale")


@app.command()
def main(
    sizes: Annotated[str, typer.Option(help="originals in the index, comma-separated")] = "10000,100000,1000000",
    uploads: Annotated[int, typer.Option(help="edited test-fold copies decided against each size")] = 3200,
    corpus: Annotated[Path, typer.Option(help="the corpus (make eval-fetch)")] = Path("data/corpus"),
    cache: Annotated[Path, typer.Option(help="fingerprints made once, reused by later runs")] = Path(
        "data/scale-cache"
    ),
    work: Annotated[Path, typer.Option(help="where each size's index lives while it is measured")] = WORK,
    embedding: Annotated[int, typer.Option(help="store a noise embedding of this dimension (0: none)")] = 0,
    out: Annotated[Path | None, typer.Option(help="folder for scale.json and scale.md")] = None,
    engine: Annotated[str, typer.Option(help="lite (Milvus Lite) or server (PyPI milvus 2.3.5)")] = "lite",
) -> None:
    logging.basicConfig(level=logging.WARNING)
    anchors = inputs.load(cache / "anchors.npz", lambda: inputs.anchor_prints(corpus))
    asked = inputs.load(
        cache / f"uploads-{uploads}-{inputs.edits_key()}.npz", lambda: inputs.upload_prints(corpus, uploads)
    )
    results: list[Result] = []
    # The anchors alone first: the recall every larger index must keep.
    for size in [len(anchors), *(int(s) for s in sizes.split(","))]:
        fillers = inputs.filler_shards(cache, corpus, max(0, size - len(anchors)))
        result = measure(
            size=size,
            anchors=anchors,
            uploads=asked,
            fillers=fillers,
            folder=work / str(size),
            embedding=embedding,
            engine=engine,
        )
        results.append(result)
        typer.echo(json.dumps(result.as_json()))
    table = markdown(results)
    typer.echo(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.json").write_text(json.dumps([r.as_json() for r in results], indent=2) + "\n")
        (out / "scale.md").write_text(table + "\n")


def markdown(results: list[Result]) -> str:
    """The sizes side by side, one row each."""
    lines = [
        "| originals | hash rows | disk / original | memory / original | inserts/s | decide p50 / p99 per 32 "
        "| recall | false candidates / upload | false duplicates |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        j = r.as_json()
        lines.append(
            f"| {r.originals:,} | {r.rows:,} | {j['disk_per_original'] / 1024:.1f} KB "
            f"| {j['rss_per_original'] / 1024:.1f} KB | {j['inserts_per_s']:,.0f} "
            f"| {r.latency_ms['p50']:,.0f} / {r.latency_ms['p99']:,.0f} ms | {r.recall:.3f} "
            f"| {j['false_candidates_per_upload']:.3f} | {r.false_duplicates} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    app()
