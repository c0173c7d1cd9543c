"""S3 bucket notifications → the events the worker acts on. Pure: no I/O.

Every S3 server that notifies over HTTP posts the same standard ``{"Records": [...]}`` shape, with differences
this module absorbs (docs/s3-servers.md "Accepted notification formats"):

* **MinIO** (``"eventSource": "minio:s3"``) adds a top-level ``EventName`` and ``Key``; the record's object key
  is **query-escaped** (space → ``+``, ``/`` → ``%2F``), which :func:`urllib.parse.unquote_plus` undoes.
* **AWS S3** (``"aws:s3"``, ``eventVersion`` up to 2.5) names events without the ``s3:`` prefix
  (``ObjectCreated:Put``) and URL-encodes the key the same way.
* **Ceph RGW** (``"ceph:s3"``) names events with or without ``s3:`` depending on the release, sends ``size`` as
  a string, sends the key as stored (not escaped), and has no top-level ``EventName``/``Key``.

Only new content and removals matter:

* ``s3:ObjectCreated:Put``, ``:Post``, ``:Copy``, ``:CompleteMultipartUpload`` → ``dedup.process``
* ``s3:ObjectRemoved:*`` → ``dedup.remove``
* everything else — notably ``s3:ObjectCreated:PutTagging``, which our own tagging fires — is ignored, or the
  service would loop on itself.

    >>> [r.task for r in parse_notification(body)]
    ['dedup.process']
    >>> event_type("ObjectCreated:Put")
    's3:ObjectCreated:Put'
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
EVENT_PREFIX = "s3:"
# MinIO (internal/event/event.go) and AWS ("Event message structure": "The object key name value is URL
# encoded") escape the record's object key; Ceph RGW sends it as stored (doc/radosgw/notifications.rst:
# "s3.object.key: The object key"). A record from any other source is read as AWS specifies.
UNESCAPED_KEY_SOURCES = frozenset({"ceph:s3"})


class MalformedNotificationError(ValueError):
    """The body is not an S3 notification; the webhook answers 400."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # the eventName with its s3: prefix, e.g. s3:ObjectCreated:Put
    task: str | None  # the task it becomes, or None when ignored
    event: ObjectEvent


def event_type(event_name: str) -> str:
    """An eventName as MinIO spells it: AWS and some Ceph releases leave out the ``s3:`` prefix."""
    return event_name if event_name.startswith(EVENT_PREFIX) else EVENT_PREFIX + event_name


def task_for(event_name: str) -> str | None:
    """The task an event type (with or without ``s3:``) becomes, or None for events we ignore."""
    name = event_type(event_name)
    if name in CREATED:
        return PROCESS_TASK
    if name.startswith(REMOVED_PREFIX):
        return REMOVE_TASK
    return None


def parse_notification(body: bytes) -> list[Record]:
    """Every record of a notification body. Raises :class:`MalformedNotificationError`."""
    document = _json(body)
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise MalformedNotificationError("expected an object with a 'Records' list")
    return [_record(raw, i) for i, raw in enumerate(document["Records"])]


def unwrap_queued(body: str) -> bytes | None:
    """The S3 notification inside an SQS message body: the body itself (S3 → SQS, or SNS with raw message
    delivery), or the ``Message`` of an SNS envelope (S3 → SNS → SQS). None for ``s3:TestEvent``, which S3 sends
    when a notification configuration is saved. Raises :class:`MalformedNotificationError`.

        >>> unwrap_queued('{"Type": "Notification", "Message": "{\\"Records\\": []}"}')
        b'{"Records": []}'
    """
    document = _json(body.encode())
    if isinstance(document, dict) and document.get("Type") == "Notification":
        if not isinstance(document.get("Message"), str):
            raise MalformedNotificationError("an SNS envelope without a Message string")
        body = document["Message"]
        document = _json(body.encode())
    if isinstance(document, dict) and document.get("Event") == "s3:TestEvent":
        return None
    return body.encode()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedNotificationError(f"not JSON: {exc}") from None


def _record(raw: Any, i: int) -> Record:
    where = f"Records[{i}]"
    name = event_type(_get(raw, str, where, "eventName"))
    bucket = _get(raw, str, where, "s3", "bucket", "name")
    key = _key(_get(raw, str, where, "s3", "object", "key"), raw.get("eventSource"))
    if not bucket or not key:
        raise MalformedNotificationError(f"{where}: empty bucket or key")
    when = _get(raw, str, where, "eventTime")
    try:
        event_time_ms = int(datetime.fromisoformat(when).timestamp() * 1000)
    except ValueError:
        raise MalformedNotificationError(f"{where}.eventTime: not an RFC 3339 time: {when!r}") from None
    obj = raw["s3"]["object"]
    event = ObjectEvent(
        bucket=bucket,
        key=key,
        event_time_ms=event_time_ms,
        etag=(obj.get("eTag") or None) if isinstance(obj.get("eTag"), str) else None,
        version_id=(obj.get("versionId") or None) if isinstance(obj.get("versionId"), str) else None,
        size=_size(obj.get("size")),
    )
    return Record(name, task_for(name), event)


def _key(raw_key: str, source: object) -> str:
    """The object key as stored: unescaped for the servers that escape it, as sent for Ceph RGW."""
    return raw_key if source in UNESCAPED_KEY_SOURCES else unquote_plus(raw_key)


def _size(value: object) -> int | None:
    """A size in bytes, sent as a number (MinIO, AWS) or a string of digits (Ceph RGW); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


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
