"""One size of ``make scale``: fill an index with N originals through the worker's own :class:`~worker.index.Index`,
then decide batches of uploads against it as the decide stage does, and measure.

The index is a Milvus Lite gRPC server in its own process (``python -m milvus_lite server``, the service's Lite
settings), so that its resident memory is its own; or (``engine="server"``) a real Milvus standalone server, PyPI's
``milvus`` 2.3.5 (:meth:`~tooling.localstack.LocalStack.start_milvus_server`), flushed once filled and its indexes
built (``index_s``) before anything is decided, so that its rows sit in sealed, indexed segments as a server's
settle. What is measured:

* **bytes per original**: the server's data folder on disk (the standalone server's own binaries and logs left
  out), and its resident memory (``VmRSS``; ``VmHWM`` its peak) less what it held empty;
* **insert rate**: originals per second through :meth:`Index.store`, in the worker's batches;
* **decide latency** per batch of uploads: the stored-keys query, :meth:`Index.neighbours` and
  :func:`worker.decision.decide`, what the decide stage does before it writes (p50, p99, max);
* **recall**: the uploads decided duplicates of their own anchor, against this index and against one of the
  anchors alone (which must not differ);
* **false candidates** per upload: originals other than its anchor that the perceptual lookup returned at or
  above the perceptual threshold (each row confirmed by its details), before the guard and the colour check;
  **false duplicates**: uploads decided duplicates of anything but their anchor.

    >>> result = measure(size=100_000, anchors=a, uploads=u, fillers=shards, folder=Path("/tmp/scale"))
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tooling.localstack import LocalStack
from tooling.scale.inputs import Prints
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD
from worker.decision import Signals, Thresholds, decide
from worker.index import Index

#: The uploads decided at once, as the worker's default ``DEDUP_BATCH_SIZE``.
BATCH = 32
COLLECTION = "scale"
#: Upload event times come after every original's.
UPLOAD_TIME = 10**12


@dataclass
class Result:
    originals: int
    rows: int
    disk_bytes: int
    rss_bytes: int
    peak_rss_bytes: int
    insert_s: float
    uploads: int
    batches: int
    latency_ms: dict[str, float]
    recall: float
    recall_by_edit: dict[str, float]
    false_candidates: int
    false_duplicates: int
    engine: str
    index_s: float = 0.0  # a server's flush and index build after the inserts (not in insert_s)

    @property
    def disk_per_original(self) -> float:
        return self.disk_bytes / self.originals

    @property
    def rss_per_original(self) -> float:
        return self.rss_bytes / self.originals

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "disk_per_original": round(self.disk_per_original),
            "rss_per_original": round(self.rss_per_original),
            "inserts_per_s": round(self.originals / self.insert_s, 1),
            "false_candidates_per_upload": self.false_candidates / self.uploads,
            "false_duplicates_per_upload": self.false_duplicates / self.uploads,
        }


def thresholds() -> Thresholds:
    """The worker's defaults without real weights: the perceptual stage decides, the semantic one abstains."""
    return Thresholds(perceptual=DEFAULT_PERCEPTUAL_THRESHOLD, semantic=None)


def measure(
    *,
    size: int,
    anchors: Prints,
    uploads: Prints,
    fillers: Iterable[Prints],
    folder: Path,
    embedding: int = 0,
    store_batch: int = BATCH,
    engine: str = "lite",
) -> Result:
    """Fill a fresh server in ``folder`` (``engine``: ``lite`` or ``server``) with the anchors and
    ``size - len(anchors)`` fillers, then decide every upload in batches of :data:`BATCH`. ``embedding``: the
    originals' embeddings' dimension (noise, as random weights give; 0: none)."""
    shutil.rmtree(folder, ignore_errors=True)
    stack = LocalStack(folder)
    try:
        server, uri = stack.start_milvus_server("milvus") if engine == "server" else stack.start_milvus("milvus")
        assert server.process is not None
        pid = _engine_pid(server.process.pid)
        index = Index.connect(uri, collection=COLLECTION, dim=embedding or None)
        try:
            empty = _rss(pid)["VmRSS"]
            began = time.perf_counter()
            stored = _store(index, [anchors, *fillers], size, store_batch, embedding)
            insert_s = time.perf_counter() - began
            if engine == "server":
                _settle(index)
            index_s = time.perf_counter() - began - insert_s
            latencies, right, false_candidates, false_duplicates = _decide_all(index, anchors, uploads)
            version = index.engine()
            rows = index.milvus.query(index.hashes_collection, "", ["count(*)"])[0]["count(*)"]
        finally:
            index.close()
        memory = _rss(pid)
    finally:
        stack.stop()
    data = folder / "milvus"
    own = {data / "bin", data / "logs", data / "configs"}  # the standalone server's, not the index's
    return Result(
        originals=stored,
        rows=int(rows),
        disk_bytes=sum(f.stat().st_size for f in data.rglob("*") if f.is_file() and not own & set(f.parents)),
        rss_bytes=memory["VmRSS"] - empty,
        peak_rss_bytes=memory["VmHWM"] - empty,
        insert_s=insert_s,
        uploads=len(uploads),
        batches=len(latencies),
        latency_ms=_percentiles(latencies),
        recall=len(right) / len(uploads),
        recall_by_edit=_by_edit(uploads, right),
        false_candidates=false_candidates,
        false_duplicates=false_duplicates,
        engine=version,
        index_s=index_s,
    )


