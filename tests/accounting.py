"""The accounting check of issue 5: every accepted event ends in exactly one terminal outcome, visible in the
bucket, consistent with the index, and counted once; no source is gone without a verified quarantined copy.

    >>> sent = [Sent(event, data) for event, data in uploads]
    >>> ledger = Ledger.open(d)                   # before delivering: the counters to compare against
    >>> d.deliver(events)  ...faults...
    >>> outcomes = ledger.check(sent, accepted=len(events), index=index)

``sent`` holds the final upload of each key (an overwritten key: its last bytes); ``accepted`` is the number of
events the webhook accepted (a replayed event is accepted, processed and counted again).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.deployment import Deployment
from tooling.samples import Sample
from worker.actions import quarantine_key
from worker.config import Action
from worker.decision import Status
from worker.index import Index
from worker.messages import ObjectEvent
from worker.outcome import Outcome
from worker.storage import ObjectMissingError

COUNTED = 'sum(dedup_images_total{job="worker"})'


@dataclass(frozen=True)
class Sent:
    """An object as uploaded: the event that announced it and the bytes it holds."""

    event: ObjectEvent
    data: bytes


def uploaded(d: Deployment, samples: Sequence[Sample]) -> list[Sent]:
    """Upload ``samples`` (no notification yet)."""
    return [Sent(event, s.data) for event, s in zip(d.upload(samples), samples, strict=True)]


@dataclass
class Ledger:
    deployment: Deployment
    counted_before: float

    @classmethod
    def open(cls, deployment: Deployment) -> Ledger:
        return cls(deployment, deployment.query(COUNTED))

    def check(
        self, sent: Sequence[Sent], *, accepted: int | None, index: Index | None = None, timeout: float = 180
    ) -> dict[str, Outcome]:
        """Wait until every object has its outcome and the queue has drained, then check the invariant;
        raises AssertionError listing every violation. Returns the outcomes by key.

        ``accepted=None`` leaves out the count, for a test that SIGKILLs a worker: a counter in a killed
        process dies with it (Prometheus' model: a target's counters live in its memory)."""
        d = self.deployment
        outcomes = d.outcomes([s.event for s in sent], timeout=timeout)
        problems = [p for s in sent for p in self._object_problems(s, outcomes[s.event.key])]
        if index is not None:
            problems += _index_problems(index, sent, outcomes)
        if accepted is not None:
            problems += self._count_problems(accepted)
        assert not problems, "\n".join(problems)
        return outcomes

    def _count_problems(self, accepted: int) -> list[str]:
        d, problems = self.deployment, list[str]()
        expected = self.counted_before + accepted
        try:
            d.wait_for_metric(COUNTED, expected, timeout=30)
            time.sleep(2)  # two more scrapes: nothing is counted late, or twice
            if (counted := d.query(COUNTED)) != expected:
                problems.append(f"dedup_images_total rose by {counted - self.counted_before}, expected {accepted}")
        except AssertionError as exc:
            problems.append(str(exc))
        return problems

    def _object_problems(self, s: Sent, outcome: Outcome) -> list[str]:
        d, key = self.deployment, s.event.key
        target = quarantine_key(s.event.bucket, key)
        copies = _copies(d, target)
        in_place = d.storage.stat(s.event.bucket, key) is not None
        problems = (
            [f"{key}: an error without a reason"] if outcome.status is Status.ERROR and not outcome.reason else []
        )
        if d.action is Action.QUARANTINE and outcome.status is Status.DUPLICATE:
            if in_place:
                problems.append(f"{key}: a duplicate still in place in quarantine mode")
            if copies != [s.data]:
                problems.append(f"{key}: {len(copies)} quarantined copies, {copies.count(s.data)} of its bytes")
        elif not in_place:
            problems.append(f"{key}: deleted although {outcome.status.value} ({outcome.reason or outcome.kind_label})")
        elif d.storage.fetch(s.event.bucket, key).data != s.data:
            problems.append(f"{key}: its bytes changed")
        elif copies:
            problems.append(f"{key}: {outcome.status.value}, yet {len(copies)} quarantined copies")
        return problems


def _copies(d: Deployment, target: str) -> list[bytes]:
    """The bytes of every version under ``target`` in the quarantine bucket (none in tag mode: no bucket)."""
    try:
        versions = d.storage.versions(d.quarantine_bucket, target)
    except ObjectMissingError:
        return []
    return [d.storage.fetch(d.quarantine_bucket, target, version).data for version in versions]


def _index_problems(index: Index, sent: Sequence[Sent], outcomes: dict[str, Outcome]) -> list[str]:
    """The index holds exactly the objects that are originals, and every duplicate points at an original."""
    ids = {s.event.id: outcomes[s.event.key] for s in sent}
    stored = set(index.stored(ids))
    problems = [
        f"{key}: {o.status.value}, but {'not ' if key not in stored else ''}in the index"
        for key, o in ids.items()
        if (o.status is Status.UNIQUE) != (key in stored)
    ]
    pointed_at = {o.original for o in ids.values() if o.status is Status.DUPLICATE and o.original}
    missing = pointed_at - set(index.stored(pointed_at))
    problems += [f"{original}: pointed at as an original, but not in the index" for original in sorted(missing)]
    return problems
