"""Hostile and odd object ids at every door that takes one: the review gallery's routes (a live
``python -m producer review`` on the real S3 server and Milvus Lite) and the ``restore`` / ``confirm`` commands.
Each must answer a clear 4xx (the commands: a message and exit 2), never a server error, and serve nothing from
outside ``DEDUP_BUCKETS``.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.helpers import BUCKET
from tooling.localstack import LocalStack, Service, free_port, http_ok
from tooling.samples import jpeg, photo
from worker.object_ids import BadIdError, NotAllowedIdError, parse_id

pytestmark = pytest.mark.integration

TOKEN = "hostile-ids-token"
QUARANTINE = "quarantine-hostile"
PRIVATE = "private"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
LONG_KEY = "k" * 1990 + ".jpg"

#: Ids people and scripts have sent, or that the S3 client or the index refuse.
HOSTILE = [
    f"{BUCKET}/../{PRIVATE}/x.jpg",
    f"{BUCKET}/./x.jpg",
    f"{BUCKET}/a/../../{PRIVATE}/x.jpg",
    f"{BUCKET}/..",
    f"{BUCKET}/.",
    f"{BUCKET}//x.jpg",
    f"{BUCKET}/x.jpg/",
    f"{BUCKET}/",
    f"{BUCKET}",
    "",
    "/",
    f"/{BUCKET}/x.jpg",
    f"{BUCKET}/x\x00.jpg",
    f"{BUCKET}/x\n.jpg",
    f"{BUCKET}/x\x7f.jpg",
    f"{BUCKET}/{LONG_KEY}",
    f"{BUCKET}/%2e%2e/{PRIVATE}/x.jpg",
    f"{BUCKET}/%2E%2E%2F{PRIVATE}%2Fx.jpg",
    f"{BUCKET}/..%2F{PRIVATE}/x.jpg",
    f"{BUCKET}%2F..%2F{PRIVATE}/x.jpg",
    f"{PRIVATE}/x.jpg",
    f"{QUARANTINE}/{BUCKET}/x.jpg",
    f"{QUARANTINE}/{BUCKET}/secret.jpg",
    f'{BUCKET}/x" or id != "',
    f"{BUCKET}/x\\.jpg",
    f"{BUCKET}/\u202ex.jpg",
]


@pytest.mark.parametrize(
    ("object_id", "reason"),
    [
        (f"{BUCKET}/../{PRIVATE}/x.jpg", "'.' or '..' segments"),
        (f"{BUCKET}/a/./b.jpg", "'.' or '..' segments"),
        (f"{BUCKET}//x.jpg", "empty segments"),
        (f"{BUCKET}/x.jpg/", "empty segments"),
        (f"{BUCKET}/", "expected BUCKET/KEY"),
        ("nothing", "expected BUCKET/KEY"),
        (f"{BUCKET}/x\x00.jpg", "control characters"),
        (f"{BUCKET}/{LONG_KEY}", "at most 1024 bytes"),
        (f"{BUCKET}/\ud800.jpg", "not valid Unicode"),
    ],
)
def test_parse_id_refuses_malformed_ids_and_says_why(object_id: str, reason: str) -> None:
    with pytest.raises(BadIdError, match=reason) as refused:
        parse_id(object_id, allowed=lambda _: True)
    assert not isinstance(refused.value, NotAllowedIdError)
    assert len(str(refused.value)) < 300  # a 2,000-byte id does not fill the log


def test_parse_id_takes_ordinary_and_odd_but_valid_keys_in_allowed_buckets_only() -> None:
    allowed = {BUCKET}.__contains__
    for key in ("x.jpg", "2024/cat.jpg", "a b/c+d.jpg", "%2e%2e/x.jpg", "café/ü.png", "...", ".x/..y", "k" * 1024):
        assert parse_id(f"{BUCKET}/{key}", allowed=allowed) == (BUCKET, key)
    with pytest.raises(NotAllowedIdError):
        parse_id(f"{PRIVATE}/x.jpg", allowed=allowed)


@dataclass
class Gallery:
    url: str
    env: dict[str, str]
    ok_id: str


@pytest.fixture(scope="module")
def gallery(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gallery]:
    """The gallery served by its own process, with a picture in an allowed bucket (served), one in a bucket
    outside ``DEDUP_BUCKETS`` and one put straight into the quarantine bucket (neither ever served)."""
    storage = stack.storage()
    for bucket in (PRIVATE, QUARANTINE):
        storage.ensure_bucket(bucket, versioned=bucket == QUARANTINE)
    red = _red_jpeg()
    storage.put(PRIVATE, "x.jpg", red)
    storage.put(QUARANTINE, f"{BUCKET}/secret.jpg", red)
    storage.put(QUARANTINE, f"{BUCKET}/x.jpg", red)
    ok_id = f"{BUCKET}/hostile-ids/ok.jpg"
    storage.put(BUCKET, ok_id.partition("/")[2], jpeg(photo("astronaut.png")))
    root = tmp_path_factory.mktemp("hostile-ids")
    env = stack.env(
        {
            "DEDUP_BROKER_URL": stack.broker(13),
            "DEDUP_QUARANTINE_BUCKET": QUARANTINE,
            "DEDUP_MILVUS_URI": str(root / "milvus.db"),
            "DEDUP_ACTION": "quarantine",
            "DEDUP_REVIEW_TOKEN": TOKEN,
        }
    )
    port = free_port()
    argv = [sys.executable, "-m", "producer", "review", "--port", str(port)]
    service = Service(
        f"review-hostile-{port}",
        argv,
        log_dir=stack.logs,
        env=env,
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        timeout=120,
    )
    service.start()
    try:
        yield Gallery(f"http://127.0.0.1:{port}", env, ok_id)
    finally:
        service.stop()


def _red_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (255, 0, 0)).save(out, "JPEG")
    return out.getvalue()


def _is_red(thumbnail: bytes) -> bool:
    with Image.open(io.BytesIO(thumbnail)) as picture:
        r, g, b = picture.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    return bool(r > 200 and g < 60 and b < 60)


def _allowed_id(object_id: str) -> bool:
    try:
        parse_id(object_id, allowed={BUCKET}.__contains__)
    except BadIdError:
        return False
    return True


def _check(gallery: Gallery, client: httpx.Client, object_id: str, where: str) -> None:
    """Every route that takes an id: no 5xx, and a thumbnail only of an allowed object, never the red ones."""
    thumb = client.get("/thumb", params={"id": object_id, "where": where})
    assert thumb.status_code < 500, (object_id, where, thumb.status_code, thumb.text)
    if thumb.status_code == 200:
        assert _allowed_id(object_id), object_id
        assert not _is_red(thumb.content), object_id
    for route in ("/restore", "/confirm"):
        answer = client.post(route, data={"id": object_id, "token": TOKEN})
        assert answer.status_code < 500, (route, object_id, answer.status_code, answer.text)
        assert answer.status_code != 200 or _allowed_id(object_id), (route, object_id)
    page = client.get("/", params={"original": object_id, "prefix": object_id, "bucket": object_id[:70]})
    assert page.status_code < 500, (object_id, page.status_code, page.text)


def test_every_route_answers_the_known_hostile_ids_with_a_4xx(gallery: Gallery) -> None:
    with httpx.Client(base_url=gallery.url, headers=AUTH, timeout=60) as client:
        served = client.get("/thumb", params={"id": gallery.ok_id})
        assert served.status_code == 200  # the door works for an ordinary picture
        assert not _is_red(served.content)
        for object_id in HOSTILE:
            for where in ("bucket", "quarantine"):
                thumb = client.get("/thumb", params={"id": object_id, "where": where})
                assert 400 <= thumb.status_code < 500, (object_id, where, thumb.status_code, thumb.text)
            for route in ("/restore", "/confirm"):
                answer = client.post(route, data={"id": object_id, "token": TOKEN})
                assert 400 <= answer.status_code < 500, (route, object_id, answer.status_code, answer.text)
        traversal = client.get("/thumb", params={"id": f"{BUCKET}/../{PRIVATE}/x.jpg", "where": "bucket"})
        assert traversal.status_code == 400
        assert "'.' or '..' segments" in traversal.text
        assert client.get("/thumb", params={"id": gallery.ok_id, "where": "elsewhere"}).status_code == 400
        for page in ("²", "１", "-1"):
            assert client.get("/", params={"page": page}).status_code == 400
        assert client.get("/", params={"page": "9" * 5000}).status_code == 200  # past the end: an empty page


_SEGMENTS = st.sampled_from(
    [".", "..", "", "%2e%2e", "%2E", "%2F", "..%2F", "%00", "x.jpg", "a", "é", " ", "+", "#", "?", "&", "\\", '"']
)
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_KEYS = st.one_of(
    st.lists(st.one_of(_SEGMENTS, _TEXT), min_size=0, max_size=6).map("/".join),
    _TEXT,
    st.integers(1000, 2100).map(lambda n: "k" * n),
)
_BUCKETS = st.sampled_from([BUCKET, PRIVATE, QUARANTINE, "", "..", "PHOTOS", f"{BUCKET}%2F..", "a" * 70])
_IDS = st.one_of(st.sampled_from(HOSTILE), st.builds(lambda b, k: f"{b}/{k}", _BUCKETS, _KEYS), _TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(object_id=_IDS, where=st.sampled_from(["bucket", "quarantine"]))
def test_fuzzed_ids_never_get_a_server_error_nor_bytes_from_outside(
    gallery: Gallery, object_id: str, where: str
) -> None:
    with httpx.Client(base_url=gallery.url, headers=AUTH, timeout=60) as client:
        _check(gallery, client, object_id, where)


@pytest.mark.parametrize("verb", ["restore", "confirm"])
def test_the_commands_refuse_hostile_ids_with_a_message_and_exit_2(gallery: Gallery, verb: str) -> None:
    for object_id in (f"{BUCKET}/../{PRIVATE}/x.jpg", f"{BUCKET}//x.jpg", f"{BUCKET}/{LONG_KEY}", f"{PRIVATE}/x.jpg"):
        done = subprocess.run(
            [sys.executable, "-m", "producer", verb, object_id],
            env={**gallery.env, "DEDUP_MILVUS_URI": str(Path(gallery.env["DEDUP_MILVUS_URI"]).parent / "cli.db")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, (object_id, done.stdout, done.stderr)
        assert f"{verb} refused" in done.stderr
        assert "Traceback" not in done.stderr