def _store(index: Index, groups: list[Prints], size: int, batch: int, embedding: int) -> int:
    stored = 0
    for prints in groups:
        signals = prints.signals(first_time=1 + stored, embedding=embedding)[: size - stored]
        for start in range(0, len(signals), batch):
            index.store(signals[start : start + batch])
        stored += len(signals)
        if stored >= size:
            break
    return stored


def _decide_all(index: Index, anchors: Prints, uploads: Prints) -> tuple[list[float], set[str], int, int]:
    """Decide the uploads batch by batch: the latencies, the uploads matched to their anchor, the false candidates
    and the false duplicates."""
    t = thresholds()
    anchor_id = {n: str(anchors.ids[n]) for n in range(len(anchors))}
    wanted = {str(uploads.ids[i]): anchor_id[int(uploads.source[i])] for i in range(len(uploads))}
    latencies: list[float] = []
    right_ones: set[str] = set()
    false_candidates = false_duplicates = 0
    for batch in _batches(uploads.signals(first_time=UPLOAD_TIME), BATCH):
        began = time.perf_counter()
        index.stored(s.id for s in batch)
        found = index.neighbours(batch, t)
        decisions = decide(batch, found, t, ())
        latencies.append((time.perf_counter() - began) * 1000)
        for decision in decisions:
            right = wanted[decision.id]
            false_candidates += sum(
                1
                for n in found.get(decision.id, ())
                if n.id != right and (n.perceptual or -1.0) >= (t.perceptual or 0.0)
            )
            if decision.match is not None:
                if decision.match.original == right:
                    right_ones.add(decision.id)
                else:
                    false_duplicates += 1
    return latencies, right_ones, false_candidates, false_duplicates


def _by_edit(uploads: Prints, right: set[str]) -> dict[str, float]:
    """Recall per edit (an upload's id is ``uploads/<n>/<edit>/...``)."""
    per: dict[str, list[bool]] = {}
    for upload in uploads.ids:
        per.setdefault(str(upload).split("/")[2], []).append(str(upload) in right)
    return {edit: round(sum(hits) / len(hits), 4) for edit, hits in sorted(per.items())}


def _batches(items: list[Signals], size: int) -> Iterator[list[Signals]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 1),
        "max": round(ordered[-1], 1),
    }


def _settle(index: Index, timeout_s: float = 3600.0) -> None:
    """Flush a server's collections and wait until every row of their vector indexes is indexed."""
    client = index.milvus.client
    names = (index.collection, index.hashes_collection)
    for name in names:
        index.milvus.call(client.flush, name)
    deadline = time.monotonic() + timeout_s
    for name in names:
        for field in index.milvus.call(client.list_indexes, name):
            while index.milvus.call(client.describe_index, name, field).get("pending_index_rows", 0):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}.{field}: not indexed after {timeout_s:.0f} s")
                time.sleep(1.0)


def _engine_pid(launched: int) -> int:
    """The process that holds the index: ``milvus-server`` launches the Milvus binary as its child; Lite's server
    is the launched process itself."""
    children = Path(f"/proc/{launched}/task/{launched}/children")
    found = children.read_text().split() if children.exists() else []
    return int(found[0]) if found else launched


def _rss(pid: int) -> dict[str, int]:
    """The process's resident memory now and at its peak, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out
