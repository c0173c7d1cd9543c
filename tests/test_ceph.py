"""End to end with a real Ceph RADOS Gateway: RGW posts its own bucket notifications to the webhook (the shared
secret in the URL path: RGW cannot send an Authorization header), the worker reads the objects and writes their
tags through RGW's S3 API. Nothing here builds a notification: every event is one RGW sent.

Needs the Debian packages ``ceph-mon ceph-mgr ceph-osd radosgw ceph-common`` (:mod:`tooling.ceph`); without
them the test fails. Redis is the session's (``stack``), database 18.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tooling.ceph import CephGateway
from tooling.localstack import WEBHOOK_TOKEN, LocalStack, Service, free_port, wait_until
from tooling.samples import jpeg, photo, resized
from worker.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.ceph]

BUCKET = "rgw-photos"
DB = 18  # this module's Redis database: no other test uses it
STATUS = "dedup-status"


@dataclass
class RgwDeployment:
    gateway: CephGateway
    webhook: Service
    worker: Service
    webhook_metrics: int  # ports of their /metrics
    worker_metrics: int

    @property
    def storage(self) -> Storage:
        return self.gateway.storage()

    def metric(self, port: int, name: str, **labels: str) -> float:
        """The sum of a metric's samples with these labels, scraped from ``/metrics`` on ``port``."""
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def webhook_answers(self) -> dict[str, float]:
        """The webhook's answers so far, by HTTP status."""
        text = httpx.get(f"http://127.0.0.1:{self.webhook_metrics}/metrics", timeout=10).text
        return {
            sample.labels["code"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "dedup_webhook_requests_total"
        }

    def decided(self, key: str, timeout: float = 120) -> dict[str, str]:
        """The object's tags once the worker has written its ``dedup-status``."""
        tags: dict[str, str] = {}

        def tagged() -> bool:
            tags.clear()
            tags.update(self.storage.get_tags(BUCKET, key))
            return STATUS in tags

        self.wait(tagged, timeout, f"a {STATUS} tag on {key!r}")
        return dict(tags)

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for ``check``; fail at once when the webhook refuses a notification (RGW does not send it again)."""

        def done() -> bool:
            refused = {code: n for code, n in self.webhook_answers().items() if code != "200" and n}
            if refused:
                raise AssertionError(f"the webhook refused RGW's notifications: {refused}\n{self.diagnosis()}")
            return check()

        try:
            wait_until(done, timeout, what, interval=0.3)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """What RGW sent and what became of it, for a failure message."""
        return (
            f"webhook answers by status: {self.webhook_answers()}\n"
            f"--- webhook log ---\n{self.webhook.log_tail(20)}\n"
            f"--- worker log ---\n{self.worker.log_tail(40)}\n"
            f"--- radosgw's notification errors ---\n{self.push_errors()}"
        )

    def push_errors(self) -> str:
        lines = self.gateway.daemon_log("client.rgw.a", 5000).splitlines()
        return "\n".join([line for line in lines if "push to endpoint" in line or "notification" in line][-10:])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephGateway]:
    with CephGateway(tmp_path_factory.mktemp("ceph")) as running:
        yield running


@pytest.fixture(scope="module")
def rgw(gateway: CephGateway, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwDeployment]:
    root: Path = tmp_path_factory.mktemp("rgw-service")
    common = {
        "DEDUP_BROKER_URL": stack.broker(DB),
        "DEDUP_S3_ENDPOINT": gateway.endpoint,
        "DEDUP_S3_ACCESS_KEY": gateway.access_key,
        "DEDUP_S3_SECRET_KEY": gateway.secret_key,
        "DEDUP_S3_REGION": gateway.region,
        "DEDUP_BUCKETS": BUCKET,
    }
    worker_env = {
        **common,
        "DEDUP_MODEL_WEIGHTS": "random",
        "DEDUP_MILVUS_URI": str(root / "milvus.db"),
        "DEDUP_BATCH_WAIT_MS": "50",
    }
    webhook_metrics, worker_metrics = free_port(), free_port()
    webhook, events_url = stack.start_webhook(common, metrics_port=webhook_metrics)
    started = [webhook]
    try:
        gateway.notify(BUCKET, f"{events_url}/{WEBHOOK_TOKEN}")
        worker = stack.start_worker("worker-ceph", {**worker_env, "DEDUP_METRICS_PORT": str(worker_metrics)})
        started.append(worker)
        yield RgwDeployment(gateway, webhook, worker, webhook_metrics, worker_metrics)
    finally:
        for service in reversed(started):
            stack.stop_service(service)


def test_rgw_notifications_get_an_upload_and_its_copy_tagged(rgw: RgwDeployment) -> None:
    # RGW sends keys as stored (no escaping): a space and a '+' must reach the worker unchanged.
    original_key, copy_key = "rgw/holiday photo+1.jpg", "rgw/copy of it+small.jpg"
    picture = photo("retina.jpg")
    answers_before = rgw.webhook_answers()
    enqueued_before = rgw.metric(rgw.webhook_metrics, "dedup_events_enqueued_total", task="process")

    rgw.storage.put(BUCKET, original_key, jpeg(picture), "image/jpeg")
    tags = rgw.decided(original_key)
    assert tags[STATUS] == "unique", tags
    assert "dedup-of" not in tags
    rgw.storage.put(BUCKET, copy_key, jpeg(resized(picture)), "image/jpeg")
    tags = rgw.decided(copy_key)
    assert tags[STATUS] == "duplicate", tags
    assert tags["dedup-of"] == f"{BUCKET}/{original_key}"

    # One notification per upload, each accepted (tagging the objects sent none).
    answers = rgw.webhook_answers()
    assert answers == {**answers_before, "200": answers_before.get("200", 0) + 2}, rgw.diagnosis()
    assert rgw.metric(rgw.webhook_metrics, "dedup_events_enqueued_total", task="process") == enqueued_before + 2


def test_a_single_delete_reaches_the_worker_as_object_removed(rgw: RgwDeployment) -> None:
    key = "rgw/to be removed+1.jpg"
    removed_before = rgw.metric(rgw.worker_metrics, "dedup_removed_total")
    enqueued_before = rgw.metric(rgw.webhook_metrics, "dedup_events_enqueued_total", task="remove")
    rgw.storage.put(BUCKET, key, jpeg(photo("cell.png")), "image/jpeg")
    rgw.decided(key)  # in the index now

    rgw.storage.remove(BUCKET, key)  # one DeleteObject: radosgw 16.2 aborts on DeleteObjects with notifications
    rgw.wait(
        lambda: rgw.metric(rgw.worker_metrics, "dedup_removed_total") == removed_before + 1,
        60,
        "the worker to forget the removed object",
    )
    assert rgw.metric(rgw.webhook_metrics, "dedup_events_enqueued_total", task="remove") == enqueued_before + 1
