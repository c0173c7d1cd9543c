"""AWS S3 → SQS (directly, or through SNS) → ``python -m producer sqs`` → the broker → the worker.

moto's server plays AWS: its S3 sends the notifications to its SQS and SNS, and its SNS to SQS, as AWS does.
The consumer talks to it through the real boto3 client; the broker is the session's redis-server, and the end
to end test runs ``celery -A worker worker`` against moto's S3 until the copy is tagged.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from prometheus_client import REGISTRY

from producer.enqueue import EnqueueError, Enqueuer
from producer.sqs import SqsConsumer, region_of
from tooling.localstack import LocalStack, free_port, wait_until
from tooling.samples import jpeg, photo, resized
from worker.celery_app import create_app
from worker.config import load_settings
from worker.delivery import DEAD_LETTERS_KEY, park
from worker.messages import PROCESS_TASK, REMOVE_TASK
from worker.storage import Storage, make_client

pytestmark = pytest.mark.integration

DB = 16  # the in-process consumer's broker database
E2E_DB = 17  # the end-to-end deployment's
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto takes any
EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


@pytest.fixture(scope="module")
def aws(stack: LocalStack) -> Iterator[str]:
    """moto's server: S3, SQS and SNS on one endpoint."""
    service, url = stack.start_aws()
    yield url
    stack.stop_service(service)


def client(aws: str, name: str) -> Any:
    return boto3.client(name, endpoint_url=aws, region_name=REGION, **CREDENTIALS)


def new_queue(aws: str, name: str, visibility_s: int = 30) -> tuple[str, str]:
    """A queue's URL and ARN."""
    sqs = client(aws, "sqs")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility_s)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def notify_queue(aws: str, bucket: str, queue_arn: str) -> None:
    """S3 → SQS: the bucket's notifications go straight to the queue (S3 sends an s3:TestEvent first)."""
    s3 = client(aws, "s3")
    s3.create_bucket(Bucket=bucket)
    config = {"QueueConfigurations": [{"QueueArn": queue_arn, "Events": EVENTS}]}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def notify_through_sns(aws: str, bucket: str, queue_arn: str) -> None:
    """S3 → SNS → SQS: the bucket notifies a topic, and the queue subscribes to it (envelopes, not raw)."""
    sns = client(aws, "sns")
    topic = sns.create_topic(Name=f"{bucket}-events")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    s3 = client(aws, "s3")
    s3.create_bucket(Bucket=bucket)
    config = {"TopicConfigurations": [{"TopicArn": topic, "Events": EVENTS}]}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def in_queue(aws: str, url: str) -> int:
    """Messages in the queue, visible or being handled (received, not yet deleted)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = client(aws, "sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def consumer(
    stack: LocalStack, aws: str, queue_url: str, *, buckets: str = "photos,albums", broker_url: str | None = None
) -> SqsConsumer:
    settings = load_settings(broker_url=broker_url or stack.broker(DB), buckets=buckets)
    enqueuer = Enqueuer(create_app(settings, include_tasks=False), queue=settings.queue, source="sqs")
    return SqsConsumer(
        client(aws, "sqs"),
        queue_url,
        enqueuer,
        bucket_allowed=settings.bucket_allowed,
        park=lambda letter: park(stack.redis(DB), letter),
        wait_s=1,
    )


def queued(stack: LocalStack) -> list[tuple[str, str, str]]:
    """``(task, bucket, key)`` of every message on the broker's queue, oldest first, as Celery wrote them."""
    tasks = []
    for raw in reversed(stack.redis(DB).lrange("dedup", 0, -1)):
        message = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        tasks.append((message["headers"]["task"], kwargs["bucket"], kwargs["key"]))
    return tasks


def settled(outcome: str) -> float:
    return REGISTRY.get_sample_value("dedup_sqs_messages_total", {"outcome": outcome}) or 0.0


def test_the_region_comes_from_an_aws_queue_url_and_none_from_another() -> None:
    assert region_of("https://sqs.eu-west-1.amazonaws.com/123456789012/photos") == "eu-west-1"
    assert region_of("https://eu-central-1.queue.amazonaws.com/123456789012/photos") == "eu-central-1"
    assert region_of("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/photos") == "cn-north-1"
    assert region_of("http://127.0.0.1:4566/000000000000/photos") is None


def test_notifications_straight_and_through_sns_become_tasks_and_leave_the_queue(stack: LocalStack, aws: str) -> None:
    stack.redis(DB).flushdb()
    url, arn = new_queue(aws, "straight-and-sns")
    notify_queue(aws, "photos", arn)
    notify_through_sns(aws, "albums", arn)
    s3 = client(aws, "s3")
    s3.put_object(Bucket="photos", Key="2024/a b+c.jpg", Body=b"not decoded here")
    s3.put_object(Bucket="albums", Key="x.jpg", Body=b"nor here")
    s3.delete_object(Bucket="photos", Key="2024/a b+c.jpg")
    before = {outcome: settled(outcome) for outcome in ("enqueued", "test_event", "dead_lettered")}

    sqs = consumer(stack, aws, url)
    wait_until(lambda: sqs.poll() == 0 and in_queue(aws, url) == 0, 30, "the queue to be emptied")

    assert sorted(queued(stack)) == [
        (PROCESS_TASK, "albums", "x.jpg"),
        (PROCESS_TASK, "photos", "2024/a b+c.jpg"),
        (REMOVE_TASK, "photos", "2024/a b+c.jpg"),
    ]
    assert settled("test_event") - before["test_event"] == 2  # one for each bucket's configuration
    assert settled("enqueued") - before["enqueued"] == 3
    assert settled("dead_lettered") == before["dead_lettered"]
    stack.redis(DB).flushdb()


