"""The gallery stays fast with 10,000 duplicates in the index: a page of 50 groups, rendered by the app itself
(Starlette, in-process) from a Milvus Lite links collection holding 10,000 rows. A page that reads the links
(the first, or one after ``DEDUP_REVIEW_SNAPSHOT_S``) is a scan of all 10,000 and stays under 3 s even on a busy
CI machine; every other page, filter and order comes from that read, well under a second.

Run with ``-s`` to see the figures (docs/operations.md "Review and undo" records them).
"""

from __future__ import annotations

import gc
import random
import re
import statistics
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from producer.gallery_app import create_review_app
from producer.gallery_snapshot import LinkSnapshot
from producer.thumbnails import Thumbnails
from worker.config import load_settings
from worker.index import Index, Link
from worker.storage import Storage, make_client
from worker.undo import Reviewer

pytestmark = pytest.mark.integration

DUPLICATES = 10_000
PER_ORIGINAL = 4
TOKEN = "scale-token"
BUDGET_S = 1.0  # a page from the snapshot of the links
READ_BUDGET_S = 3.0  # a page that scans every link first (0.4–0.9 s on 2 quiet cores, Milvus Lite)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    index = Index.connect(str(tmp_path_factory.mktemp("crowded") / "lite.db"), collection="image_dedup")
    rng = random.Random(11)
    kinds = ["exact", "perceptual", "perceptual", "semantic"]
    links = [
        Link(
            f"photos/{n // 1000:02d}/copy-{n:05d}.jpg",
            f"photos/originals/{n // PER_ORIGINAL:05d}.jpg",
            1_700_000_000_000 + n,
            kind := rng.choice(kinds),
            1.0 if kind == "exact" else round(rng.uniform(0.88, 1.0), 4),
            rng.choice(["tag", "quarantine"]),
        )
        for n in range(DUPLICATES)
    ]
    for start in range(0, len(links), 2000):
        index.link(links[start : start + 2000])
    yield index
    index.close()


def gallery(index: Index, snapshot_s: float) -> TestClient:
    settings = load_settings(
        buckets=("photos",), review_token=TOKEN, model_weights="random", review_snapshot_s=snapshot_s
    )
    storage = Storage(make_client("127.0.0.1:9", "unused", "unused"), max_bytes=1 << 20)  # pages never touch S3
    reviewer = Reviewer(settings, storage=storage, index=index, redecide=lambda _: None)
    app = create_review_app(settings, index=index, reviewer=reviewer, thumbnails=Thumbnails(settings, storage))
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def client(crowded: Index) -> TestClient:
    return gallery(crowded, snapshot_s=3600)  # every timed page from the warm-up's read


def test_a_page_that_reads_every_link_renders_in_under_3_seconds(crowded: Index) -> None:
    reading = gallery(crowded, snapshot_s=0)  # every page scans the links collection
    reading.get("/")  # warm: connection, template compiled
    timings = []
    for query in ("", "page=25", "kind=perceptual&max_score=0.95"):
        started = time.perf_counter()
        assert reading.get(f"/?{query}").status_code == 200
        timings.append(time.perf_counter() - started)
    print(f"\nreading all links first: {min(timings) * 1000:.0f} ms best, {max(timings) * 1000:.0f} ms worst")
    assert max(timings) < READ_BUDGET_S


def test_the_snapshot_is_read_again_only_when_it_is_old_or_dropped(crowded: Index) -> None:
    now = [0.0]
    links = LinkSnapshot(crowded, max_age_s=5.0, clock=lambda: now[0])
    first = links.rows()
    assert len(first) == DUPLICATES
    now[0] = 4.9
    assert links.rows() is first
    added = Link("photos/new/copy.jpg", "photos/originals/00000.jpg", 1_800_000_000_000, "exact", 1.0, "tag")
    crowded.link([added])
    try:
        assert links.rows() is first  # a worker's new link waits for the snapshot to age
        now[0] = 5.0
        fresh = links.rows()
        assert len(fresh) == DUPLICATES + 1
        links.drop()
        assert links.rows() is not fresh  # dropped: read again at once
    finally:
        crowded.unlink_now([added.id])


@pytest.mark.parametrize(
    "query",
    ["", "page=25", "order=newest", "kind=perceptual&max_score=0.95", "bucket=photos&prefix=07/", "page=999"],
)
def test_a_page_of_50_groups_renders_in_under_a_second_with_10000_duplicates(client: TestClient, query: str) -> None:
    client.get("/")  # warm: connection, template compiled
    gc.collect()  # the garbage of 600 earlier tests is not this page's to sweep
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        response = client.get(f"/?{query}")
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    groups = response.text.count('<section class="group"')
    found = re.search(r'id="summary">(.*?)</span>', response.text, re.S)
    summary = " ".join(found.group(1).split()) if found else ""
    print(
        f"\n{query or '(first page)'}: {min(timings) * 1000:.0f} ms best, {statistics.median(timings) * 1000:.0f} ms "
        f"median, {max(timings) * 1000:.0f} ms worst; {groups} groups; {summary}"
    )
    # The median of five: one stall of a shared CI machine (a page once took 1.005 s between two of 0.13 s) is the
    # machine's, while a page that is slow every time still fails.
    assert statistics.median(timings) < BUDGET_S
    if query in {"", "page=25", "order=newest"}:
        assert groups == 50
        assert summary.startswith(f"{DUPLICATES} duplicates in {DUPLICATES // PER_ORIGINAL} groups")
    if query == "page=999":
        assert groups == 0
    if query.startswith("kind="):
        scores = [float(s) for s in re.findall(r'data-kind="perceptual" data-score="([0-9.]+)"', response.text)]
        assert scores
        assert all(s <= 0.95 for s in scores)
        first_of_groups = re.findall(r'<section class="group".*?data-score="([0-9.]+)"', response.text, re.S)
        assert first_of_groups == sorted(first_of_groups)  # lowest scores first
