"""The webhook S3 servers (MinIO, Ceph RGW, anything posting standard S3 event records) post notifications to.

=============================  ==============================================================================
``POST /minio/events``         a notification; ``Authorization: Bearer <token>`` with a token of
                               ``DEDUP_WEBHOOK_TOKEN``. 200 once every task is on the broker; 401 bad/missing token;
                               400 not a notification; 413 body over ``DEDUP_WEBHOOK_MAX_BODY_BYTES``; 503 broker
                               down (MinIO retries anything but 2xx, so nothing is lost).
``POST /minio/events/TOKEN``   the same, with the token in the path, for senders that cannot set a header (Ceph
                               RGW's HTTP push endpoint). The access log shows ``/minio/events/<redacted>``.
``GET /healthz``               200 while the process serves.
``GET /readyz``                200 when the broker answers a ping, else 503.
=============================  ==============================================================================

``DEDUP_WEBHOOK_TOKEN`` may list several tokens, comma-separated, all accepted (rotation: add the new one,
move the senders to it, drop the old one). Every comparison is constant-time and runs over every token.

Configure MinIO with ``mc admin config set ALIAS notify_webhook:dedup endpoint=http://HOST:8080/minio/events
auth_token=TOKEN queue_dir=/data/events`` and ``mc event add ALIAS/BUCKET arn:minio:sqs::dedup:webhook
--event put,delete``; Ceph RGW with a topic whose ``push-endpoint`` is ``https://HOST/minio/events/TOKEN``.
"""

from __future__ import annotations

import copy
import hmac
import logging
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.config import LOGGING_CONFIG

from producer import metrics
from producer.enqueue import EnqueueError, Enqueuer
from producer.events import MalformedNotificationError, parse_notification
from worker.config import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/minio/events"
REDACTED = "<redacted>"


class _BodyTooLargeError(Exception):
    pass


def create_webhook(settings: Settings, enqueuer: Enqueuer) -> Starlette:
    tokens = [token.encode() for token in settings.webhook_tokens]

    def answer(code: int, body: dict[str, object]) -> JSONResponse:
        metrics.WEBHOOK_REQUESTS.labels(code=str(code)).inc()
        return JSONResponse(body, status_code=code)

    def authorized(request: Request) -> bool:
        if not tokens:
            return settings.webhook_allow_unauthenticated
        if "token" in request.path_params:
            return accepted(str(request.path_params["token"]), tokens)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and accepted(given.strip(), tokens)

    async def events(request: Request) -> JSONResponse:
        if not authorized(request):
            return answer(401, {"error": "missing or wrong token"})
        try:
            body = await _read_limited(request, settings.webhook_max_body_bytes)
            records = parse_notification(body)
        except _BodyTooLargeError:
            return answer(413, {"error": f"body over {settings.webhook_max_body_bytes} bytes"})
        except MalformedNotificationError as exc:
            return answer(400, {"error": str(exc)})

        try:
            sent = await run_in_threadpool(enqueuer.send_records, records, settings.bucket_allowed)
        except EnqueueError as exc:
            log.error("could not enqueue the tasks of %d records: %s", len(records), exc)
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
            Route(EVENTS_PATH + "/{token:path}", events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


def accepted(given: str, tokens: Sequence[bytes]) -> bool:
    """Whether ``given`` is one of ``tokens``, compared in constant time with each of them (no early exit, so
    the time taken says nothing about which token, or how much of one, matched)."""
    given_bytes = given.encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token)
    return found


class RedactTokens(logging.Filter):
    """Hides the token of ``POST /minio/events/TOKEN`` in uvicorn's access log, whose arguments are
    ``(client, method, path, http version, status)``: see :func:`redacted_log_config`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redacted_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with :class:`RedactTokens` on its access log handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    config["handlers"]["access"].setdefault("filters", []).append("redact_tokens")
    return config


def redact(path: str) -> str:
    """``/minio/events/TOKEN?query`` → ``/minio/events/<redacted>``; any other path as it is."""
    if path.startswith(EVENTS_PATH + "/"):
        return f"{EVENTS_PATH}/{REDACTED}"
    return path


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
