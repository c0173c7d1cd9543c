"""S3 object tags for an outcome, merged with the tags the object already has.

Our tags all start with ``dedup-``: ``dedup-status`` (``unique`` | ``duplicate`` | ``similar`` | ``error``), and
on duplicates and similars ``dedup-of`` (the original's ``bucket/key``), ``dedup-kind`` and ``dedup-score``; on
errors ``dedup-reason``.

S3 allows 10 tags per object, keys ≤ 128 and values ≤ 256 characters, and only letters, digits, spaces and
``+ - = . _ : / @``. A user's own tags are never dropped: when room runs short, ours go first, least important
first (score, kind, of; status last). Values with other characters are written as ``b64:`` + URL-safe base64
of their UTF-8 (no padding), and values too long even for that as ``sha256:`` + the hex digest::

    >>> encode_value("photos/2024/cat.jpg")
    'photos/2024/cat.jpg'
    >>> encode_value("photos/café.jpg")
    'b64:cGhvdG9zL2NhZsOpLmpwZw'
    >>> decode_value('b64:cGhvdG9zL2NhZsOpLmpwZw')
    'photos/café.jpg'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from worker.decision import Kind, Status
from worker.outcome import MATCHED, Outcome

PREFIX = "dedup-"
STATUS = "dedup-status"
ORIGINAL = "dedup-of"
KIND = "dedup-kind"
SCORE = "dedup-score"
REASON = "dedup-reason"
NOTE = "dedup-note"
#: Set by a reviewer (``restored`` or ``confirmed``, see :mod:`worker.undo`); the worker's own retagging keeps it.
REVIEWED = "dedup-reviewed"
#: Set on a duplicate put back as the original when its original went (``original_removed`` or
#: ``original_changed``, see :mod:`worker.promotion`); kept while the object stays ``unique``.
PROMOTED = "dedup-promoted"

MAX_TAGS = 10
MAX_VALUE = 256

_SAFE = re.compile(r"[A-Za-z0-9 +\-=._:/@]*")
_B64 = "b64:"
_SHA = "sha256:"


def encode_value(value: str) -> str:
    """A tag value S3 accepts that stands for ``value`` (see the module docs)."""
    if len(value) <= MAX_VALUE and _SAFE.fullmatch(value) and not value.startswith((_B64, _SHA)):
        return value
    encoded = _B64 + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    if len(encoded) <= MAX_VALUE:
        return encoded
    return _SHA + hashlib.sha256(value.encode()).hexdigest()


def decode_value(value: str) -> str | None:
    """The original value behind :func:`encode_value`'s output; None for the irreversible ``sha256:`` form."""
    if value.startswith(_SHA):
        return None
    if value.startswith(_B64):
        body = value.removeprefix(_B64)
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return value
    return value


def outcome_tags(outcome: Outcome) -> dict[str, str]:
    """Our tags for an outcome, most important first."""
    tags = {STATUS: outcome.status.value}
    if outcome.status in MATCHED and outcome.original is not None:
        tags[ORIGINAL] = encode_value(outcome.original)
        tags[KIND] = outcome.kind_label
        if outcome.score is not None:
            tags[SCORE] = f"{outcome.score:.4f}"
    if outcome.status is Status.ERROR and outcome.reason:
        tags[REASON] = encode_value(outcome.reason)
    if outcome.notes:
        tags[NOTE] = ",".join(outcome.notes)
    return tags


def outcome_from_tags(tags: Mapping[str, str]) -> Outcome | None:
    """The outcome recorded in an object's tags (the inverse of :func:`outcome_tags`); None if undecided."""
    status = tags.get(STATUS)
    if status not in {s.value for s in Status}:
        return None
    notes = tuple(n for n in tags.get(NOTE, "").split(",") if n)
    if status in MATCHED:
        try:
            kind = Kind(tags.get(KIND, ""))
            score = float(tags[SCORE]) if SCORE in tags else None
        except ValueError:
            kind, score = None, None
        return Outcome(
            Status(status), original=decode_value(tags.get(ORIGINAL, "")), kind=kind, score=score, notes=notes
        )
    if status == Status.ERROR:
        return Outcome.error(decode_value(tags.get(REASON, "")) or "unknown")
    return Outcome.unique(notes)


@dataclass(frozen=True, slots=True)
class Merged:
    tags: dict[str, str]
    dropped: tuple[str, ...]  # our tags that did not fit


def merge(existing: Mapping[str, str], ours: Mapping[str, str]) -> Merged:
    """The user's tags plus as many of ours (in priority order) as fit; stale ``dedup-*`` tags are replaced,
    except a reviewer's ``dedup-reviewed``, which stays unless ``ours`` sets it, and ``dedup-promoted``, which
    stays unless ``ours`` sets it or makes the object anything but an original (``unique`` or ``similar``)."""
    # A similar is an original too (only suggested as a match): a promoted one keeps saying why it is back.
    still_original = ours.get(STATUS, Status.UNIQUE.value) in {Status.UNIQUE.value, Status.SIMILAR.value}
    sticky = {REVIEWED} | ({PROMOTED} if still_original else set())
    user = {k: v for k, v in existing.items() if not k.startswith(PREFIX) or (k in sticky and k not in ours)}
    room = max(0, MAX_TAGS - len(user))
    names = list(ours)
    kept, dropped = names[:room], names[room:]
    return Merged({**user, **{k: ours[k] for k in kept}}, tuple(dropped))
