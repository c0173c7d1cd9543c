"""MinIO notifications: parsing, key decoding, which events count, and the task payload."""

from __future__ import annotations

import json

import pytest

from producer.events import MalformedNotificationError, notification, parse_notification, task_for
from worker.messages import PROCESS_TASK, REMOVE_TASK, ObjectEvent, split_id

# A notification as MinIO sends it (captured shape: minio/minio internal/event/event.go).
MINIO_PUT = b"""{
  "EventName": "s3:ObjectCreated:Put",
  "Key": "photos/holiday 2024/caf\xc3\xa9+1.jpg",
  "Records": [{
    "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
    "eventTime": "2024-11-23T10:55:06.123Z",
    "eventName": "s3:ObjectCreated:Put",
    "userIdentity": {"principalId": "minioadmin"},
    "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "172.18.0.1"},
    "responseElements": {"x-amz-id-2": "dd9025bab4ad464b", "x-amz-request-id": "1797D5D1A0A8A7B5"},
    "s3": {
      "s3SchemaVersion": "1.0", "configurationId": "Config",
      "bucket": {"name": "photos", "ownerIdentity": {"principalId": "minioadmin"}, "arn": "arn:aws:s3:::photos"},
      "object": {"key": "holiday+2024%2Fcaf%C3%A9%2B1.jpg", "size": 35042,
                 "eTag": "3f23fe8690d92e25000fc77ddb0d2f52", "contentType": "image/jpeg",
                 "userMetadata": {"content-type": "image/jpeg"}, "sequencer": "1797D5D1A0F3C1C8"}
    },
    "source": {"host": "172.18.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}
  }]
}"""


PUT_RECORD = notification("s3:ObjectCreated:Put", "b", "k", event_time_ms=1)["Records"][0]


def test_a_minio_put_becomes_a_process_event_with_the_decoded_key() -> None:
    [record] = parse_notification(MINIO_PUT)
    assert record.task == PROCESS_TASK
    assert record.event == ObjectEvent(
        bucket="photos",
        key="holiday 2024/café+1.jpg",
        event_time_ms=1732359306123,
        etag="3f23fe8690d92e25000fc77ddb0d2f52",
        size=35042,
    )


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("s3:ObjectCreated:Put", PROCESS_TASK),
        ("s3:ObjectCreated:Post", PROCESS_TASK),
        ("s3:ObjectCreated:Copy", PROCESS_TASK),
        ("s3:ObjectCreated:CompleteMultipartUpload", PROCESS_TASK),
        ("s3:ObjectRemoved:Delete", REMOVE_TASK),
        ("s3:ObjectRemoved:DeleteMarkerCreated", REMOVE_TASK),
        ("s3:ObjectCreated:PutTagging", None),  # fired by our own tagging: must not loop
        ("s3:ObjectCreated:DeleteTagging", None),
        ("s3:ObjectCreated:PutRetention", None),
        ("s3:ObjectCreated:PutLegalHold", None),
        ("s3:ObjectAccessed:Get", None),  # fired by our own downloads
    ],
)
def test_only_new_content_and_removals_become_tasks(name: str, task: str | None) -> None:
    assert task_for(name) == task


def test_several_records_and_a_remove_without_size_or_etag() -> None:
    put = notification("s3:ObjectCreated:Put", "photos", "a.jpg", event_time_ms=1_000, etag="e", size=3)
    removed = notification("s3:ObjectRemoved:Delete", "photos", "b c.jpg", event_time_ms=2_000)
    body = json.dumps({"Records": put["Records"] + removed["Records"]}).encode()
    first, second = parse_notification(body)
    assert (first.task, first.event.key, first.event.etag) == (PROCESS_TASK, "a.jpg", "e")
    assert (second.task, second.event.key, second.event.etag, second.event.size) == (REMOVE_TASK, "b c.jpg", None, None)


@pytest.mark.parametrize("key", ["plain.jpg", "a b/c+d%e&f.jpg", "ünï/çødé 📷.png", "x" * 1000])
def test_the_builder_and_the_parser_agree(key: str) -> None:
    body = notification("s3:ObjectCreated:Put", "photos", key, event_time_ms=1732359306123, etag="e", size=1)
    [record] = parse_notification(json.dumps(body).encode())
    assert record.event == ObjectEvent("photos", key, 1732359306123, etag="e", size=1)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"records": []}',
        b'{"Records": "x"}',
        b'{"Records": [{}]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
        json.dumps({"Records": [{**PUT_RECORD, "eventTime": "yesterday"}]}).encode(),
    ],
)
def test_a_body_that_is_not_a_notification_is_rejected(body: bytes) -> None:
    with pytest.raises(MalformedNotificationError):
        parse_notification(body)


def test_payload_round_trip_ignores_unknown_fields() -> None:
    event = ObjectEvent("photos", "a/b.jpg", 5, etag="e", version_id="v1", size=9)
    assert ObjectEvent.from_kwargs({**event.to_kwargs(), "added_in_a_later_version": 1}) == event
    assert event.to_kwargs() == {
        "bucket": "photos",
        "key": "a/b.jpg",
        "event_time_ms": 5,
        "etag": "e",
        "version_id": "v1",
        "size": 9,
    }
    assert split_id("photos/a/b.jpg") == ("photos", "a/b.jpg")
