"""The terminal outcome of one object: ``unique``, ``duplicate`` (with what it duplicates), ``similar`` (a
semantic match only suggested: the object stays an original where it is) or ``error``.

>>> Outcome.error("undecodable", "cannot identify image file").as_dict()
{'status': 'error', 'reason': 'undecodable', 'detail': 'cannot identify image file'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.decision import Kind, Match, Status

#: Outcomes that point at an original (``dedup-of``, ``dedup-kind``, ``dedup-score``).
MATCHED = frozenset({Status.DUPLICATE, Status.SIMILAR})


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    original: str | None = None
    kind: Kind | None = None
    score: float | None = None
    reason: str | None = None
    detail: str = ""
    notes: tuple[str, ...] = ()  # e.g. ("low-information",): a near-duplicate stage abstained for this picture

    @classmethod
    def unique(cls, notes: tuple[str, ...] = ()) -> Outcome:
        return cls(Status.UNIQUE, notes=notes)

    @classmethod
    def duplicate(cls, match: Match, notes: tuple[str, ...] = ()) -> Outcome:
        return cls(Status.DUPLICATE, original=match.original, kind=match.kind, score=match.score, notes=notes)

    @classmethod
    def similar(cls, match: Match, notes: tuple[str, ...] = ()) -> Outcome:
        """A suggested match (decision rule 10): tagged like a duplicate, never moved."""
        return cls(Status.SIMILAR, original=match.original, kind=match.kind, score=match.score, notes=notes)

    @classmethod
    def error(cls, reason: str, detail: str = "") -> Outcome:
        return cls(Status.ERROR, reason=reason, detail=detail)

    @property
    def kind_label(self) -> str:
        """The ``kind`` metric label: the match's kind, or ``none``."""
        return self.kind.value if self.kind else "none"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value}
        if self.status in MATCHED:
            out |= {"original": self.original, "kind": self.kind_label, "score": self.score}
        if self.status is Status.ERROR:
            out |= {"reason": self.reason, "detail": self.detail}
        if self.notes:
            out["notes"] = list(self.notes)
        return out
