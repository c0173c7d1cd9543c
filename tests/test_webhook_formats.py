"""The webhook over HTTP takes other S3 servers' notification bodies (Ceph RGW, AWS records), not only MinIO's:
the documented bodies from tests/test_events.py, posted to the app with a stand-in for the broker."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.testclient import TestClient

from producer.enqueue import Enqueuer
from producer.webhook import EVENTS_PATH, create_webhook
from tests.test_events import AWS_PUT, CEPH_PUT, MINIO_PUT, variant
from worker.config import Settings
from worker.messages import PROCESS_TASK, REMOVE_TASK, ObjectEvent

TOKEN = "webhook-formats-token"


class RecordingEnqueuer(Enqueuer):
    """Keeps what would go to the broker."""

    def __init__(self) -> None:
        self.source = "webhook"
        self.sent: list[tuple[str, ObjectEvent]] = []

    def send(self, tasks: Sequence[tuple[str, ObjectEvent]]) -> int:
        self.sent.extend(tasks)
        return len(tasks)


def post(body: bytes) -> tuple[int, list[tuple[str, ObjectEvent]]]:
    enqueuer = RecordingEnqueuer()
    settings = Settings(webhook_token=TOKEN, buckets=("photos", "mybucket1", "amzn-s3-demo-bucket"))
    with TestClient(create_webhook(settings, enqueuer)) as client:
        response = client.post(EVENTS_PATH, content=body, headers={"Authorization": f"Bearer {TOKEN}"})
    return response.status_code, enqueuer.sent


def test_a_ceph_rgw_put_is_enqueued() -> None:
    code, sent = post(json.dumps(CEPH_PUT).encode())
    assert code == 200
    assert [(task, event.bucket, event.key, event.size) for task, event in sent] == [
        (PROCESS_TASK, "mybucket1", "myimage1.jpg", 1024)
    ]


def test_a_ceph_rgw_remove_with_the_prefix_is_enqueued() -> None:
    code, sent = post(variant(CEPH_PUT, "s3:ObjectRemoved:Delete", size=None, eTag=None))
    assert code == 200
    assert [(task, event.key) for task, event in sent] == [(REMOVE_TASK, "myimage1.jpg")]


def test_an_aws_2_5_record_is_enqueued_with_its_decoded_key() -> None:
    code, sent = post(json.dumps(AWS_PUT).encode())
    assert code == 200
    assert [(task, event.key, event.version_id) for task, event in sent] == [
        (PROCESS_TASK, "red flower.jpg", "096fKKXTRTtl3on89fVO.nfljtsv6qko")
    ]


def test_minio_bodies_still_work() -> None:
    code, sent = post(MINIO_PUT)
    assert code == 200
    assert [(task, event.key) for task, event in sent] == [(PROCESS_TASK, "holiday 2024/café+1.jpg")]
