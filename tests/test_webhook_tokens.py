"""The webhook's shared secret: as a bearer token (MinIO) or in the URL's path (Ceph RGW, which cannot set a
header), several at once for rotation, and never in a log line or on the metrics page."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from starlette.testclient import TestClient

from producer.events import notification
from producer.webhook import EVENTS_PATH, accepted, create_webhook, redact
from tests.test_webhook_formats import RecordingEnqueuer
from tooling.localstack import LocalStack, free_port
from worker.config import Settings, load_settings

OLD, NEW = "old-secret-4f1c9a", "new-secret-77d0e2"
GUESS = "new-secret-77d0e3"  # one character off


def put(bucket: str = "photos") -> bytes:
    return json.dumps(notification("s3:ObjectCreated:Put", bucket, "a.jpg", event_time_ms=1)).encode()


def webhook(tokens: str) -> TestClient:
    settings = Settings(webhook_token=tokens, buckets=("photos",))
    return TestClient(create_webhook(settings, RecordingEnqueuer()))


def test_every_listed_token_is_accepted_in_the_path_or_as_bearer_and_nothing_else() -> None:
    with webhook(f"{OLD}, {NEW}") as client:
        for token in (OLD, NEW):
            assert client.post(f"{EVENTS_PATH}/{token}", content=put()).status_code == 200
            assert (
                client.post(EVENTS_PATH, content=put(), headers={"Authorization": f"Bearer {token}"}).status_code == 200
            )
        for path in (
            f"{EVENTS_PATH}/{GUESS}",
            f"{EVENTS_PATH}/",
            f"{EVENTS_PATH}/{OLD},{NEW}",
            f"{EVENTS_PATH}/x/{NEW}",
        ):
            assert client.post(path, content=put()).status_code == 401, path
        assert client.post(EVENTS_PATH, content=put()).status_code == 401
        # A path token is the whole credential for that request: a good header does not rescue a bad path.
        headers = {"Authorization": f"Bearer {NEW}"}
        assert client.post(f"{EVENTS_PATH}/{GUESS}", content=put(), headers=headers).status_code == 401


def test_a_token_with_reserved_characters_works_percent_encoded_in_the_path() -> None:
    token = "a/b+c=d"
    with webhook(token) as client:
        assert client.post(f"{EVENTS_PATH}/a%2Fb%2Bc%3Dd", content=put()).status_code == 200


def test_the_comparison_takes_every_token() -> None:
    tokens = [OLD.encode(), NEW.encode()]
    assert accepted(OLD, tokens)
    assert accepted(NEW, tokens)
    assert not accepted(GUESS, tokens)
    assert not accepted("", tokens)
    assert not accepted(OLD, [])


def test_the_review_gallery_falls_back_to_the_first_webhook_token() -> None:
    assert load_settings(webhook_token=f" {NEW} ,{OLD}").effective_review_token == NEW
    assert load_settings(webhook_token=f"{NEW},{OLD}").webhook_tokens == (NEW, OLD)
    assert load_settings(webhook_token=" , ").webhook_tokens == ()


def test_paths_are_redacted_past_the_events_path_only() -> None:
    assert redact(f"{EVENTS_PATH}/{NEW}") == f"{EVENTS_PATH}/<redacted>"
    assert redact(f"{EVENTS_PATH}/{NEW}?x=1") == f"{EVENTS_PATH}/<redacted>"
    assert redact(EVENTS_PATH) == EVENTS_PATH
    assert redact("/healthz") == "/healthz"


@pytest.mark.integration
def test_no_token_reaches_a_log_line_or_the_metrics_page(stack: LocalStack) -> None:
    metrics_port = free_port()
    env = {"DEDUP_WEBHOOK_TOKEN": f"{OLD},{NEW}", "DEDUP_LOG_LEVEL": "DEBUG", "DEDUP_BROKER_URL": stack.broker(15)}
    service, url = stack.start_webhook(env, metrics_port=metrics_port)
    try:
        elsewhere = put("elsewhere")  # a bucket not watched: accepted, nothing enqueued
        codes = [httpx.post(f"{url}/{token}", content=elsewhere, timeout=10).status_code for token in (OLD, NEW, GUESS)]
        bearer = httpx.post(url, content=elsewhere, headers={"Authorization": f"Bearer {GUESS}"}, timeout=10)
        assert [*codes, bearer.status_code] == [200, 200, 401, 401]
        page = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        time.sleep(0.5)  # the access log is written after the answer
    finally:
        stack.stop_service(service)

    log = service.log_text()
    assert log.count(f'"POST {EVENTS_PATH}/<redacted> HTTP/1.1" 200') == 2, log
    assert log.count(f'"POST {EVENTS_PATH}/<redacted> HTTP/1.1" 401') == 1, log
    for secret in (OLD, NEW, GUESS):
        assert secret not in log
        assert secret not in page
    assert 'dedup_webhook_requests_total{code="401"} 2.0' in page
