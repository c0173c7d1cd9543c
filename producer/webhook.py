"""The webhook S3 servers (MinIO, Ceph RGW, anything posting standard S3 event records) post notifications to.

=========================  ==================================================================================
``POST /minio/events``     a notification; ``Authorization: Bearer <DEDUP_WEBHOOK_TOKEN>`` (constant-time
                           compare). 200 once every task is on the broker; 401 bad/missing token; 400 not a
                           notification; 413 body over ``DEDUP_WEBHOOK_MAX_BODY_BYTES``; 503 broker down (MinIO
                           retries anything but 2xx, so nothing is lost).
``GET /healthz``           200 while the process serves.
``GET /readyz``            200 when the broker answers a ping, else 503.
=========================  ==================================================================================

Configure MinIO with ``mc admin config set ALIAS notify_webhook:dedup endpoint=http://HOST:8080/minio/events
auth_token=TOKEN queue_dir=/data/events`` and ``mc event add ALIAS/BUCKET arn:minio:sqs::dedup:webhook
--event put,delete``.
"""

from __future__ import annotations

import hmac
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer import metrics
from producer.enqueue import EnqueueError, Enqueuer
from producer.events import MalformedNotificationError, parse_notification
from worker.config import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/minio/events"


class _BodyTooLargeError(Exception):
    pass


def create_webhook(settings: Settings, enqueuer: Enqueuer) -> Starlette:
    token = settings.webhook_token.encode()

    def answer(code: int, body: dict[str, object]) -> JSONResponse:
        metrics.WEBHOOK_REQUESTS.labels(code=str(code)).inc()
        return JSONResponse(body, status_code=code)

    def authorized(request: Request) -> bool:
        if not token:
            return settings.webhook_allow_unauthenticated
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)

    async def events(request: Request) -> JSONResponse:
        if not authorized(request):
            return answer(401, {"error": "missing or wrong bearer token"})
        try:
            body = await _read_limited(request, settings.webhook_max_body_bytes)
            records = parse_notification(body)
        except _BodyTooLargeError:
            return answer(413, {"error": f"body over {settings.webhook_max_body_bytes} bytes"})
        except MalformedNotificationError as exc:
            return answer(400, {"error": str(exc)})

        metrics.RECEIVED.labels(source="webhook").inc(len(records))
        tasks = []
        for record in records:
            if record.task is None:
                metrics.IGNORED.labels(reason="event_type").inc()
            elif not settings.bucket_allowed(record.event.bucket):
                metrics.IGNORED.labels(reason="bucket_not_allowed").inc()
                log.info("ignored %s on %s: bucket not in DEDUP_BUCKETS", record.name, record.event.id)
            else:
                tasks.append((record.task, record.event))
        try:
            sent = await run_in_threadpool(enqueuer.send, tasks)
        except EnqueueError as exc:
            log.error("could not enqueue %d tasks: %s", len(tasks), exc)
            return answer(503, {"error": "broker unavailable, retry later"})
        return answer(200, {"enqueued": sent, "ignored": len(records) - sent})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        try:
            await run_in_threadpool(_ping, enqueuer)
        except Exception as exc:
            return JSONResponse({"status": "broker unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route(EVENTS_PATH, events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLargeError
    return bytes(body)


def _ping(enqueuer: Enqueuer) -> None:
    with enqueuer.app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
