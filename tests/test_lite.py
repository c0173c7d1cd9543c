"""This service's Milvus Lite settings (:mod:`worker.lite`): that every Lite engine it starts runs with them, a
user's own value wins, and the index stays whole across the memtable flushes they make frequent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tooling.localstack import LocalStack
from worker import lite


def test_the_service_sets_a_small_memtable_unless_the_user_chose_one() -> None:
    assert lite.environment({}) == {lite.MEMTABLE_ENV: str(lite.MEMTABLE_BYTES)}
    assert lite.environment({lite.MEMTABLE_ENV: "123", "HOME": "/h"}) == {lite.MEMTABLE_ENV: "123", "HOME": "/h"}
    env = {lite.MEMTABLE_ENV: "456"}
    lite.tune_embedded(env)
    assert env == {lite.MEMTABLE_ENV: "456"}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_a_lite_server_runs_with_the_service_settings_or_exactly_the_ones_given(tmp_path: Path) -> None:
    with LocalStack(tmp_path) as stack:
        tuned, _ = stack.start_milvus("milvus-tuned")
        plain, _ = stack.start_milvus("milvus-plain", engine={})
        assert tuned.process is not None
        assert plain.process is not None
        assert _environ(tuned.process.pid)[lite.MEMTABLE_ENV] == str(lite.MEMTABLE_BYTES)
        assert lite.MEMTABLE_ENV not in _environ(plain.process.pid)


EMBEDDED = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from worker.decision import Signals
    from worker.index import Index

    index = Index.connect(sys.argv[1], collection="flushes", dim=8)
    import milvus_lite.engine.collection as engine  # what the embedded engine was started with
    limit = engine.MEMTABLE_MEMORY_LIMIT
    rng = np.random.default_rng(3)
    def unit(v):
        return (v / np.linalg.norm(v)).astype(np.float32)
    def original(i):
        vector = rng.standard_normal(8).astype(np.float32)
        dct = unit(rng.standard_normal(64))
        return Signals(f"photos/{i:04d}.jpg", i, f"sha-{i}", dct, vector / np.linalg.norm(vector))
    def moved(d, cosine):  # a unit descriptor at exactly this cosine from d
        other = rng.standard_normal(64)
        other = unit(other - (other @ d) * d)
        return unit(cosine * d + np.sqrt(1 - cosine**2) * other)
    stored = [original(i) for i in range(400)]
    for first in range(0, 400, 40):
        index.store(stored[first : first + 40])
    found, near_found, probed = 0, 0, stored[::37]
    for item in probed:  # early and late originals, flushed or not: each is found by its bytes and its descriptor
        copy = Signals(f"photos/copy-{item.id}", 999, item.sha256, item.dct, item.embedding)
        near = {n.id: n for n in index.neighbours([copy])[copy.id]}
        found += near[item.id].sha256 == item.sha256 and abs(near[item.id].perceptual - 1.0) < 1e-5
        # and by a descriptor as far as 6 bits were (cosine 0.8125), which an indexed (approximate) segment must
        # still return
        near_copy = Signals(f"photos/near-{item.id}", 999, "other", moved(item.dct, 0.8125), item.embedding)
        near = {n.id: n for n in index.neighbours([near_copy])[near_copy.id]}
        near_found += item.id in near and abs(near[item.id].perceptual - 0.8125) < 1e-5
    flushed = len(list(Path(sys.argv[1], "collections", "flushes").rglob("data_*.parquet")))  # segment files
    report = {"limit": limit, "found": found, "near": near_found, "probed": len(probed), "count": index.count()}
    report["flushed"] = flushed
    print(json.dumps(report))
    """
)


def _embedded(tmp_path: Path, **env: str) -> dict[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != lite.MEMTABLE_ENV} | env
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED, str(tmp_path / "lite.db")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_embedded_index_starts_its_engine_with_the_service_settings(tmp_path: Path) -> None:
    assert _embedded(tmp_path)["limit"] == lite.MEMTABLE_BYTES


def test_an_index_flushed_many_times_still_finds_every_original(tmp_path: Path) -> None:
    """A 16 KiB memtable (the user's value wins) flushes every few dozen originals, so most of them are searched
    in indexed segments (HNSW: approximate), the rest in the memtable; exact and near copies find them all."""
    result = _embedded(tmp_path, **{lite.MEMTABLE_ENV: "16384"})
    assert result["limit"] == 16384
    assert result["flushed"] >= 1
    assert (result["found"], result["near"], result["probed"], result["count"]) == (11, 11, 11, 400)


def test_a_large_lite_collection_is_told_to_move_to_a_milvus_server() -> None:
    assert lite.advice("milvus_lite-3.2.2", lambda: lite.LARGE - 1) is None
    told = lite.advice("milvus_lite-3.2.2", lambda: 12_000)
    assert told is not None
    assert "12,000 originals" in told
    assert "DEDUP_MILVUS_URI" in told
    assert lite.advice("v2.5.10", lambda: 10_000_000) is None  # a Milvus server: nothing to say

    def never() -> int:
        raise AssertionError("a Milvus server's collection is not counted at start")

    assert lite.advice("v2.5.10", never) is None


def test_the_index_says_when_its_engine_is_lite(tmp_path: Path) -> None:
    from worker.index import Index

    index = Index.connect(str(tmp_path / "engine.db"), collection="engine", dim=8)
    try:
        assert lite.advice(index.engine(), lambda: lite.LARGE) is not None  # what the worker checks at start
    finally:
        index.close()
