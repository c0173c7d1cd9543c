"""``python -m tooling.eval.cost``: CPU time of the worker's hash stage, now and with the plain pHash it replaced.

The hash stage is what the worker does per image between decoding and the model: SHA-256 of the bytes, then the
perceptual signals. Both are timed on the same decoded pictures, best of ``--repeat`` runs, in CPU time on one
thread: numpy's BLAS pool is held to one thread (threadpoolctl), since an idle pool's spinning counts as CPU time
too and moved the ratio by ±20 % between runs::

    python -m tooling.eval.cost --images data/eval-sources
    hash stage, 49 pictures: plain pHash 1.10 ms, fingerprint 1.90 ms per image (1.7 ×)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from PIL import Image
from threadpoolctl import threadpool_limits

from tooling.eval.dataset import decode
from worker.fingerprint import fingerprint
from worker.hashing import HASHERS, sha256_hex

app = typer.Typer(add_completion=False)


def per_image_ms(
    work: Callable[[bytes, Image.Image], object], items: list[tuple[bytes, Image.Image]], repeat: int
) -> float:
    """Best-of-``repeat`` CPU milliseconds per item of ``work``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for data, picture in items:
            work(data, picture)
        best = min(best, time.process_time() - start)
    return best * 1000 / len(items)


@app.command()
def main(
    images: Annotated[Path, typer.Option(help="Folder of pictures.", exists=True, file_okay=False)],
    repeat: Annotated[int, typer.Option(help="Runs; the fastest counts.")] = 5,
) -> None:
    """Print the hash stage's CPU milliseconds per image: plain pHash, the fingerprint, and their ratio."""
    items = [(p.read_bytes(), decode(p.read_bytes())) for p in sorted(images.iterdir()) if p.is_file()]
    phash = HASHERS["phash"]
    with threadpool_limits(limits=1):
        plain = per_image_ms(lambda data, picture: (sha256_hex(data), phash(picture)), items, repeat)
        now = per_image_ms(lambda data, picture: (sha256_hex(data), fingerprint(picture)), items, repeat)
    typer.echo(
        f"hash stage, {len(items)} pictures: plain pHash {plain:.2f} ms, fingerprint {now:.2f} ms per image "
        f"({now / plain:.1f} ×)"
    )


if __name__ == "__main__":
    app()
