"""AWS S3 event notifications from an SQS queue → tasks on the broker.

AWS S3 never calls a webhook: it notifies SQS, SNS, Lambda or EventBridge. Point the bucket's notifications at
an SQS queue (directly, or at an SNS topic the queue subscribes to) and run::

    python -m producer sqs --queue https://sqs.eu-west-1.amazonaws.com/123456789012/photos-events

Each :meth:`SqsConsumer.poll` long-polls up to ten messages and settles each one:

=================================  ==========================================================================
message                            what happens
=================================  ==========================================================================
S3 notification (or SNS envelope)  its tasks are enqueued (:meth:`Enqueuer.send_records`), *then* the message
                                   is deleted: a crash in between only enqueues it again (tasks are idempotent)
``s3:TestEvent``                   deleted (S3 sends one when a notification configuration is saved)
not a notification (poison)        parked in the dead-letter list (``python -m producer dead-letters`` shows
                                   it), then deleted: never received again and again
broker unreachable                 left in the queue: SQS shows it again after the queue's visibility timeout
=================================  ==========================================================================

    >>> consumer = SqsConsumer(boto3.client("sqs"), url, enqueuer, bucket_allowed=settings.bucket_allowed,
    ...                        park=lambda letter: park(redis_client, letter))
    >>> consumer.poll()  # messages received
    3
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from producer import metrics
from producer.enqueue import EnqueueError, Enqueuer
from producer.events import MalformedNotificationError, parse_notification, unwrap_queued

log = logging.getLogger(__name__)

#: The most messages one ReceiveMessage (and one DeleteMessageBatch) takes.
BATCH = 10
#: Seconds the consumer waits after a failed receive or an unreachable broker before it polls again.
PAUSE_S = 5.0

# https://sqs.eu-west-1.amazonaws.com/123456789012/q, and the legacy https://eu-west-1.queue.amazonaws.com/...
_REGION_IN_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


def region_of(queue_url: str) -> str | None:
    """The AWS region an SQS queue URL names, or None (e.g. a local endpoint's URL).

    >>> region_of("https://sqs.eu-west-1.amazonaws.com/123456789012/photos-events")
    'eu-west-1'
    """
    match = _REGION_IN_HOST.match(urlsplit(queue_url).hostname or "")
    return (match.group(1) or match.group(2)) if match else None


class SqsConsumer:
    """Long-polls one queue; ``client`` is a boto3 SQS client, ``park`` puts an unreadable message's letter
    in the dead-letter list (and raises if it cannot, so the message is kept)."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        enqueuer: Enqueuer,
        *,
        bucket_allowed: Callable[[str], bool],
        park: Callable[[dict[str, Any]], None],
        wait_s: int = 20,
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.enqueuer = enqueuer
        self.bucket_allowed = bucket_allowed
        self.park = park
        self.wait_s = wait_s
        metrics.initialise_sqs()

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set (the CLI sets it on SIGTERM/SIGINT; the poll under way finishes first).
        A failed receive or an unreachable broker pauses :data:`PAUSE_S` seconds and polls again."""
        log.info("consuming S3 notifications from %s", self.queue_url)
        while not stop.is_set():
            try:
                self.poll()
            except EnqueueError as exc:
                log.error("broker unreachable, the messages stay in the queue: %s", exc)
                stop.wait(PAUSE_S)
            except Exception as exc:  # botocore's errors, whatever they are: report, pause, go on
                metrics.SQS_RECEIVE_FAILURES.inc()
                log.error("receiving from %s failed: %s: %s", self.queue_url, type(exc).__name__, exc)
                stop.wait(PAUSE_S)

    def poll(self) -> int:
        """Receive up to :data:`BATCH` messages, settle each, delete those settled; returns how many came.
        Raises :class:`EnqueueError` (after deleting those settled before it) when the broker is unreachable."""
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=self.wait_s
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        settled: list[dict[str, Any]] = []
        try:
            for message in messages:
                outcome = self._settle(message)
                metrics.SQS_MESSAGES.labels(outcome=outcome).inc()
                settled.append(message)
        finally:
            self._delete(settled)
        return len(messages)

    def _settle(self, message: dict[str, Any]) -> str:
        """Enqueue, skip or park one message; returns the outcome. Raises :class:`EnqueueError`."""
        body = str(message.get("Body", ""))
        try:
            notification = unwrap_queued(body)
            if notification is None:
                return "test_event"
            self.enqueuer.send_records(parse_notification(notification), self.bucket_allowed)
            return "enqueued"
        except EnqueueError:
            raise
        except Exception as exc:  # anything this message makes us fail on makes it poison
            reason = "malformed_notification" if isinstance(exc, MalformedNotificationError) else "failed"
            self._park(message, reason, f"{type(exc).__name__}: {exc}")
            return "dead_lettered"

    def _park(self, message: dict[str, Any], reason: str, detail: str) -> None:
        letter = {
            "source": "sqs",
            "queue": self.queue_url,
            "message_id": message.get("MessageId"),
            "body": message.get("Body"),
            "reason": reason,
            "detail": detail,
        }
        try:
            self.park(letter)
        except Exception as exc:
            raise EnqueueError(f"could not park message {message.get('MessageId')}: {exc}") from exc
        log.warning("parked SQS message %s in the dead letters (%s): %s", message.get("MessageId"), reason, detail)

    def _delete(self, messages: Sequence[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        response = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        for failure in response.get("Failed", []):  # it comes back after the visibility timeout: enqueued again
            log.warning("could not delete SQS message %s: %s", failure.get("Id"), failure.get("Message"))
