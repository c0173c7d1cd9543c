"""Review and undo through the real stack: webhook + ``celery -A worker worker`` quarantining into moto's S3 via the
``minio`` client, a Milvus Lite server shared with the commands (``python -m producer restore | confirm |
backfill | review``, run as subprocesses, as a person runs them), Prometheus scraping the worker, and Debian's
headless chromium looking at the gallery and pressing its Restore button.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from PIL import Image

from tests.browser import Browser, dump_dom, screenshot
from tests.deployment import Deployment, deploy
from tests.helpers import BUCKET
from tests.rig import SameEmbedding, build
from tooling.localstack import LocalStack, Service, free_port, http_ok, wait_until
from tooling.samples import jpeg, photo, resized
from worker.actions import META_SHA256, Actions, quarantine_key
from worker.config import Action, load_settings
from worker.decision import Status
from worker.embedding import Embedder
from worker.index import Index
from worker.messages import ObjectEvent
from worker.undo import NotReviewableError, Reviewer
from worker.verdicts import CONFIRMED, RESTORED, Reviews

pytestmark = pytest.mark.integration

TOKEN = "review-token-for-tests"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Reviewing:
    deployment: Deployment
    milvus_uri: str
    env: dict[str, str]
    index: Index

    def command(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "producer", *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def quarantined(self, events: list[ObjectEvent]) -> dict[str, str]:
        """Deliver uploads, wait for every outcome; returns ``{key: outcome status}``."""
        self.deployment.deliver(events)
        return {key: o.status.value for key, o in self.deployment.outcomes(events).items()}

    def settle(self) -> None:
        wait_until(self.deployment.drained, 120, "the queue to drain", interval=0.3)


@pytest.fixture(scope="module")
def reviewing(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reviewing]:
    """A quarantining deployment whose Milvus (a Lite server) the review commands share."""
    milvus, uri = stack.start_milvus("milvus-review")
    try:
        with deploy(
            stack, tmp_path_factory.mktemp("reviewing"), db=14, action=Action.QUARANTINE, env={"DEDUP_MILVUS_URI": uri}
        ) as d:
            env = stack.env(
                {
                    "DEDUP_BROKER_URL": stack.broker(d.db),
                    "DEDUP_QUARANTINE_BUCKET": d.quarantine_bucket,
                    "DEDUP_MILVUS_URI": uri,
                    "DEDUP_ACTION": "quarantine",
                    "DEDUP_REVIEW_TOKEN": TOKEN,
                }
            )
            index = Index.connect(uri, collection="image_dedup")
            try:
                yield Reviewing(d, uri, env, index)
            finally:
                index.close()
    finally:
        stack.stop_service(milvus)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_restore_puts_the_exact_version_back_and_replays_and_backfills_never_move_it_again(
    reviewing: Reviewing, prefix: str
) -> None:
    d, storage = reviewing.deployment, reviewing.deployment.storage
    original, small_data = jpeg(photo("coffee.png")), jpeg(resized(photo("coffee.png")))
    events = d.upload_bytes({f"{prefix}coffee.jpg": original, f"{prefix}small.jpg": small_data})
    events += d.upload_bytes({f"{prefix}copy.jpg": original})
    orig, small, copy = events
    assert reviewing.quarantined(events) == {orig.key: "unique", small.key: "duplicate", copy.key: "duplicate"}
    assert storage.stat(BUCKET, small.key) is None  # moved to quarantine

    restored = reviewing.command("restore", small.id)
    assert restored.returncode == 0, restored.stderr
    assert "copied back from quarantine" in restored.stdout
    assert storage.sha256(BUCKET, small.key) == _sha(small_data)  # the exact bytes that were moved
    tags = storage.get_tags(BUCKET, small.key)
    assert (tags["dedup-status"], tags["dedup-reviewed"]) == ("unique", "restored")
    assert "dedup-of" not in tags
    copy_tags = storage.get_tags(d.quarantine_bucket, quarantine_key(BUCKET, small.key))
    assert copy_tags["dedup-reviewed"] == "restored"  # the copy is kept, marked

    reviewing.settle()  # the restore sent it to the worker: now an original in the index, with no link
    assert small.id in reviewing.index.stored([small.id])
    assert reviewing.index.links_of([small.id]) == {}
    assert Reviews(reviewing.index).restored([small.id]) == {small.id: _sha(small_data)}

    d.deliver([small, orig])  # replayed notifications
    reviewing.settle()
    backfill = reviewing.command("backfill", "--bucket", BUCKET, "--prefix", prefix, "--no-progress")
    assert backfill.returncode == 0, backfill.stderr
    reviewing.settle()
    assert storage.sha256(BUCKET, small.key) == _sha(small_data)
    assert storage.get_tags(BUCKET, small.key)["dedup-status"] == "unique"
    assert storage.stat(BUCKET, copy.key) is None  # the exact copy stays quarantined: nobody restored it

    again = reviewing.command("restore", small.id)
    assert again.returncode == 0, again.stderr
    assert "already back in place" in again.stdout

    for refused in (orig.id, "elsewhere/x.jpg", f"{BUCKET}/{prefix}never-uploaded.jpg"):
        result = reviewing.command("restore", refused)
        assert result.returncode == 2, (refused, result.stdout, result.stderr)
        assert "refused" in result.stderr
    assert storage.get_tags(BUCKET, orig.key)["dedup-status"] == "unique"

    for _ in range(2):  # confirm is idempotent
        confirmed = reviewing.command("confirm", copy.id)
        assert confirmed.returncode == 0, confirmed.stderr
    assert storage.get_tags(d.quarantine_bucket, quarantine_key(BUCKET, copy.key))["dedup-reviewed"] == "confirmed"
    assert reviewing.command("confirm", small.id).returncode == 2  # restored: no duplicate to confirm

    d.wait_for_metric('dedup_reviews_total{verdict="restored",kind="perceptual"}', 1, at_least=True)
    d.wait_for_metric('dedup_reviews_total{verdict="confirmed",kind="exact"}', 1, at_least=True)
    share = (
        'sum by (kind) (dedup_reviews_total{verdict="restored"}) / clamp_min(sum by (kind) (dedup_reviews_total), 1)'
    )
    by_kind = {s["metric"]["kind"]: float(s["value"][1]) for s in d.samples(share)}
    assert by_kind["perceptual"] > 0
    assert by_kind["exact"] == 0


@pytest.mark.parametrize(("kill_after", "picture"), [("verdict recorded", "rocket.jpg"), ("copied back", "camera.png")])
def test_a_restore_killed_mid_way_is_finished_by_running_it_again(
    reviewing: Reviewing, prefix: str, kill_after: str, picture: str
) -> None:
    """SIGKILL as soon as the restore logs a step (the verdict recorded, before the copy back; the copy verified,
    before the tags, the link and the re-decision), then run it again: it ends as one uninterrupted run does."""
    d, storage = reviewing.deployment, reviewing.deployment.storage
    small = jpeg(resized(photo(picture)))  # a copy every threshold catches (brightened ones can sit near it)
    events = d.upload_bytes({f"{prefix}original.jpg": jpeg(photo(picture)), f"{prefix}small.jpg": small})
    orig, dup = events
    assert reviewing.quarantined(events) == {orig.key: "unique", dup.key: "duplicate"}

    argv = [sys.executable, "-m", "producer", "restore", dup.id]
    process = subprocess.Popen(argv, env=reviewing.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if kill_after in line:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    # Where it was killed: the verdict is recorded in either case; after the copy, the bytes are back in place.
    assert Reviews(reviewing.index).restored([dup.id]) == {dup.id: _sha(small)}
    if kill_after == "copied back":
        assert storage.sha256(BUCKET, dup.key) == _sha(small)

    finished = reviewing.command("restore", dup.id)
    assert finished.returncode == 0, finished.stderr
    reviewing.settle()
    assert storage.sha256(BUCKET, dup.key) == _sha(small)
    assert storage.get_tags(BUCKET, dup.key)["dedup-reviewed"] == "restored"
    copy = Actions(storage, Action.QUARANTINE, quarantine_bucket=d.quarantine_bucket).find_copy(BUCKET, dup.key)
    assert copy is not None
    assert copy.info.metadata[META_SHA256] == _sha(small)  # the quarantined copy is still there
    d.deliver([dup])  # and a replay leaves it in place
    reviewing.settle()
    assert storage.get_tags(BUCKET, dup.key)["dedup-status"] == "unique"
    assert reviewing.index.links_of([dup.id]) == {}


def test_restore_never_overwrites_a_new_upload_at_the_key(reviewing: Reviewing, prefix: str) -> None:
    d, storage = reviewing.deployment, reviewing.deployment.storage
    events = d.upload_bytes(
        {f"{prefix}moon.jpg": jpeg(photo("moon.png")), f"{prefix}moon-2.jpg": jpeg(photo("moon.png"))}
    )
    orig, dup = events
    assert reviewing.quarantined(events) == {orig.key: "unique", dup.key: "duplicate"}
    newer = jpeg(photo("coins.png"))
    storage.put(BUCKET, dup.key, newer)  # someone uploads other bytes under that key before the review
    refused = reviewing.command("restore", dup.id)
    assert refused.returncode == 2
    assert "holds other bytes than its quarantined copy" in refused.stderr
    assert storage.sha256(BUCKET, dup.key) == _sha(newer)
    assert Reviews(reviewing.index).restored([dup.id]) == {}


@pytest.fixture
def review_server(reviewing: Reviewing) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "producer", "review", "--port", str(port)]
    logs = reviewing.deployment.stack.logs
    service = Service(
        f"review-{port}",
        argv,
        log_dir=logs,
        env=reviewing.env,
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
    )
    service.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        service.stop()


def test_the_gallery_in_chromium_shows_each_group_and_its_restore_button_puts_a_picture_back(
    reviewing: Reviewing, review_server: str, prefix: str, tmp_path: Path
) -> None:
    d, storage = reviewing.deployment, reviewing.deployment.storage
    hostile = f'{prefix}<script>alert("x")</script> it\'s.jpg'
    small = jpeg(resized(photo("astronaut.png")))
    events = d.upload_bytes(
        {
            f"{prefix}astronaut.jpg": jpeg(photo("astronaut.png")),
            f"{prefix}small.jpg": small,
            hostile: jpeg(photo("astronaut.png"), 80),
        }
    )
    orig, dup, odd = events
    assert reviewing.quarantined(events) == {orig.key: "unique", dup.key: "duplicate", odd.key: "duplicate"}
    page = f"{review_server}/?{urlencode({'prefix': prefix, 'token': TOKEN})}"

    dom = dump_dom(page)
    assert dom.count('<section class="group"') == 1
    assert dom.count('<figure class="duplicate"') == 2

    with Browser() as browser:
        browser.open(page)
        assert browser.evaluate("location.search.includes('token')") is False  # traded for a cookie
        assert browser.evaluate("document.scripts.length") == 0
        keys = browser.evaluate("[...document.querySelectorAll('figure.duplicate .key')].map(e => e.textContent)")
        assert sorted(keys) == sorted([dup.id, odd.id])  # the hostile key shown as text, exactly
        original = browser.evaluate("document.querySelector('figure.original .key').textContent")
        assert original == orig.id
        browser.wait_for("[...document.images].length === 3 && [...document.images].every(i => i.complete)")
        widths = browser.evaluate("[...document.images].map(i => i.naturalWidth)")
        assert all(w > 0 for w in widths), widths  # every thumbnail decoded in the browser
        scores = browser.evaluate("[...document.querySelectorAll('figure.duplicate')].map(f => +f.dataset.score)")
        assert scores == sorted(scores)  # lowest first
        shot = screenshot(page, tmp_path / "review.png")
        if target := os.environ.get("REVIEW_SCREENSHOT"):
            shutil.copyfile(shot, target)
        with Image.open(shot) as png:
            assert png.size == (1280, 900)
            assert len(png.convert("L").resize((64, 48)).getcolors(4096) or []) > 20  # not a blank page

        button = (
            "[...document.querySelectorAll('figure.duplicate')]"
            f".find(f => f.dataset.id === {json.dumps(dup.id)}).querySelector('button.restore')"
        )
        browser.click(button)
        message = browser.evaluate("document.querySelector('#message').textContent")
        assert message == f"{dup.id}: restored."
        left = browser.evaluate("[...document.querySelectorAll('figure.duplicate .key')].map(e => e.textContent)")
        assert left == [odd.id]
    assert storage.sha256(BUCKET, dup.key) == _sha(small)
    reviewing.settle()
    assert storage.get_tags(BUCKET, dup.key)["dedup-status"] == "unique"


def test_the_gallery_needs_its_token_and_serves_nothing_else(reviewing: Reviewing, review_server: str) -> None:
    assert httpx.get(f"{review_server}/").status_code == 401
    assert httpx.get(f"{review_server}/?token=wrong").status_code == 401
    assert httpx.get(f"{review_server}/thumb", params={"id": f"{BUCKET}/x.jpg"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{review_server}/", headers=auth).status_code == 200
    with httpx.Client(base_url=review_server) as browser_like:
        visit = browser_like.get("/", params={"token": TOKEN}, follow_redirects=True)
        assert visit.status_code == 200
        assert "script-src" not in visit.headers["content-security-policy"]  # default-src 'none': no script runs
        assert browser_like.cookies.get("dedup_review") == TOKEN
        # A cross-site form would carry the cookie but not the token: refused.
        forged = browser_like.post("/restore", data={"id": f"{BUCKET}/whatever.jpg"})
        assert forged.status_code == 403
        assert browser_like.get("/restore").status_code == 405  # no mutation by GET
        for params in ({"id": "elsewhere/x.jpg"}, {"id": f"{reviewing.deployment.quarantine_bucket}/photos/x.jpg"}):
            assert browser_like.get("/thumb", params=params).status_code == 404
        refused = browser_like.post(
            "/restore", data={"id": f"{BUCKET}/never.jpg", "token": TOKEN}, headers={"Accept": "application/json"}
        )
        assert refused.status_code == 409
        assert browser_like.get("/", params={"kind": "nonsense"}).status_code == 400


def test_restore_in_tag_mode_retags_and_a_replay_keeps_it_a_reviewed_original(
    stack: LocalStack, embedder: Embedder, lite_uri: str, prefix: str
) -> None:
    index = Index.connect(lite_uri, collection="image_dedup")
    rig = build(stack, index, embedder)
    try:
        orig = rig.upload(f"{prefix}cat.jpg", jpeg(photo("chelsea.png")))
        dup = rig.upload(f"{prefix}cat-small.jpg", jpeg(resized(photo("chelsea.png"))))
        assert rig.pipeline.process(orig).status is Status.UNIQUE
        assert rig.pipeline.process(dup).status is Status.DUPLICATE
        sent: list[ObjectEvent] = []
        settings = load_settings(buckets=(BUCKET,), quarantine_bucket="quarantine", model_weights="random")
        reviewer = Reviewer(settings, storage=rig.storage, index=index, redecide=sent.append)

        first = reviewer.confirm(dup.id)
        assert (first.verdict, rig.tags(dup.key)["dedup-reviewed"]) == (CONFIRMED, "confirmed")
        done = reviewer.restore(dup.id)  # a confirmation was wrong after all
        assert (done.verdict, done.what, done.kind) == (RESTORED, "retagged as a reviewed original", "perceptual")
        assert rig.tags(dup.key) == {"dedup-status": "unique", "dedup-reviewed": "restored"}
        assert [e.id for e in sent] == [dup.id]
        assert rig.pipeline.process(sent[0]).status is Status.UNIQUE
        assert rig.pipeline.process(dup).status is Status.UNIQUE  # the original upload's event, replayed
        assert rig.tags(dup.key) == {"dedup-status": "unique", "dedup-reviewed": "restored"}
        assert reviewer.restore(dup.id).what == "already restored"
        with pytest.raises(NotReviewableError):
            reviewer.restore(orig.id)
        with pytest.raises(NotReviewableError):
            reviewer.confirm(dup.id)  # a reviewed original now, no duplicate
        assert Reviews(index).counts()[(RESTORED, "perceptual")] == 1
    finally:
        rig.pipeline.close()
        index.close()


def test_a_similar_can_be_confirmed_or_restored_and_is_never_moved(
    stack: LocalStack, lite_uri: str, prefix: str
) -> None:
    index = Index.connect(lite_uri, collection="image_dedup")
    # Real weights by name, the default semantic threshold, quarantine mode: semantic-only matches are similars.
    rig = build(stack, index, SameEmbedding(), model_weights="imagenet", action=Action.QUARANTINE)
    try:
        first = rig.upload(f"{prefix}astronaut.jpg", jpeg(photo("astronaut.png")))
        alike = rig.upload(f"{prefix}gravel.jpg", jpeg(photo("gravel.png")))
        assert rig.pipeline.process(first).status is Status.UNIQUE
        assert rig.pipeline.process(alike).status is Status.SIMILAR
        sent: list[ObjectEvent] = []
        reviewer = Reviewer(rig.pipeline.settings, storage=rig.storage, index=index, redecide=sent.append)

        confirmed = reviewer.confirm(alike.id)  # "the same picture indeed": recorded, still not moved
        assert (confirmed.verdict, confirmed.kind) == (CONFIRMED, "semantic")
        assert rig.tags(alike.key)["dedup-reviewed"] == "confirmed"
        assert rig.storage.stat(BUCKET, alike.key) is not None
        done = reviewer.restore(alike.id)  # "not the same picture": it is a reviewed original for good
        assert (done.verdict, done.what) == (RESTORED, "retagged as a reviewed original")
        assert rig.tags(alike.key) == {"dedup-status": "unique", "dedup-reviewed": "restored"}
        assert index.links_of([alike.id]) == {}
        assert rig.pipeline.process(sent[0]).status is Status.UNIQUE  # no longer suggested as a match of first
        assert index.links_of([alike.id]) == {}
    finally:
        rig.pipeline.close()
        index.close()
