"""The Celery task adapter: a retry that cannot be published must not drop the message."""

from __future__ import annotations

from typing import Any, NoReturn

import pytest
from celery.exceptions import Reject

from worker.tasks import _retry


class BrokerRefusesRetries:
    """What Celery's Task.retry does when publishing the retry fails (celery/app/task.py)."""

    def retry(self, **_: Any) -> NoReturn:
        raise Reject(ConnectionError("OOM command not allowed"), requeue=False)


def test_a_retry_that_cannot_be_published_requeues_the_message_instead_of_dropping_it() -> None:
    with pytest.raises(Reject) as caught:
        _retry(BrokerRefusesRetries(), TimeoutError("s3"), 1.0)
    assert caught.value.requeue is True


def test_celery_never_gives_up_before_our_own_retry_limit() -> None:
    # Celery's default of 3 would re-raise at the fourth retry and acknowledge the message as failed: lost.
    # The outage test in test_faults.py retries well past it.
    from worker.tasks import process_object, remove_object

    assert process_object.max_retries is None
    assert remove_object.max_retries is None
