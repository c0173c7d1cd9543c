"""A running service for end-to-end tests: webhook + ``celery -A worker worker`` + Prometheus, on the session's
redis-server and S3 server. Each deployment has its own Redis database, Milvus Lite file and quarantine
bucket, so deployments never take each other's messages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from producer.events import notification
from tests.helpers import BUCKET, next_time_ms
from tooling.localstack import WEBHOOK_TOKEN, LocalStack, Service, free_port, wait_until
from tooling.samples import Sample
from worker.actions import Actions
from worker.config import Action
from worker.messages import ObjectEvent
from worker.outcome import Outcome
from worker.storage import Storage

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@dataclass
class Deployment:
    stack: LocalStack
    db: int
    action: Action
    quarantine_bucket: str
    events_url: str
    webhook: Service
    workers: list[Service]
    worker_env: dict[str, str]
    prometheus_url: str
    metrics: dict[str, list[str]] = field(default_factory=dict)  # job → [host:port, ...]

    @property
    def worker(self) -> Service:
        return self.workers[0]

    @property
    def storage(self) -> Storage:
        return self.stack.storage()

    @property
    def actions(self) -> Actions:
        return Actions(self.storage, self.action, quarantine_bucket=self.quarantine_bucket)

    # Driving it -----------------------------------------------------------------------------------------------

    def post(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.events_url, content=content, headers=AUTH if headers is None else headers, timeout=30)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectEvent:
        """Upload one object; returns its event, not yet delivered."""
        etag = self.storage.put(BUCKET, key, data, content_type)
        return ObjectEvent(BUCKET, key, next_time_ms(), etag=etag, size=len(data))

    def upload(self, samples: Sequence[Sample]) -> list[ObjectEvent]:
        return [self.put(sample.key, sample.data, sample.content_type) for sample in samples]

    def upload_bytes(self, objects: Mapping[str, bytes]) -> list[ObjectEvent]:
        """Upload ``{key: data}``; returns their events, not yet delivered."""
        return [self.put(key, data) for key, data in objects.items()]

    def deliver(self, events: Sequence[ObjectEvent], name: str = "s3:ObjectCreated:Put") -> None:
        """One notification per object, as MinIO sends them; each must be accepted."""
        for e in events:
            body = notification(name, e.bucket, e.key, event_time_ms=e.event_time_ms, etag=e.etag, size=e.size)
            response = self.post(body)
            assert response.status_code == 200, response.text

    def outcomes(self, events: Sequence[ObjectEvent], timeout: float = 180) -> dict[str, Outcome]:
        """Every object's final outcome: once the queue has drained (work sent back for a new decision is
        enqueued before the message that caused it is acknowledged) and every object has one."""
        seen: dict[str, Outcome] = {}

        def settled() -> bool:
            if not self.drained():
                return False
            seen.clear()
            for event in events:
                if (outcome := self.actions.recorded(event)) is not None:
                    seen[event.key] = outcome
            return len(seen) == len(events) and self.drained()

        try:
            wait_until(settled, timeout, f"{len(events)} outcomes", interval=0.3)
        except TimeoutError as exc:
            log = self.worker.log_tail(80)
            raise AssertionError(f"{exc}; have {sorted(seen)}\n--- worker log ---\n{log}") from None
        return dict(seen)

    def drained(self) -> bool:
        return self.stack.queue_drained(db=self.db)

    # Observing it ---------------------------------------------------------------------------------------------

    def query(self, expr: str) -> float:
        """An instant PromQL query summed to one number (0 when it returns nothing)."""
        return sum(float(sample["value"][1]) for sample in self.samples(expr))

    def samples(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query's result: ``[{"metric": {labels}, "value": [time, "value"]}, ...]``."""
        response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
        payload = response.json()
        assert payload["status"] == "success", f"{expr}: {payload}"  # a 400 (bad expression) says "error"
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    def wait_for_metric(self, expr: str, expected: float, timeout: float = 30, *, at_least: bool = False) -> None:
        """Wait until ``expr`` equals ``expected`` (or reaches it, with ``at_least``)."""

        def reached() -> bool:
            value = self.query(expr)
            return value >= expected if at_least else value == expected

        try:
            wait_until(reached, timeout, f"{expr} == {expected}", interval=0.5)
        except TimeoutError:
            raise AssertionError(f"{expr}: {self.query(expr)}, expected {expected}") from None

    def scraped(self) -> None:
        """Wait for Prometheus to have scraped both jobs at least once since now."""
        since = time.time()
        wait_until(lambda: self._last_scrape() > since, 30, "a fresh scrape of every target", interval=0.3)

    def _last_scrape(self) -> float:
        """When Prometheus last found every target up (0: some target is down or not scraped yet)."""
        response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": "up"}, timeout=10)
        result = response.json()["data"]["result"]
        targets = sum(len(hosts) for hosts in self.metrics.values())
        if len(result) < targets or any(sample["value"][1] != "1" for sample in result):
            return 0.0
        return min(float(sample["value"][0]) for sample in result)


@contextmanager
def deploy(
    stack: LocalStack,
    root: Path,
    *,
    db: int,
    action: Action = Action.TAG,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    rule_files: Sequence[Path] = (),
) -> Iterator[Deployment]:
    """Webhook + ``workers`` Celery workers + Prometheus. Several workers need a shared Milvus: pass
    ``DEDUP_MILVUS_URI`` (e.g. from :meth:`LocalStack.start_milvus`) in ``env``."""
    quarantine = f"quarantine-{db}"
    worker_ports, webhook_port = [free_port() for _ in range(workers)], free_port()
    common = {"DEDUP_BROKER_URL": stack.broker(db), "DEDUP_QUARANTINE_BUCKET": quarantine}
    worker_env = {
        **common,
        "DEDUP_ACTION": action.value,
        "DEDUP_MODEL_WEIGHTS": "random",
        "DEDUP_MILVUS_URI": str(root / "milvus.db"),
        "DEDUP_BATCH_SIZE": "8",
        "DEDUP_BATCH_WAIT_MS": "50",
        **(env or {}),
    }
    webhook, events_url = stack.start_webhook(common, metrics_port=webhook_port)
    started = [
        stack.start_worker(f"worker-{db}-{n}", {**worker_env, "DEDUP_METRICS_PORT": str(port)})
        for n, port in enumerate(worker_ports)
    ]
    targets = {"worker": [f"127.0.0.1:{port}" for port in worker_ports], "webhook": [f"127.0.0.1:{webhook_port}"]}
    prometheus, prometheus_url = stack.start_prometheus(targets, rule_files=rule_files)
    worker_env["DEDUP_METRICS_PORT"] = str(worker_ports[0])
    deployment = Deployment(
        stack, db, action, quarantine, events_url, webhook, started, worker_env, prometheus_url, targets
    )
    try:
        deployment.scraped()
        yield deployment
    finally:
        for service in (prometheus, *started, webhook):
            stack.stop_service(service)
