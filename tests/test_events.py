"""S3 notifications (MinIO, Ceph RGW, AWS): parsing, key decoding, which events count, and the task payload."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from producer.events import MalformedNotificationError, event_type, notification, parse_notification, task_for
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
    # AWS, and Ceph RGW as its docs show, name the same events without the s3: prefix
    assert task_for(name.removeprefix("s3:")) == task
    assert event_type(name.removeprefix("s3:")) == event_type(name) == name


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


# Other S3 servers ----------------------------------------------------------------------------------------------
#
# Each body below is the vendor's documented example, copied field for field; where a test needs a variant (a
# remove, an escaped key, a version) it changes only the fields it names.

# Ceph RGW, doc/radosgw/notifications.rst ("Events"), ceph/ceph main branch: eventName without "s3:" ("Note that
# eventName values do not start with the `s3:` prefix"), size as a string, versionId "" when unversioned, the
# extensions bucket.id, metadata, tags, eventId and opaqueData, and no top-level EventName/Key.
CEPH_PUT: dict[str, Any] = json.loads("""{"Records":[
    {
        "eventVersion":"2.1",
        "eventSource":"ceph:s3",
        "awsRegion":"zonegroup1",
        "eventTime":"2019-11-22T13:47:35.124724Z",
        "eventName":"ObjectCreated:Put",
        "userIdentity":{"principalId":"tester"},
        "requestParameters":{"sourceIPAddress":""},
        "responseElements":{
            "x-amz-request-id":"503a4c37-85eb-47cd-8681-2817e80b4281.5330.903595",
            "x-amz-id-2":"14d2-zone1-zonegroup1"
        },
        "s3":{
            "s3SchemaVersion":"1.0",
            "configurationId":"mynotif1",
            "bucket":{
                "name":"mybucket1",
                "ownerIdentity":{"principalId":"tester"},
                "arn":"arn:aws:s3:zonegroup1::mybucket1",
                "id":"503a4c37-85eb-47cd-8681-2817e80b4281.5332.38"
            },
            "object":{
                "key":"myimage1.jpg",
                "size":"1024",
                "eTag":"37b51d194a7513e45b56f6524f2d51f2",
                "versionId":"",
                "sequencer": "F7E6D75DC742D108",
                "metadata":[],
                "tags":[]
            }
        },
        "eventId":"",
        "opaqueData":"me@example.com"
    }
]}""")

# AWS S3, "Event message structure" (docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-
# structure.html): version 2.5 of the record, eventName without "s3:", the key URL-encoded ("red flower.jpg"
# arrives as "red+flower.jpg"), size a number, versionId and sequencer. The page gives the structure with
# placeholder text; the values here are ours.
AWS_PUT: dict[str, Any] = {
    "Records": [
        {
            "eventVersion": "2.5",
            "eventSource": "aws:s3",
            "awsRegion": "us-west-2",
            "eventTime": "1970-01-01T00:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZ"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "testConfigRule",
                "bucket": {
                    "name": "amzn-s3-demo-bucket",
                    "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                    "arn": "arn:aws:s3:::amzn-s3-demo-bucket",
                },
                "object": {
                    "key": "red+flower.jpg",
                    "size": 1024,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                    "sequencer": "0055AED6DCD90281E5",
                },
            },
        }
    ]
}


def variant(body: dict[str, Any], event_name: str | None = None, **obj: Any) -> bytes:
    """``body`` with its one record's eventName and object fields replaced (None removes a field)."""
    changed = copy.deepcopy(body)
    [record] = changed["Records"]
    if event_name is not None:
        record["eventName"] = event_name
    for field, value in obj.items():
        if value is None:
            record["s3"]["object"].pop(field, None)
        else:
            record["s3"]["object"][field] = value
    return json.dumps(changed).encode()


def test_a_ceph_put_becomes_a_process_event_with_its_string_size() -> None:
    [record] = parse_notification(json.dumps(CEPH_PUT).encode())
    assert (record.name, record.task) == ("s3:ObjectCreated:Put", PROCESS_TASK)
    assert record.event == ObjectEvent(
        bucket="mybucket1",
        key="myimage1.jpg",
        event_time_ms=1574430455124,  # microseconds in Ceph's eventTime, truncated
        etag="37b51d194a7513e45b56f6524f2d51f2",
        version_id=None,  # "" on an unversioned bucket
        size=1024,
    )


