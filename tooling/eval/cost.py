"""``python -m tooling.eval.cost``: CPU time of the worker's hash stage, against the plain pHash or an earlier version.

The hash stage is what the worker does per image between decoding and the model: SHA-256 of the bytes, then the
perceptual signals. Every contender is timed on the same decoded pictures in one process, in CPU time on one
thread: numpy's BLAS pool is held to one thread (threadpoolctl), since an idle pool's spinning counts as CPU time
too. The contenders take turns, a round each over all the pictures, and each picture counts its fastest time of
every round: a busy machine slows whole runs, so separate runs of each version, even alternated, spread
1.25–1.98 × where this settles within a few per cent::

    python -m tooling.eval.cost --images data/eval-sources
    hash stage, 49 pictures, fastest of 20 rounds: plain pHash 1.10 ms, fingerprint 1.90 ms per image (1.73 ×)

``--against REV`` times the fingerprint of an earlier commit (its ``worker`` package, taken from git into a
temporary folder under another name) instead of the plain pHash::

    python -m tooling.eval.cost --images /tmp/clip --against 7427e40
    hash stage, 120 pictures, fastest of 20 rounds: 7427e40 1.97 ms, fingerprint 2.88 ms per image (1.47 ×)
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from PIL import Image
from threadpoolctl import threadpool_limits

from tooling.eval.dataset import decode
from worker.fingerprint import fingerprint
from worker.hashing import HASHERS, sha256_hex

app = typer.Typer(add_completion=False)

Work = Callable[[Image.Image], object]


def fastest_ms(works: dict[str, Work], items: list[tuple[bytes, Image.Image]], rounds: int) -> dict[str, float]:
    """Mean over ``items`` of each picture's fastest CPU milliseconds, per contender (SHA-256 of the bytes and
    the contender on the decoded picture). Contenders take turns, in reversed order every other round."""
    best = {name: [float("inf")] * len(items) for name in works}
    order = list(works.items())
    for turn in range(rounds):
        for name, work in order if turn % 2 == 0 else order[::-1]:
            times = best[name]
            for i, (data, picture) in enumerate(items):
                start = time.process_time_ns()
                sha256_hex(data)
                work(picture)
                times[i] = min(times[i], time.process_time_ns() - start)
    return {name: sum(times) / len(times) / 1e6 for name, times in best.items()}


@contextmanager
def earlier_fingerprint(revision: str) -> Iterator[Work]:
    """The ``fingerprint`` function of the ``worker`` package at git ``revision``, importable beside this one: its
    files are read from git into a temporary folder as package ``worker_<revision>``, imports renamed."""
    name = "worker_" + re.sub(r"\W", "_", revision)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / name
        listing = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", revision, "worker/"], capture_output=True, text=True, check=True
        )
        for path in listing.stdout.split():
            if not path.endswith(".py"):
                continue
            text = subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True, check=True)
            target = root / Path(path).relative_to("worker")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(re.sub(r"\b(from|import) worker\b", rf"\1 {name}", text.stdout))
        sys.path.insert(0, folder)
        try:
            yield importlib.import_module(f"{name}.fingerprint").fingerprint
        finally:
            sys.path.remove(folder)


@app.command()
def main(
    images: Annotated[Path, typer.Option(help="Folder of pictures.", exists=True, file_okay=False)],
    against: Annotated[
        str | None, typer.Option(help="A git revision whose fingerprint to time instead of the plain pHash.")
    ] = None,
    rounds: Annotated[int, typer.Option(help="Turns each contender takes; each picture counts its fastest.")] = 20,
) -> None:
    """Print the hash stage's CPU milliseconds per image: the plain pHash (or ``--against``), the fingerprint,
    and their ratio."""
    items = [(p.read_bytes(), decode(p.read_bytes())) for p in sorted(images.iterdir()) if p.is_file()]
    with threadpool_limits(limits=1):
        if against is None:
            label = "plain pHash"
            times = fastest_ms({label: HASHERS["phash"], "now": fingerprint}, items, rounds)
        else:
            with earlier_fingerprint(against) as before:
                label = against
                times = fastest_ms({label: before, "now": fingerprint}, items, rounds)
    typer.echo(
        f"hash stage, {len(items)} pictures, fastest of {rounds} rounds: {label} {times[label]:.2f} ms, "
        f"fingerprint {times['now']:.2f} ms per image ({times['now'] / times[label]:.2f} ×)"
    )


if __name__ == "__main__":
    app()
