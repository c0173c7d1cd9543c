"""MinIO bucket notifications → the events the worker acts on. Pure: no I/O.

MinIO posts ``{"EventName": ..., "Key": ..., "Records": [...]}``; each record names the event, the bucket and
the object key, **query-escaped** (space → ``+``, ``/`` → ``%2F``), which :func:`urllib.parse.unquote_plus`
undoes. Only new content and removals matter:

* ``s3:ObjectCreated:Put``, ``:Post``, ``:Copy``, ``:CompleteMultipartUpload`` → ``dedup.process``
* ``s3:ObjectRemoved:*`` → ``dedup.remove``
* everything else — notably ``s3:ObjectCreated:PutTagging``, which our own tagging fires — is ignored, or the
  service would loop on itself.

    >>> [r.task for r in parse_notification(body)]
    ['dedup.process']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from worker.messages import PROCESS_TASK, REMOVE_TASK, ObjectEvent

CREATED = frozenset(
    {
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    }
)
REMOVED_PREFIX = "s3:ObjectRemoved:"


class MalformedNotificationError(ValueError):
    """The body is not a MinIO/S3 notification; the webhook answers 400."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # the eventName, e.g. s3:ObjectCreated:Put
    task: str | None  # the task it becomes, or None when ignored
    event: ObjectEvent


def task_for(event_name: str) -> str | None:
    """The task an event type becomes, or None for events we ignore."""
    if event_name in CREATED:
        return PROCESS_TASK
    if event_name.startswith(REMOVED_PREFIX):
        return REMOVE_TASK
    return None


def parse_notification(body: bytes) -> list[Record]:
    """Every record of a notification body. Raises :class:`MalformedNotificationError`."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedNotificationError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise MalformedNotificationError("expected an object with a 'Records' list")
    return [_record(raw, i) for i, raw in enumerate(document["Records"])]


def _record(raw: Any, i: int) -> Record:
    where = f"Records[{i}]"
    name = _get(raw, str, where, "eventName")
    bucket = _get(raw, str, where, "s3", "bucket", "name")
    key = unquote_plus(_get(raw, str, where, "s3", "object", "key"))
    if not bucket or not key:
        raise MalformedNotificationError(f"{where}: empty bucket or key")
    when = _get(raw, str, where, "eventTime")
    try:
        event_time_ms = int(datetime.fromisoformat(when).timestamp() * 1000)
    except ValueError:
        raise MalformedNotificationError(f"{where}.eventTime: not an RFC 3339 time: {when!r}") from None
    obj = raw["s3"]["object"]
    size = obj.get("size")
    event = ObjectEvent(
        bucket=bucket,
        key=key,
        event_time_ms=event_time_ms,
        etag=(obj.get("eTag") or None) if isinstance(obj.get("eTag"), str) else None,
        version_id=(obj.get("versionId") or None) if isinstance(obj.get("versionId"), str) else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )
    return Record(name, task_for(name), event)


def _get(raw: Any, kind: type, where: str, *path: str) -> Any:
    value = raw
    for i, part in enumerate(path):
        if not isinstance(value, dict) or part not in value:
            raise MalformedNotificationError(f"{where}: missing {'.'.join(path[: i + 1])}")
        value = value[part]
    if not isinstance(value, kind):
        raise MalformedNotificationError(f"{where}.{'.'.join(path)}: expected {kind.__name__}")
    return value


def notification(
    event_name: str,
    bucket: str,
    key: str,
    *,
    event_time_ms: int,
    etag: str | None = None,
    size: int | None = None,
    version_id: str | None = None,
) -> dict[str, Any]:
    """A one-record notification shaped as MinIO sends it (key query-escaped). For the demo, benchmark and
    tests, which upload to an S3 server that does not notify by itself."""
    when = datetime.fromtimestamp(event_time_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    obj: dict[str, Any] = {"key": quote_plus(key, safe=""), "sequencer": f"{event_time_ms:016X}"}
    if etag is not None:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "EventName": event_name,
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": when.replace("+00:00", "Z"),
                "eventName": event_name,
                "userIdentity": {"principalId": "minioadmin"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "minioadmin"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": obj,
                },
            }
        ],
    }
