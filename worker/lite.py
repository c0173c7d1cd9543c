"""The settings this service runs Milvus Lite's engine with, embedded or as a ``milvus-lite server``.

Milvus Lite 3.x keeps recent writes in a memtable and searches it by brute force, converting every memtable row's
vector to a Python list on every search; rows flushed to segments are searched through their HNSW index. Its
default memtable holds 128 MiB, which this service's rows take a long time to fill (a hash row is a few hundred
bytes), so every search paid for tens of thousands of rows. With :data:`MEMTABLE_BYTES` rows reach indexed
segments sooner: with 9,600 originals stored the engine's CPU per image fell from 108 to 36 ms (BENCHMARKS.md,
"Milvus Lite as the collection grows"). Its other per-search work still visits every stored row in Python, so
Lite's cost keeps growing with the collection: past a few thousand images, a Milvus server (docs/deployment.md "Scale").

    >>> from worker import lite
    >>> lite.environment({})  # for a ``milvus-lite server`` subprocess
    {'MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES': '4194304'}
    >>> lite.tune_embedded()  # before the first embedded (``.db``) Lite client: the engine reads it at import
    >>> lite.advice("milvus_lite-3.2.2", originals=lambda: 12_000)  # at start: a warning past LARGE originals
    'Milvus Lite holds 12,000 originals: ...'

A value already in the environment wins (the engine's own variable, documented in its ``constants`` module).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping

from worker.config import env_name

log = logging.getLogger(__name__)

MEMTABLE_ENV = "MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES"
MEMTABLE_BYTES = 4 << 20
#: Originals past which a worker starting on Milvus Lite warns: each image then costs the engine ≳ 25 ms of CPU
#: on the CI machine's cores (BENCHMARKS.md), more than the worker's own work around the model.
LARGE = 5_000
_VERSION_PREFIX = "milvus_lite"  # what a Lite engine, embedded or a server, answers to get_server_version()
_ENGINE = "milvus_lite.constants"  # reads MEMTABLE_ENV once, when imported


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this service's Lite settings where it has none."""
    env = dict(os.environ if base is None else base)
    env.setdefault(MEMTABLE_ENV, str(MEMTABLE_BYTES))
    return env


def tune_embedded(env: MutableMapping[str, str] = os.environ) -> None:
    """Set the Lite settings for an engine about to start in this process (an embedded ``.db`` file). Once the
    engine is imported its settings are fixed: then this only says so when they differ from the service's."""
    env.setdefault(MEMTABLE_ENV, str(MEMTABLE_BYTES))
    engine = sys.modules.get(_ENGINE)
    if engine is not None and getattr(engine, "MEMTABLE_MEMORY_LIMIT", None) != int(env[MEMTABLE_ENV]):
        log.info("Milvus Lite started before %s=%s could apply: searches cost more", MEMTABLE_ENV, env[MEMTABLE_ENV])


def advice(server_version: str, originals: Callable[[], int], large: int = LARGE) -> str | None:
    """What to tell a user whose Milvus is Lite (by its ``server_version``) and holds ``large`` originals or more;
    None otherwise. ``originals`` counts them, asked only of a Lite engine."""
    if not server_version.startswith(_VERSION_PREFIX):
        return None
    count = originals()
    if count < large:
        return None
    return (
        f"Milvus Lite holds {count:,} originals: every search visits every stored row in Python, so its CPU per "
        "image grows with the collection (36 ms at 9,600 originals on two cores, BENCHMARKS.md). Run a Milvus "
        f'server and point {env_name("milvus_uri")} at it (docs/deployment.md "The process model")'
    )
