"""Command line: ``python -m producer webhook | sqs | backfill | dead-letters | review | restore | confirm |
migrate-links`` (also installed as ``dedup-producer``).

python -m producer webhook                          # serve MinIO / Ceph RGW notifications
python -m producer sqs --queue URL                  # consume AWS S3 notifications from SQS
python -m producer backfill --bucket photos --prefix 2024/ --checkpoint photos.ckpt
python -m producer dead-letters [--requeue]         # inspect / re-send given-up messages
python -m producer review [--export DIR]            # the review gallery on 127.0.0.1:8090 (or static HTML)
python -m producer restore photos/cat-2.jpg         # put a duplicate back: it is no duplicate
python -m producer confirm photos/cat-3.jpg         # mark a duplicate as reviewed
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.config import ConfigError, Settings, env_name, load_settings

if TYPE_CHECKING:
    from minio import Minio
    from prometheus_client.registry import Collector

    from producer.enqueue import Enqueuer
    from worker.index import Index
    from worker.storage import Storage
    from worker.undo import Reviewer

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Feed image-dedup-worker's queue.")
log = logging.getLogger("producer")


def _settings() -> Settings:
    try:
        settings = load_settings()
        settings.require_buckets()
    except ConfigError as exc:
        typer.echo(f"dedup-producer: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def _enqueuer(settings: Settings, source: str) -> Enqueuer:
    from producer.enqueue import Enqueuer
    from worker.celery_app import create_app

    return Enqueuer(create_app(settings, include_tasks=False), queue=settings.queue, source=source)


@cli.command()
def webhook(
    host: Annotated[str | None, typer.Option(help="Bind address [default: DEDUP_WEBHOOK_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: DEDUP_WEBHOOK_PORT]")] = None,
) -> None:
    """Serve MinIO bucket notifications at POST /minio/events and enqueue them."""
    import uvicorn

    from producer.metrics import serve
    from producer.webhook import EVENTS_PATH, create_webhook, redacted_log_config

    settings = _settings()
    if not settings.webhook_tokens:
        if not settings.webhook_allow_unauthenticated:
            typer.echo(
                f"dedup-producer: invalid configuration: {env_name('webhook_token')}: required (set "
                f"{env_name('webhook_allow_unauthenticated')}=true to run without one, for local development)",
                err=True,
            )
            raise typer.Exit(2)
        log.warning("the webhook accepts UNAUTHENTICATED requests (%s=true)", env_name("webhook_allow_unauthenticated"))
    enqueuer = _enqueuer(settings, "webhook")
    serve(settings.metrics_port, settings.metrics_host, _queue_depth(settings))
    bind_host, bind_port = host or settings.webhook_host, port or settings.webhook_port
    log.info("webhook on http://%s:%d%s, buckets %s", bind_host, bind_port, EVENTS_PATH, ",".join(settings.buckets))
    uvicorn.run(
        create_webhook(settings, enqueuer),
        host=bind_host,
        port=bind_port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",
        log_config=redacted_log_config(),
    )


@cli.command()
def sqs(
    queue: Annotated[str | None, typer.Option(help="The SQS queue's URL [default: DEDUP_SQS_QUEUE_URL]")] = None,
    endpoint_url: Annotated[
        str | None, typer.Option(help="Another SQS-compatible server [default: DEDUP_SQS_ENDPOINT_URL, AWS]")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="[default: DEDUP_SQS_REGION, else the queue URL's, else the AWS SDK's]")
    ] = None,
) -> None:
    """Consume AWS S3 event notifications (direct, or through SNS) from an SQS queue and enqueue them."""
    import signal
    import threading

    import redis

    from producer.metrics import serve
    from producer.sqs import SqsConsumer, region_of
    from worker.delivery import park

    settings = _settings()
    queue_url = queue or settings.sqs_queue_url
    if not queue_url:
        typer.echo(f"dedup-producer: invalid configuration: --queue or {env_name('sqs_queue_url')}: required", err=True)
        raise typer.Exit(2)
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        typer.echo("dedup-producer: the SQS consumer needs boto3: pip install 'image-dedup-worker[aws]'", err=True)
        raise typer.Exit(2) from None
    client = boto3.client(
        "sqs",
        region_name=region or settings.sqs_region or region_of(queue_url),
        endpoint_url=endpoint_url or settings.sqs_endpoint_url,
        config=Config(retries={"mode": "standard"}, read_timeout=settings.sqs_wait_s + 30),
    )
    dead_letters = redis.Redis.from_url(settings.broker_url, socket_timeout=10)
    consumer = SqsConsumer(
        client,
        queue_url,
        _enqueuer(settings, "sqs"),
        bucket_allowed=settings.bucket_allowed,
        park=lambda letter: park(dead_letters, letter),
        wait_s=settings.sqs_wait_s,
    )
    serve(settings.metrics_port, settings.metrics_host, _queue_depth(settings))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer.run(stop)
    log.info("stopped consuming %s", queue_url)


def _queue_depth(settings: Settings) -> list[Collector]:
    """The queue-depth collector for the broker, or none (with a warning) for a broker it cannot read."""
    from producer.queue_depth import queue_depth_collector

    try:
        return [queue_depth_collector(settings.broker_url, [settings.queue])]
    except ValueError as exc:  # e.g. a sentinel:// URL, which redis.from_url does not take
        log.warning("queue depth is not collected for this broker URL: %s", exc)
        return []


@cli.command()
def backfill(
    bucket: Annotated[str, typer.Option(help="Bucket to list (must be in DEDUP_BUCKETS)")],
    prefix: Annotated[str, typer.Option(help="Only keys under this prefix")] = "",
    start_after: Annotated[str | None, typer.Option(help="Resume after this key")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="File that records progress, for resuming")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Objects enqueued per broker round")] = 500,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Enqueue every existing object under a bucket/prefix."""
    from producer.backfill import BackfillInterruptedError
    from producer.backfill import backfill as run_backfill
    from producer.enqueue import EnqueueError

    settings = _settings()
    if not settings.bucket_allowed(bucket):
        typer.echo(f"dedup-producer: {bucket!r} is not in {env_name('buckets')}; the worker would refuse it", err=True)
        raise typer.Exit(2)
    client = _client(settings)
    enqueuer = _enqueuer(settings, "backfill")
    try:
        sent = run_backfill(
            client,
            enqueuer,
            bucket,
            prefix=prefix,
            start_after=start_after,
            checkpoint=checkpoint,
            chunk_size=chunk_size,
            progress=progress,
        )
    except (BackfillInterruptedError, EnqueueError) as exc:
        typer.echo(f"dedup-producer: backfill stopped: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"enqueued {sent} objects from {bucket}/{prefix}")


@cli.command("dead-letters")
def dead_letters(
    requeue: Annotated[bool, typer.Option(help="Send them back to the queue (oldest first) and remove them")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many")] = 100,
) -> None:
    """Show (or re-send) messages the worker gave up on."""
    import redis

    from worker.delivery import DEAD_LETTERS_KEY
    from worker.messages import ObjectEvent

    settings = _settings()
    client = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    if not requeue:
        for shown in client.lrange(DEAD_LETTERS_KEY, 0, limit - 1):
            typer.echo(shown)
        return
    enqueuer = _enqueuer(settings, "dead-letters")
    sent = kept = 0
    # Oldest first: send, then remove that entry; a crash in between re-sends it later (harmless), never loses
    # it. A letter without a task (a producer's unreadable message) has nothing to re-send: it stays, shown.
    for entry in reversed(client.lrange(DEAD_LETTERS_KEY, 0, -1)):
        if sent == limit:
            break
        letter = json.loads(entry)
        if not letter.get("task"):
            kept += 1
            continue
        enqueuer.send([(letter["task"], ObjectEvent.from_kwargs(letter["kwargs"]))])
        client.lrem(DEAD_LETTERS_KEY, -1, str(entry))
        sent += 1
    unsendable = f"; kept {kept} that are no task (shown without --requeue)" if kept else ""
    typer.echo(f"re-sent {sent} messages{unsendable}")


def _client(settings: Settings) -> Minio:
    from worker.storage import make_client

    return make_client(
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key,
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


def _storage(settings: Settings) -> Storage:
    from worker.storage import Storage

    return Storage(_client(settings), max_bytes=settings.max_image_bytes)


def _index(settings: Settings) -> Index:
    from worker.index import Index, IndexSchemaError

    try:
        return Index.connect(
            settings.milvus_uri,
            collection=settings.collection,
            token=settings.milvus_token,
            dim=settings.embedding_dim,  # the workers' layout: they share DEDUP_MODEL_WEIGHTS
        )
    except IndexSchemaError as exc:
        typer.echo(f"dedup-producer: {exc}", err=True)
        raise typer.Exit(2) from None


def _reviewer(settings: Settings, index: Index) -> Reviewer:
    from worker.messages import PROCESS_TASK, ObjectEvent
    from worker.undo import Reviewer

    enqueuer = _enqueuer(settings, "review")

    def redecide(event: ObjectEvent) -> None:
        enqueuer.send([(PROCESS_TASK, event)])

    return Reviewer(settings, storage=_storage(settings), index=index, redecide=redecide)


@cli.command()
def review(
    host: Annotated[str | None, typer.Option(help="Bind address [default: DEDUP_REVIEW_HOST, 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: DEDUP_REVIEW_PORT, 8090]")] = None,
    export: Annotated[Path | None, typer.Option(help="Write static HTML pages and thumbnails here, then exit")] = None,
    bucket: Annotated[str, typer.Option(help="Export: only this bucket's duplicates")] = "",
    prefix: Annotated[str, typer.Option(help="Export: only keys under this prefix")] = "",
    kind: Annotated[str, typer.Option(help="Export: only exact, perceptual or semantic")] = "",
    min_score: Annotated[float | None, typer.Option(help="Export: lowest score")] = None,
    max_score: Annotated[float | None, typer.Option(help="Export: highest score")] = None,
) -> None:
    """Serve the review gallery (every duplicate beside its original, with Restore and Confirm), or export it."""
    from producer.gallery_app import create_review_app
    from producer.gallery_app import export as export_pages
    from producer.gallery_pages import BadFilterError, Filters
    from producer.thumbnails import Thumbnails

    settings = _settings()
    index = _index(settings)
    thumbnails = Thumbnails(settings, _storage(settings))
    if export is not None:
        params = {"bucket": bucket, "prefix": prefix, "kind": kind}
        params |= {k: str(v) for k, v in (("min_score", min_score), ("max_score", max_score)) if v is not None}
        try:
            filters = Filters.parse(params)
        except BadFilterError as exc:
            typer.echo(f"dedup-producer: {exc}", err=True)
            raise typer.Exit(2) from None
        pages = export_pages(export, index, thumbnails, filters)
        typer.echo(f"wrote {len(pages)} page(s): {pages[0].resolve()}")
        return
    if not settings.effective_review_token:
        typer.echo(
            f"dedup-producer: invalid configuration: {env_name('review_token')} (or {env_name('webhook_token')}): "
            "required, the gallery restores and reads people's pictures",
            err=True,
        )
        raise typer.Exit(2)
    import uvicorn

    app = create_review_app(settings, index=index, reviewer=_reviewer(settings, index), thumbnails=thumbnails)
    bind_host, bind_port = host or settings.review_host, port or settings.review_port
    log.info("review gallery on http://%s:%d/ (open it once with ?token=...)", bind_host, bind_port)
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=settings.log_level.lower(), access_log=False)


def _review_command(verdict: str, object_id: str) -> None:
    from worker.errors import TransientError
    from worker.object_ids import BadIdError, parse_id
    from worker.undo import NotReviewableError

    settings = _settings()
    try:  # before any connection: a bad id is refused even with the index or S3 down
        parse_id(object_id, allowed=settings.bucket_allowed)
    except BadIdError as exc:
        typer.echo(f"dedup-producer: {verdict} refused: not an id this service may touch: {exc}", err=True)
        raise typer.Exit(2) from None
    index = _index(settings)
    reviewer = _reviewer(settings, index)
    act = reviewer.restore if verdict == "restore" else reviewer.confirm
    try:
        done = act(object_id)
    except BadIdError as exc:
        typer.echo(f"dedup-producer: {verdict} refused: not an id this service may touch: {exc}", err=True)
        raise typer.Exit(2) from None
    except NotReviewableError as exc:
        typer.echo(f"dedup-producer: {verdict} refused: {exc}", err=True)
        raise typer.Exit(2) from None
    except TransientError as exc:
        typer.echo(f"dedup-producer: {verdict} interrupted ({exc}); run it again, it continues", err=True)
        raise typer.Exit(1) from None
    finally:
        index.close()
    typer.echo(f"{done.object}: {done.verdict} ({done.what})")


@cli.command()
def restore(object_id: Annotated[str, typer.Argument(metavar="BUCKET/KEY", help="The duplicate to put back")]) -> None:
    """Put a duplicate back where it was (the exact version moved, SHA-256 verified) as a reviewed original,
    and remember it is no duplicate. Idempotent: an interrupted run is finished by running it again."""
    _review_command("restore", object_id)


@cli.command()
def confirm(object_id: Annotated[str, typer.Argument(metavar="BUCKET/KEY", help="The duplicate")]) -> None:
    """Mark a duplicate as reviewed and right (dedup-reviewed=confirmed). Idempotent."""
    _review_command("confirm", object_id)


@cli.command("migrate-links")
def migrate_links(
    backup: Annotated[Path, typer.Option(help="Where the old links are kept until the new layout has them")] = Path(
        "links-backup.jsonl"
    ),
) -> None:
    """Move <collection>_links to the layout with kind, score and action (stop the workers first)."""
    from worker.migrate import migrate_links as migrate

    settings = _settings()
    moved = migrate(
        settings.milvus_uri,
        collection=settings.collection,
        token=settings.milvus_token,
        storage=_storage(settings),
        quarantine_bucket=settings.quarantine_bucket,
        backup=backup,
        dim=settings.embedding_dim,
    )
    typer.echo(f"{moved} links in the current layout" if moved else "the links collection is already current")


def main() -> None:
    cli(prog_name="dedup-producer")


if __name__ == "__main__":
    main()
