"""A folder of ~50 distinct source photos from scikit-image's bundled samples, for the quality harness.

scikit-image ships about twenty real photos (no download). To get ~50 *distinct* sources deterministically, the
large or texture-like ones are cut into non-overlapping tiles instead of being used whole (never both: a tile
of a photo would be a partial copy of it). Whole photos are copied byte for byte; tiles are saved as PNG.

    python -m tooling.eval.sources data/eval-sources      # writes 49 files, then:
    python -m tooling.eval --images data/eval-sources

The chessboard pair and the stereo motorcycle pair are left out whole (each pair is one picture twice); only
the left motorcycle is tiled. Tiles that would be
nearly flat (the cell image's empty quarters) are avoided by using that image whole.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from tooling.samples import data_dir, photo, stem
from worker.imaging import to_rgb

#: Used whole, copied byte for byte.
WHOLE = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "horse.png",
    "page.png",
    "color.png",
    "text.png",
    "clock_motion.png",
    "phantom.png",
    "logo.png",
    "cell.png",
)

#: Cut into ``columns × rows`` tiles of the box ``(left, top, right, bottom)`` (fractions of the size).
TILED: dict[str, tuple[int, int, tuple[float, float, float, float]]] = {
    "moon.png": (2, 2, (0.0, 0.0, 1.0, 1.0)),
    "gravel.png": (2, 2, (0.0, 0.0, 1.0, 1.0)),
    "brick.png": (2, 2, (0.0, 0.0, 1.0, 1.0)),
    "grass.png": (2, 2, (0.0, 0.0, 1.0, 1.0)),
    "ihc.png": (2, 2, (0.0, 0.0, 1.0, 1.0)),
    "hubble_deep_field.jpg": (3, 3, (0.0, 0.0, 1.0, 1.0)),
    "retina.jpg": (2, 2, (0.15, 0.15, 0.85, 0.85)),  # inside the round fundus: no black corners
    "motorcycle_left.png": (2, 1, (0.0, 0.0, 1.0, 1.0)),
}


def tiles(image: Image.Image, columns: int, rows: int, box: tuple[float, float, float, float]) -> list[Image.Image]:
    """Non-overlapping tiles of ``box``, row by row."""
    w, h = image.size
    left, top, right, bottom = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    tw, th = (right - left) / columns, (bottom - top) / rows
    return [
        image.crop((round(left + c * tw), round(top + r * th), round(left + (c + 1) * tw), round(top + (r + 1) * th)))
        for r in range(rows)
        for c in range(columns)
    ]


def tiled_sources() -> Iterator[tuple[str, Image.Image]]:
    """The tiles of :data:`TILED` as ``(file name, RGB image)``, in a fixed order."""
    for name, (columns, rows, box) in TILED.items():
        with Image.open(data_dir() / name) as opened:
            opened.load()
            picture = to_rgb(opened)
        for i, tile in enumerate(tiles(picture, columns, rows, box)):
            yield f"{stem(name)}-tile{i}.png", tile


def distinct_images() -> Iterator[tuple[str, Image.Image]]:
    """The whole source set in memory, whole photos first: pictures no two of which are copies of each other.

    >>> names = [name for name, _ in distinct_images()]
    >>> len(names), names[0], names[-1]
    (49, 'astronaut.png', 'motorcycle_left-tile1.png')
    """
    for name in WHOLE:
        yield name, photo(name)
    yield from tiled_sources()


def write_sources(folder: Path) -> list[Path]:
    """Write the source set into ``folder`` (created) and return the files, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in WHOLE:
        target = folder / name
        shutil.copyfile(data_dir() / name, target)
        written.append(target)
    for name, tile in tiled_sources():
        target = folder / name
        tile.save(target, "PNG")
        written.append(target)
    return sorted(written)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m tooling.eval.sources FOLDER")
    files = write_sources(Path(args[0]))
    print(f"{len(files)} source images in {args[0]}")


if __name__ == "__main__":
    main()