def test_a_poison_message_is_parked_once_and_not_received_again(stack: LocalStack, aws: str) -> None:
    stack.redis(DB).flushdb()
    url, _ = new_queue(aws, "poison", visibility_s=1)
    sqs_client = client(aws, "sqs")
    sqs_client.send_message(QueueUrl=url, MessageBody="{not json")
    sqs_client.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [{"eventName": 5}]}))
    sqs_client.send_message(QueueUrl=url, MessageBody=json.dumps({"Type": "Notification", "Message": 7}))

    sqs = consumer(stack, aws, url)
    wait_until(lambda: sqs.poll() == 0 and in_queue(aws, url) == 0, 30, "the queue to be emptied")
    time.sleep(1.5)  # past the visibility timeout: a message received but not deleted would be back by now
    assert sqs.poll() == 0
    assert in_queue(aws, url) == 0

    letters = [json.loads(entry) for entry in stack.redis(DB).lrange(DEAD_LETTERS_KEY, 0, -1)]
    assert sorted(letter["body"] for letter in letters) == sorted(
        ["{not json", json.dumps({"Records": [{"eventName": 5}]}), json.dumps({"Type": "Notification", "Message": 7})]
    )
    assert {(letter["source"], letter["reason"]) for letter in letters} == {("sqs", "malformed_notification")}
    assert stack.redis(DB).llen("dedup") == 0

    # They are shown, and kept when the task letters are re-sent: they are no task.
    env = stack.env(DEDUP_BROKER_URL=stack.broker(DB))
    run = [sys.executable, "-m", "producer", "dead-letters"]
    shown = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert shown.stdout.count('"source": "sqs"') == 3
    requeued = subprocess.run([*run, "--requeue"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "re-sent 0 messages; kept 3" in requeued.stdout
    assert stack.redis(DB).llen(DEAD_LETTERS_KEY) == 3
    stack.redis(DB).flushdb()


def test_with_the_broker_down_a_message_stays_in_the_queue(stack: LocalStack, aws: str) -> None:
    url, arn = new_queue(aws, "broker-down", visibility_s=1)
    notify_queue(aws, "photos-down", arn)
    client(aws, "sqs").purge_queue(QueueUrl=url)  # the test event
    client(aws, "s3").put_object(Bucket="photos-down", Key="kept.jpg", Body=b"x")
    down = consumer(stack, aws, url, buckets="photos-down", broker_url=f"redis://127.0.0.1:{free_port()}/0")

    with pytest.raises(EnqueueError):
        wait_until(lambda: down.poll() > 0, 30, "the message")
    time.sleep(1.5)  # past the visibility timeout
    received = client(aws, "sqs").receive_message(
        QueueUrl=url, WaitTimeSeconds=2, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )
    [message] = received["Messages"]
    assert "kept.jpg" in message["Body"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"


def test_an_upload_to_s3_is_tagged_through_sqs_by_the_worker(stack: LocalStack, aws: str, tmp_path: Path) -> None:
    url, arn = new_queue(aws, "end-to-end")
    notify_queue(aws, "photos-e2e", arn)
    s3_endpoint = aws.removeprefix("http://")
    common = {
        "DEDUP_BROKER_URL": stack.broker(E2E_DB),
        "DEDUP_BUCKETS": "photos-e2e",
        "DEDUP_S3_ENDPOINT": s3_endpoint,
        "DEDUP_S3_ACCESS_KEY": CREDENTIALS["aws_access_key_id"],
        "DEDUP_S3_SECRET_KEY": CREDENTIALS["aws_secret_access_key"],
    }
    metrics_port = free_port()
    aws_env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    producer = stack.start_sqs_consumer(
        url, {**common, **aws_env, "DEDUP_SQS_WAIT_S": "2", "DEDUP_METRICS_PORT": str(metrics_port)}, endpoint_url=aws
    )
    worker = stack.start_worker(
        "worker-sqs",
        {
            **common,
            "DEDUP_MODEL_WEIGHTS": "random",
            "DEDUP_MILVUS_URI": str(tmp_path / "milvus.db"),
            "DEDUP_BATCH_WAIT_MS": "50",
        },
    )
    try:
        storage = Storage(make_client(s3_endpoint, "testing", "testing"), max_bytes=1 << 30)
        original = jpeg(photo("chelsea.png"))
        storage.put("photos-e2e", "cats/chelsea.jpg", original, "image/jpeg")
        wait_until(lambda: status(storage, "cats/chelsea.jpg") == "unique", 120, "the original's tags", interval=0.5)
        storage.put("photos-e2e", "cats/chelsea small.jpg", jpeg(resized(photo("chelsea.png"))), "image/jpeg")
        wait_until(lambda: status(storage, "cats/chelsea small.jpg") != "", 120, "the copy's tags", interval=0.5)

        tags = storage.get_tags("photos-e2e", "cats/chelsea small.jpg")
        assert tags["dedup-status"] == "duplicate", worker.log_tail()
        assert tags["dedup-of"] == "photos-e2e/cats/chelsea.jpg"
        assert in_queue(aws, url) == 0
        page = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'dedup_sqs_messages_total{outcome="test_event"} 1.0' in page
        assert 'dedup_sqs_messages_total{outcome="enqueued"} 2.0' in page
        assert 'dedup_events_enqueued_total{source="sqs",task="process"} 2.0' in page
    finally:
        stack.stop_service(worker)
        started = time.monotonic()
        assert stack.stop_service(producer) == 0  # SIGTERM: the poll under way ends, then the process
        assert time.monotonic() - started < 15


def status(storage: Storage, key: str) -> str:
    return storage.get_tags("photos-e2e", key).get("dedup-status", "")
