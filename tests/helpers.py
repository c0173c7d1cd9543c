"""Helpers shared by the tests."""

from __future__ import annotations

import itertools
import time

BUCKET = "photos"
_clock = itertools.count(int(time.time() * 1000))


def next_time_ms() -> int:
    """Strictly increasing event times across the session."""
    return next(_clock)