@pytest.mark.parametrize(
    ("event_name", "task"),
    [
        # Current Ceph docs: no s3: prefix. Earlier releases of the same page (the pubsub-module era) showed
        # "s3:ObjectCreated:Put": both spellings must work.
        ("ObjectCreated:Put", PROCESS_TASK),
        ("s3:ObjectCreated:Put", PROCESS_TASK),
        ("ObjectCreated:Post", PROCESS_TASK),
        ("ObjectCreated:Copy", PROCESS_TASK),
        ("ObjectCreated:CompleteMultipartUpload", PROCESS_TASK),
        ("ObjectRemoved:Delete", REMOVE_TASK),
        ("s3:ObjectRemoved:Delete", REMOVE_TASK),
        ("ObjectRemoved:DeleteMarkerCreated", REMOVE_TASK),
        # Ceph extensions (doc/radosgw/s3-notification-compatibility.rst): docs/s3-servers.md subscribes only to
        # ObjectCreated and ObjectRemoved, and anything else that arrives is ignored.
        ("ObjectLifecycle:Expiration:Current", None),
        ("ObjectLifecycle:Transition:Current", None),
    ],
)
def test_ceph_event_names_with_or_without_the_prefix(event_name: str, task: str | None) -> None:
    [record] = parse_notification(variant(CEPH_PUT, event_name))
    assert record.task == task
    assert record.name.startswith("s3:")


def test_a_ceph_remove_of_a_version_keeps_the_version() -> None:
    # Ceph docs: "When a delete marker is created, it includes the version of the delete marker."
    body = variant(CEPH_PUT, "ObjectRemoved:DeleteMarkerCreated", versionId="Xh8KcNLZfq1.ceph-v1", size="0")
    [record] = parse_notification(body)
    assert record.task == REMOVE_TASK
    assert (record.event.key, record.event.version_id, record.event.size) == ("myimage1.jpg", "Xh8KcNLZfq1.ceph-v1", 0)


@pytest.mark.parametrize("key", ["holiday 2024/a+b.jpg", "caf%C3%A9.jpg", "ünï/çødé 📷.png"])
def test_a_ceph_key_is_taken_as_sent(key: str) -> None:
    # Ceph sends the key as stored ("s3.object.key: The object key"): decoding it as MinIO's would turn a
    # stored "+" into a space and "%C3%A9" into "é" — another object.
    [record] = parse_notification(variant(CEPH_PUT, key=key))
    assert record.event.key == key


@pytest.mark.parametrize("size", ["", "12.5", "-1", "１２", True, None, [1]])
def test_a_size_that_is_no_byte_count_is_dropped(size: object) -> None:
    [record] = parse_notification(variant(CEPH_PUT, size=size))
    assert record.event.size is None
    assert record.task == PROCESS_TASK  # the size is advisory: the event still counts


def test_an_aws_2_5_put_becomes_a_process_event_with_the_decoded_key() -> None:
    [record] = parse_notification(json.dumps(AWS_PUT).encode())
    assert (record.name, record.task) == ("s3:ObjectCreated:Put", PROCESS_TASK)
    assert record.event == ObjectEvent(
        bucket="amzn-s3-demo-bucket",
        key="red flower.jpg",
        event_time_ms=0,
        etag="d41d8cd98f00b204e9800998ecf8427e",
        version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
        size=1024,
    )


def test_an_aws_remove_of_a_version_without_size_or_etag() -> None:
    body = variant(AWS_PUT, "ObjectRemoved:Delete", key="photos%2F2024%2Fa+b.jpg", size=None, eTag=None)
    [record] = parse_notification(body)
    assert record.task == REMOVE_TASK
    assert record.event.key == "photos/2024/a b.jpg"
    assert record.event.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert (record.event.size, record.event.etag) == (None, None)


# MinIO (minio/minio internal/event/event.go, cmd/event-notification.go): remove events carry no size, eTag or
# contentType; on a versioned bucket they carry the versionId (of the removed version, or of the delete marker).
def test_a_minio_remove_of_a_version_with_a_key_that_needs_decoding() -> None:
    document = json.loads(MINIO_PUT)
    document["EventName"] = document["Records"][0]["eventName"] = "s3:ObjectRemoved:DeleteMarkerCreated"
    obj = document["Records"][0]["s3"]["object"]
    for field in ("size", "eTag", "contentType", "userMetadata"):
        del obj[field]
    obj["versionId"] = "d6ac1f8e-5d6e-4bd8-a4c7-7e6a1a2f7c3e"
    [record] = parse_notification(json.dumps(document).encode())
    assert record.task == REMOVE_TASK
    assert record.event == ObjectEvent(
        bucket="photos",
        key="holiday 2024/café+1.jpg",
        event_time_ms=1732359306123,
        version_id="d6ac1f8e-5d6e-4bd8-a4c7-7e6a1a2f7c3e",
    )


def test_a_minio_put_of_a_version_keeps_the_version() -> None:
    document = json.loads(MINIO_PUT)
    document["Records"][0]["s3"]["object"]["versionId"] = "0b9b1c4e-1f6e-4d57-9d5e-8b3b1a2c3d4e"
    [record] = parse_notification(json.dumps(document).encode())
    assert (record.task, record.event.version_id) == (PROCESS_TASK, "0b9b1c4e-1f6e-4d57-9d5e-8b3b1a2c3d4e")
