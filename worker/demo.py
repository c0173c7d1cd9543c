"""``make demo``: the whole service on this machine, on embedded defaults, end to end.

Starts Redis, an S3 server (a real ``minio`` binary if one is on PATH, else moto's S3 server), the webhook
producer and ``celery -A worker worker`` (with Milvus Lite embedded); uploads sample photos with exact and
near-duplicate copies; delivers MinIO-format notifications for them to the webhook; waits until the queue has
drained and every object has its outcome; prints the table; writes the review gallery of the demo's duplicates
as static HTML (``--review-dir``, default ``data/demo-review``: each duplicate beside its original) and prints its
address; stops everything it started.

    python -m worker.demo [--weights auto|imagenet|random|FILE] [--action tag|quarantine] [--review-dir DIR]

``--weights auto`` (the default) uses torchvision's ImageNet weights when they can be downloaded or are cached,
and otherwise falls back — loudly — to random weights, with which the semantic stage takes no part in
decisions (exact and perceptual detection are unaffected).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from producer.events import notification
from worker.actions import Actions
from worker.config import Action
from worker.decision import Status
from worker.localstack import WEBHOOK_TOKEN, LocalStack, wait_until
from worker.messages import ObjectEvent
from worker.outcome import Outcome
from worker.samples import Sample, trust_set, upload_set

BUCKET = "photos"
QUARANTINE = "dedup-quarantine"

cli = typer.Typer(add_completion=False)


def choose_weights(requested: str) -> str:
    if requested != "auto":
        return requested
    from worker.embedding import IMAGENET_WEIGHTS

    try:
        IMAGENET_WEIGHTS.get_state_dict(progress=True, check_hash=True)  # cached in $TORCH_HOME for the worker
    except Exception as exc:
        banner = "!" * 100
        typer.secho(
            f"{banner}\n!! ImageNet weights are not available ({type(exc).__name__}); the demo uses RANDOM weights.\n"
            "!! Exact and perceptual detection work as usual; the semantic stage takes no part in decisions.\n"
            f"!! Put the weights file at hand and pass --weights FILE to use it.\n{banner}",
            fg=typer.colors.YELLOW,
            err=True,
        )
        return "random"
    return "imagenet"


def deliver(url: str, sample: Sample, event_time_ms: int, etag: str) -> None:
    body = notification(
        "s3:ObjectCreated:Put", BUCKET, sample.key, event_time_ms=event_time_ms, etag=etag, size=len(sample.data)
    )
    request = urllib.request.Request(  # noqa: S310 - our own loopback webhook
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")


def run(root: Path, weights: str, action: str, timeout: float, review_dir: Path | None = None) -> bool:
    """Run the demo in ``root``; returns whether every object got the expected outcome. With ``review_dir``, the
    review gallery of its duplicates is written there as static HTML."""
    samples = upload_set() + trust_set()
    with LocalStack(root, buckets=(BUCKET,)) as stack:
        typer.echo(f"S3 server: {stack.s3_server}; Redis: {stack.broker_url}; logs in {stack.logs}")
        _, url = stack.start_webhook()
        typer.echo("starting celery -A worker worker (loads ResNet-50) ...")
        worker = stack.start_worker(
            env={
                "DEDUP_MODEL_WEIGHTS": weights,
                "DEDUP_ACTION": action,
                "DEDUP_QUARANTINE_BUCKET": QUARANTINE,
                "DEDUP_BATCH_SIZE": "16",
            }
        )
        storage = stack.storage()
        actions = Actions(storage, Action(action), quarantine_bucket=QUARANTINE)
        started = time.monotonic()
        base_ms = int(time.time() * 1000)
        for i, sample in enumerate(samples):
            etag = storage.put(BUCKET, sample.key, sample.data, sample.content_type)
            deliver(url, sample, base_ms + i, etag)
        typer.echo(f"uploaded {len(samples)} objects and delivered their notifications; waiting for outcomes ...")
        seen: dict[str, Outcome] = {}

        def all_decided() -> bool:  # final outcomes: read once nothing is queued or in flight
            if not stack.queue_drained():
                return False
            seen.clear()
            for sample in samples:
                if outcome := actions.recorded(ObjectEvent(BUCKET, sample.key, 0)):
                    seen[sample.key] = outcome
            return len(seen) == len(samples) and stack.queue_drained()

        wait_until(all_decided, timeout, "every object's outcome", interval=0.5)
        elapsed = time.monotonic() - started
        ok = print_table(samples, seen, elapsed, quarantined=action == Action.QUARANTINE)
        if review_dir is not None:
            stack.stop_service(worker)  # Milvus Lite: one process per file, and the gallery reads it now
            export_review(stack, review_dir, action)
    return ok


def export_review(stack: LocalStack, directory: Path, action: str) -> None:
    """Write the demo's review gallery (static HTML and thumbnails) to ``directory`` and print its address."""
    from producer.gallery import Filters
    from producer.review import export
    from producer.thumbnails import Thumbnails
    from worker.config import load_settings
    from worker.index import Index

    env = stack.env({"DEDUP_ACTION": action, "DEDUP_QUARANTINE_BUCKET": QUARANTINE})
    settings = load_settings(
        **{name.removeprefix("DEDUP_").lower(): value for name, value in env.items() if name.startswith("DEDUP_")}
    )
    index = Index.connect(settings.milvus_uri, collection=settings.collection)
    try:
        pages = export(directory, index, Thumbnails(settings, stack.storage()), Filters())
    finally:
        index.close()
    typer.echo(f"\nreview the duplicates, each beside its original: file://{pages[0].resolve()}")
    typer.echo("(live, with Restore and Confirm buttons: python -m producer review, against a running service)")


def print_table(samples: list[Sample], seen: dict[str, Outcome], elapsed: float, *, quarantined: bool) -> bool:
    header = ("object", "outcome", "kind", "score", "duplicate of", "note", "as expected")
    rows = []
    correct = 0
    for sample in samples:
        got = seen[sample.key]
        ok = sample.expect.matches(got, BUCKET)
        correct += ok
        status = got.status.value
        if got.status is Status.DUPLICATE and quarantined:
            status += " (quarantined)"
        if got.reason:
            status += f" ({got.reason})"
        score = f"{got.score:.4f}" if got.score is not None else ""
        kind = got.kind.value if got.kind else ""
        note = ",".join(got.notes)
        rows.append((f"{BUCKET}/{sample.key}", status, kind, score, got.original or "", note, "yes" if ok else "NO"))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        typer.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    counts = Counter(outcome.status.value for outcome in seen.values())
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in Status)
    typer.echo(f"\n{len(samples)} objects in {elapsed:.1f} s: {summary}; {correct}/{len(samples)} as expected.")
    return correct == len(samples)


@cli.command()
def main(
    weights: Annotated[str, typer.Option(help="auto, imagenet, random or a weights file")] = "auto",
    action: Annotated[str, typer.Option(help="tag or quarantine")] = "tag",
    workdir: Annotated[Path | None, typer.Option(help="Keep data and logs here (default: a temporary folder)")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every outcome")] = 600.0,
    review_dir: Annotated[Path, typer.Option(help="Write the review gallery (static HTML) here")] = Path(
        "data/demo-review"
    ),
) -> None:
    """Run the service end to end on sample photos and print each object's outcome."""
    logging.basicConfig(level=logging.WARNING)
    chosen = choose_weights(weights)
    if workdir is not None:
        ok = run(workdir, chosen, action, timeout, review_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="dedup-demo-") as tmp:
            ok = run(Path(tmp), chosen, action, timeout, review_dir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    cli()
