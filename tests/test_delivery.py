"""Delivery guarantees with real processes: a killed worker's messages come back; a failed quarantine copy
never deletes its source and ends dead-lettered, from where it can be re-sent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deployment import deploy
from tests.helpers import BUCKET
from tooling.localstack import LocalStack, wait_until
from tooling.samples import Expect, Sample, jpeg, photo, upload_set
from worker.config import Action
from worker.decision import Status
from worker.delivery import DEAD_LETTERS_KEY
from worker.outcome import Outcome

pytestmark = pytest.mark.integration


def test_messages_of_a_killed_worker_come_back_and_finish_once(stack: LocalStack, tmp_path: Path, prefix: str) -> None:
    # A long batch wait holds every message unacknowledged in the worker while we kill it.
    env = {
        "DEDUP_BATCH_SIZE": "64",
        "DEDUP_BATCH_WAIT_MS": "4000",
        "DEDUP_TASK_TIMEOUT_S": "5",
        "DEDUP_RETRY_BACKOFF_MAX_S": "1",
        "DEDUP_VISIBILITY_TIMEOUT_S": "11",
    }
    with deploy(stack, tmp_path, db=3, env=env) as d:
        # Decodable images only: a corrupt one finishes (as an error) before it ever waits for a batch.
        samples = [s for s in upload_set(prefix, ["moon.png"], ["page.png"]) if s.expect.status != "error"]
        events = d.upload(samples)
        d.deliver(events)
        redis = stack.redis(d.db)
        wait_until(lambda: redis.hlen("unacked") == len(events), 10, "every message delivered to the worker")
        d.worker.kill()  # SIGKILL: no warm shutdown, nothing acknowledged
        assert redis.hlen("unacked") == len(events)
        assert all(d.actions.recorded(e) is None for e in events)

        restarted = stack.start_worker("worker-3-again", {**d.worker_env, "DEDUP_BATCH_WAIT_MS": "50"})
        try:
            outcomes = d.outcomes(events, timeout=90)
            for sample in samples:
                assert outcomes[sample.key].status == sample.expect.status, sample.key
            d.wait_for_metric('dedup_images_total{job="worker"}', len(events))  # each counted once
            time.sleep(2)  # nothing comes back a second time
            assert d.drained()
            assert d.query('dedup_images_total{job="worker"}') == len(events)
        finally:
            stack.stop_service(restarted)


def test_a_failed_quarantine_copy_never_deletes_the_source_and_is_dead_lettered(
    stack: LocalStack, tmp_path: Path, prefix: str
) -> None:
    fast_give_up = {"DEDUP_MAX_RETRIES": "1", "DEDUP_RETRY_BACKOFF_MAX_S": "1"}
    with deploy(stack, tmp_path, db=4, action=Action.QUARANTINE, env=fast_give_up) as d:
        original_bytes, copy_bytes = jpeg(photo("coins.png")), jpeg(photo("coins.png"), 60)
        original, copy = d.upload(
            [
                Sample(f"{prefix}coins.jpg", original_bytes, "image/jpeg", Expect("unique")),
                Sample(f"{prefix}coins-again.jpg", copy_bytes, "image/jpeg", Expect("duplicate")),
            ]
        )
        d.deliver([original])
        assert d.outcomes([original])[original.key] == Outcome.unique()

        d.storage.client.remove_bucket(bucket_name=d.quarantine_bucket)  # the copy can only fail now
        d.deliver([copy])
        outcome = d.outcomes([copy])[copy.key]
        assert (outcome.status, outcome.reason) == (Status.ERROR, "retries_exhausted")
        assert d.storage.fetch(BUCKET, copy.key).data == copy_bytes, "the source must still be there, intact"
        [letter] = [json.loads(x) for x in stack.redis(d.db).lrange(DEAD_LETTERS_KEY, 0, -1)]
        assert (letter["task"], letter["kwargs"]["key"]) == ("dedup.process", copy.key)
        assert letter["reason"] == "retries_exhausted"
        d.wait_for_metric('dedup_dead_letters_total{job="worker"}', 1)
        assert d.query('dedup_retries_total{job="worker",reason="s3"}') >= 1

        # Once the operator fixes the bucket, the dead letter is re-sent and finishes the job.
        d.storage.ensure_bucket(d.quarantine_bucket)
        requeue = subprocess.run(
            [sys.executable, "-m", "producer", "dead-letters", "--requeue"],
            env=stack.env(DEDUP_BROKER_URL=stack.broker(d.db)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert requeue.returncode == 0, requeue.stderr
        assert "re-sent 1 messages" in requeue.stdout
        wait_until(lambda: d.storage.stat(BUCKET, copy.key) is None, 60, "the duplicate to be quarantined")
        moved = d.storage.fetch(d.quarantine_bucket, f"{BUCKET}/{copy.key}")
        assert moved.data == copy_bytes
        assert stack.redis(d.db).llen(DEAD_LETTERS_KEY) == 0
