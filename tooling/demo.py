"""``make demo``: the whole service on this machine, on embedded defaults, end to end.

Starts Redis, an S3 server (a real ``minio`` binary if one is on PATH, else moto's S3 server), the webhook
producer and ``celery -A worker worker`` (with Milvus Lite embedded); uploads sample photos with exact and
near-duplicate copies, a flat illustration with its thumbnail and a dark photo with its q40 re-encode;
delivers MinIO-format notifications for them to the webhook; waits until the queue has drained and every object
has its outcome; prints the table; with ``--action quarantine``, deletes the original with the most quarantined
duplicates and shows the earliest of them coming back to its key as the new original (SHA-256 verified) and the
others following it; writes the review gallery of the demo's duplicates as static HTML (``--review-dir``, default
``data/demo-review``: each duplicate beside its original) and prints its address; stops everything it started.

    python -m tooling.demo [--weights auto|imagenet|random|FILE] [--action tag|quarantine] [--review-dir DIR]

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
from typing import Annotated, Any

import typer

from producer.events import notification
from tooling.localstack import WEBHOOK_TOKEN, LocalStack, wait_until
from tooling.samples import Sample, descriptor_set, trust_set, upload_set
from worker.actions import META_SHA256, Actions, quarantine_key
from worker.config import Action
from worker.decision import Status
from worker.messages import ObjectEvent
from worker.outcome import Outcome
from worker.tags import decode_value

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
    post(url, body)


def post(url: str, body: dict[str, Any]) -> None:
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
    samples = upload_set() + trust_set() + descriptor_set()
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
        if action == Action.QUARANTINE:
            ok = show_promotion(stack, url, samples, seen, timeout) and ok
        if review_dir is not None:
            stack.stop_service(worker)  # Milvus Lite: one process per file, and the gallery reads it now
            export_review(stack, review_dir, action)
    return ok


def show_promotion(
    stack: LocalStack, url: str, samples: list[Sample], seen: dict[str, Outcome], timeout: float
) -> bool:
    """Delete the original with the most quarantined duplicates, deliver its ``s3:ObjectRemoved:Delete``, and
    show its earliest duplicate coming back from quarantine (SHA-256 verified) and the others following it."""
    storage = stack.storage()
    actions = Actions(storage, Action.QUARANTINE, quarantine_bucket=QUARANTINE)
    order = {f"{BUCKET}/{s.key}": i for i, s in enumerate(samples)}
    groups: dict[str, list[str]] = {}
    for key, outcome in seen.items():
        if outcome.status is Status.DUPLICATE and outcome.original in order:
            groups.setdefault(outcome.original, []).append(f"{BUCKET}/{key}")
    if not groups:
        typer.echo("\nno quarantined duplicates: nothing to show of an original's removal")
        return True
    original, duplicates = max(groups.items(), key=lambda item: (len(item[1]), item[0]))
    duplicates.sort(key=order.__getitem__)  # uploaded in this order: the first is the earliest
    earliest, others = duplicates[0], duplicates[1:]
    copy = actions.find_copy(BUCKET, earliest.partition("/")[2])
    expected = copy.info.metadata.get(META_SHA256, "") if copy is not None else ""
    typer.echo(f"\ndeleting the original {original} (its duplicates {', '.join(duplicates)} are in quarantine) ...")
    key = original.partition("/")[2]
    storage.remove(BUCKET, key)
    post(url, notification("s3:ObjectRemoved:Delete", BUCKET, key, event_time_ms=int(time.time() * 1000)))
    started = time.monotonic()

    def back() -> bool:  # the earliest at its key, every other one out of its own, nothing left to do
        if storage.stat(BUCKET, earliest.partition("/")[2]) is None or not stack.queue_drained():
            return False
        return all(storage.stat(BUCKET, other.partition("/")[2]) is None for other in others)

    try:
        wait_until(back, timeout, f"{earliest} back at its key", interval=0.5)
    except TimeoutError:
        typer.echo(
            f"{earliest}: NOT back at its key with every other duplicate in quarantine after {timeout:.0f} s "
            "(see the worker log)"
        )
        return False
    got = storage.sha256(BUCKET, earliest.partition("/")[2])
    tags = storage.get_tags(BUCKET, earliest.partition("/")[2])
    verified = "verified" if got == expected else f"MISMATCH (quarantined {expected[:12]})"
    typer.echo(
        f"{earliest}: back at its key after {time.monotonic() - started:.1f} s, SHA-256 {got[:16]}… {verified}, "
        f"tagged dedup-status={tags.get('dedup-status')} dedup-promoted={tags.get('dedup-promoted')}"
    )
    ok = got == expected and tags.get("dedup-promoted") == "original_removed"
    for other in others:
        other_key = other.partition("/")[2]
        found = actions.find_copy(BUCKET, other_key)
        now_of = ""
        if found is not None and storage.stat(BUCKET, other_key) is None:
            copy_tags = storage.get_tags(QUARANTINE, quarantine_key(BUCKET, other_key), found.version)
            now_of = decode_value(copy_tags.get("dedup-of", "")) or ""
        typer.echo(f"{other}: stays in quarantine, now a duplicate of {now_of or '?'}")
        ok = ok and now_of == earliest
    return ok


def export_review(stack: LocalStack, directory: Path, action: str) -> None:
    """Write the demo's review gallery (static HTML and thumbnails) to ``directory`` and print its address."""
    from producer.gallery_app import export
    from producer.gallery_pages import Filters
    from producer.thumbnails import Thumbnails
    from worker.config import load_settings
    from worker.index import Index

    env = stack.env({"DEDUP_ACTION": action, "DEDUP_QUARANTINE_BUCKET": QUARANTINE})
    settings = load_settings(
        **{name.removeprefix("DEDUP_").lower(): value for name, value in env.items() if name.startswith("DEDUP_")}
    )
    index = Index.connect(settings.milvus_uri, collection=settings.collection, dim=settings.embedding_dim)
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
