"""The held-out corpus: 1,988 distinct pictures from 29 independent offline collections, in folds by collection.

    python -m tooling.eval.corpus fetch                      # data/corpus/ + manifest.json (downloads once)
    python -m tooling.eval.corpus fetch --subset ci          # the small fixed subset CI runs (46 pictures)
    python -m tooling.eval.corpus relock                     # re-select everything; rewrites corpus.lock.json
    python -m tooling.eval.corpus relock --only A,B          # re-select A and B (or add them), keep the rest
    python -m tooling.eval --corpus data/corpus --fold test --stages exact,perceptual

Where the pictures come from (:data:`COLLECTIONS`): Debian packages, fetched with ``apt-get download`` (never
installed) and unpacked with ``dpkg-deb -x``; sample pictures bundled with Python packages (scikit-image,
matplotlib); and document pages and UI screens generated here as HTML and rendered by headless ``chromium``.

* **Lock** (:data:`LOCK`, committed): per collection the package and its exact version, the ``.deb``'s SHA-256,
  the fold, and every selected file with the SHA-256 of its bytes in the package and of the saved picture.
  ``fetch`` follows the lock; ``relock`` re-selects. Any checksum that differs is an error (:class:`MismatchError`).
* **Cache** (``data/corpus-cache``): the ``.deb`` files and the rendered pages. With it in place ``fetch`` uses
  no network: it checks the ``.deb`` checksums and the saved pictures' and rewrites nothing that matches.
* **Distinct**: the same picture at several sizes is one source. Within a collection, files whose *group key*
  (path with size tokens such as ``1920x1080`` / ``256x256`` / ``-l``/``-d`` removed, or the collection's own
  key) is the same are one picture: the one with most pixels is kept. Across everything, a picture whose 32×32
  grey thumbnail correlates above :data:`NEAR_COPY` with one already kept is dropped (:func:`dedupe`).
* **Saved** at most :data:`MAX_SIDE` px on the longer side (the bytes are copied as they are when already
  small enough; otherwise resized and saved as PNG, keeping transparency, or as JPEG when the source is one).
* **Folds** by collection (:attr:`Collection.fold`): no collection is on both sides.
* **Wide and tall** pictures (2:1 to 10:1, either orientation) come from their own collections, 9 of them, in
  both folds (:data:`WIDE_OR_TALL`): manuals' screenshots, photo strips and panoramas (GIMP, Double Commander,
  Hugin, OpenCV), game backgrounds (SuperTux), clip art and stamps of 3:1 and more, and rendered phone screens,
  full-page phone captures, side panels, toolbars, banners and ultrawide dashboards (:func:`screens`). The other
  collections keep to under 3:1, as their pictures were selected (the figures before issue 34 were measured on
  them); a picture of a wide collection that another collection holds already is left out as a near copy.
* **Category** per picture (:func:`categorise`): the collection's default, path rules (each wallpaper's label set
  after looking at it), then measured rules on the saved picture (half its pixels transparent → ``transparent``;
  a photo's mean luminance → ``photo-dark`` / ``photo-high-key``). ``recategorise`` re-applies them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import io
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from PIL import Image

LOCK = Path(__file__).with_name("corpus.lock.json")
ROOT = Path("data/corpus")
CACHE = Path("data/corpus-cache")
MANIFEST = "manifest.json"
MAX_SIDE = 1024
#: Correlation of 32×32 grey thumbnails above which two pictures are one (a resized or re-encoded copy).
NEAR_COPY = 0.98
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CATEGORIES = (
    "photo",
    "photo-dark",
    "photo-high-key",
    "flat-illustration",
    "abstract",
    "screenshot",
    "document",
    "icon-logo",
    "texture",
    "product",
    "transparent",
)
FOLDS = ("tune", "test")
#: Wallpapers: abstract unless their path is in a photo (or illustration) list; each listed after looking at it.
WALLPAPER = "abstract"

#: Larger source files are left out (a few clip-art PNGs of 15k × 15k px: a gigabyte each to decode).
MAX_SOURCE_PIXELS = 120_000_000


@contextmanager
def unbounded() -> Iterator[None]:
    """Pillow's decompression-bomb limit off (the worker's decode sets it; :data:`MAX_SOURCE_PIXELS` is checked
    on the header here instead), restored afterwards."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


class MismatchError(RuntimeError):
    """A file's checksum differs from the lock's: the corpus would not be the one the figures were made on."""


@dataclass(frozen=True, slots=True)
class Collection:
    """One independent source of pictures.

    ``kind``: ``deb`` (``package`` from Debian), ``python`` (files of an installed Python package's data folder,
    ``package`` is the module) or ``render`` (HTML pages generated by :func:`pages` and rendered by chromium).
    ``include`` / ``exclude``: glob patterns on the path inside the package. ``rules``: ``(glob, category)``,
    first match wins, before the measured rules. ``group``: a regex whose first group is the group key (same
    key → same picture at another size); default :func:`default_group`. ``cap``: at most this many pictures,
    the first by SHA-256 of their bytes (an arbitrary but fixed order). ``min_side``, ``min_aspect``,
    ``max_aspect``: a file's shorter side and its aspect ratio (longer side over shorter, either orientation) must
    be within these. ``ci``: how many go to the CI subset.
    """

    name: str
    kind: str
    package: str
    fold: str
    category: str
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()
    group: str | None = None
    cap: int | None = None
    min_side: int = 200
    min_aspect: float = 0.0
    max_aspect: float = 3.0
    ci: int = 0


def _stems(*names: str) -> tuple[str, ...]:
    """Glob patterns for the files of these names, without extension, in any folder (a name with ``*`` is a glob
    on the file name; one starting with ``*``, on the whole path).

    >>> _stems("a", "b*", "*/c/*")
    ('*/a.*', '*/b*', '*/c/*')
    """
    return tuple(n if n.startswith("*") else f"*/{n}" if "*" in n else f"*/{n}.*" for n in names)


def _named(category: str, *names: str) -> tuple[tuple[str, str], ...]:
    """Category rules for files of these names (:func:`_stems`)."""
    return tuple((pattern, category) for pattern in _stems(*names))


#: The wide and tall collections' limits: pictures of 2:1 to 10:1 only (those under 2:1 are the other
#: collections'), and a shorter side of 100 px (a 4:1 banner of 400 px is an ordinary upload).
WIDE_OR_TALL: dict[str, Any] = {"min_aspect": 2.0, "max_aspect": 10.0, "min_side": 100}
#: opencv-doc's class diagrams that are tall (the hundred wide ones are rows of the same boxes).
OPENCV_TALL_DIAGRAMS = (
    "d0/d13/classcv_1_1Feature2D",
    "d3/d46/classcv_1_1Algorithm",
    "d3/d6c/classcv_1_1dnn_1_1Layer",
    "d9/d26/classcv_1_1viz_1_1Widget3D",
    "d9/d2e/classcv_1_1datasets_1_1Dataset",
    "dc/d75/classcv_1_1dnn_1_1ActivationLayer",
    "de/d47/structcv_1_1datasets_1_1Object",
)

#: Series in the manuals: the same dialog, drawing or photo again with another setting, another result or
#: another projection (a near copy for a person, if not for the 32×32 check): the first of each is kept.
GIMP_SERIES = (
    *("alpha-channel-1", "alpha-channel-2", "alpha-channel-3a", "alpha-channel-3b"),
    *("measure-path-ex2", "measure-path-ex3", "measure-path-ex4", "curves-lighten-2", "posterize-ex2"),
    *("paint-dynamics-fade-example-2", "pencil-dialog", "eraser-dialog", "airbrush-dialog", "heal-dialog"),
    *("perspective-clone-dialog", "blur-sharpen-dialog", "unified-transform-adjust", "prefs-folders-brush"),
    *("components", "desaturate-menu", "convert-5", "save-profile-3", "assign-4", "border-selection-lock2"),
    *("canvas-size-ex1", "intersect-mask-example", "replace-mask-example", "subtract-mask-example", "autocrop-2"),
    *("script-fu-console-browse-applied", "paste-new-pattern", "save-select-file-type", "overwriting-file"),
    *("channel-mixer-ex2", "channel-mixer-ex3", "channel-mixer-ex4", "spyrogimp-example5", "spyrogimp-example6"),
    *("line-nova-rand", "line-nova-sharp", "new-gradient-2", "new-gradient-3", "chrome-it-step3", "chrome-it-step4"),
    *("carve-it-invers", "enhance-red-eye-after", "map-lic-blur-lg", "wind3", "polcoords2", "median-alpha-percent"),
    *("blend-orig", "burn-in-orig", "warp-ex-move", "FG-select-unknown", "pan-project-result-2"),
)
GIMP_PHOTOS = (
    *("little_planet-applied", "little_planet-equirect", "pan-project-origin", "pan-project-result-1"),
    *("enhance-red-eye-before", "erode-milord", "median-percent", "median-noise", "median-scratch"),
    *("vpropag-ex-b-w", "decompose-ex1", "burn-in-applied", "spinning-globe", "select-move-1"),
    *("clone-ex-sample-merged", "FG-select-draw-bg"),
)
OPENCV_SERIES = (
    *("Threshold_Tutorial_Theory_Binary", "Threshold_Tutorial_Theory_Binary_Inverted"),
    *("Threshold_Tutorial_Theory_Truncate", "Threshold_Tutorial_Theory_Zero_Inverted"),
    *("ambush_5_right", "ambush_5_bm_with_filter", "fuzzy_filt_output", "fuzzy_inp_output", "fft2", "fft4"),
    *("template_ccoeffn_2", "template_ccorr_3", "template_ccorrn_4", "template_sqdiff_5", "template_sqdiffn_6"),
    *("homography_camera_displacement_poses", "homography_perspective_correction_chessboard_warp"),
    *("superpixels_blocks2", "sbt_run_face", "resmog", "PropertySheetOpenCVLibrariesRelease", "morph61"),
    *("binary", "horiz", "vert", "smooth", "camshift_result", "Feature_FlannMatcher_Result_ratio_test"),
    *("8_import_module", "sample_rec_ste", "hash_computation_chart", "tutorial_how_matrix_stored_2"),
    *("Feature_Homography_Result", "homography_source_desired_images"),
)
OPENCV_PHOTOS = (
    *("2", "scenetext_word02", "scenetext_word04", "Basic_Linear_Transform_Tutorial_gamma_correction"),
    *("CopyMakeBorder_Tutorial_Results", "Feature_Description_BruteForce_Result", "VideoDemo_RGB_PETS2006"),
    *("Template_Matching_Template_Theory_Summary", "VideoDemo_thermal_park", "ambush_5_left", "arucocalibration"),
    *("bilateral", "black_car", "boat", "canny1", "charucocalibration", "disparity_map", "equalization_opencv"),
    *("example", "fast_kp", "fft1", "frame", "grabcut_mask", "graf", "histo50", "homography_stitch_compare"),
    *("homography_perspective_correction_chessboard_matches", "imgs", "inpaint_basics", "lines", "matcher_result2"),
    *("meanshift_result", "nlm_multi", "originalVSdistorted", "output", "overlay", "plant_new_backgrounds"),
    *("pointCloud", "reconstructed_fastVSbest", "resframe", "resimg", "rotation", "sagrada_familia_input"),
    *("sample_rec_cyl", "superpixels_blocks", "superpixels_lsc", "superpixels_slic", "template_ccoeff_1"),
    *("temple_input", "translation", "white_car", "optical_flow_basic1", "filter_2d_tutorial_result"),
    *("homography_perspective_correction", "resultMatMaskFilter2D"),
)
OPENCV_SCREENS = (
    *("6-external-folder", "7_5-new-java-project", "7_import_module", "CMakeOutputPackageNotFound", "CMakeSelectBin"),
    *("Capture2", "Capture6", "Capture7", "Capture80", "Corner_Subpixels_Result", "IntelTBB", "Moments_Result2"),
    *("OpenCVBuildResultWindows", "OpenCV_Install_Directory", "PropertySheet*", "VCDirectories2008"),
    *("VisualStudioCommandLineArguments", "a12", "a14", "a4", "a7", "a9", "android_package_7zip", "ant_output"),
    *("attributes-details", "breakpoint", "cmake_output", "eclipse_*", "gvedit", "header_directive", "help_button"),
    *("linking_opencv_ios", "ndk_build", "qtDownloadThisPackage", "render_example", "sbt_eclipse", "sbt_run"),
    *("train1", "usb_device_connect_*", "vs_locals"),
)
OPENCV_ABSTRACT = (
    *("eigenfaces_opencv", "resgmg", "result_normal", "ambush_5_bm", "res", "histogram_equalization"),
    *("homography_camera_displacement_compare", "homography_stitch_Suzanne", "approx", "Moments_Result1"),
)

COLLECTIONS: tuple[Collection, ...] = (
    # --- tuning fold ------------------------------------------------------------------------------------------
    Collection(
        "plasma-workspace-wallpapers",
        "deb",
        "plasma-workspace-wallpapers",
        "tune",
        WALLPAPER,
        include=("usr/share/wallpapers/*",),
        group=r"usr/share/wallpapers/([^/]+)/",
        rules=(
            *(
                (f"usr/share/wallpapers/{name}/*", "photo")
                for name in (
                    "BytheWater",
                    "ColdRipple",
                    "DarkestHour",
                    "EveningGlow",
                    "FallenLeaf",
                    "Grey",
                    "Kite",
                    "OneStandsOut",
                    "Path",
                    "Volna",
                    "summer_1am",
                )
            ),
            *(
                (f"usr/share/wallpapers/{name}/*", "flat-illustration")
                for name in ("Altai", "SafeLanding", "FlyingKonqui")
            ),
        ),
    ),
    Collection(
        "desktop-base",
        "deb",
        "desktop-base",
        "tune",
        WALLPAPER,
        include=("*/grub/grub-16x9.png", "*/grub/grub-4x3.png", "usr/share/plymouth/themes/*/*background*.png"),
        group=r"(?:desktop-base/|themes/)([a-z]+)",
        ci=4,
    ),
    Collection(
        "scikit-image",
        "python",
        "skimage",
        "tune",
        "photo",
        rules=(
            ("page.png", "document"),
            ("text.png", "document"),
            ("logo.png", "icon-logo"),
            ("*-tile*", "texture"),
            ("phantom.png", "abstract"),
            ("color.png", "abstract"),
        ),
        min_side=0,
        ci=15,
    ),
    Collection(
        "openclipart-png",
        "deb",
        "openclipart-png",
        "tune",
        "flat-illustration",
        include=("usr/share/openclipart/png/*",),
        exclude=("*/shapes/*", "*/special/*"),
        rules=(("*/logos/*", "icon-logo"), ("*/computer/icons/*", "icon-logo"), ("*/signs_and_symbols/*", "icon-logo")),
        min_side=256,
        cap=260,
    ),
    Collection(
        "games-thumbnails",
        "deb",
        "games-thumbnails",
        "tune",
        "screenshot",
        include=("usr/share/games/thumbnails/*",),
        min_side=150,
        cap=200,
    ),
    Collection(
        "extremetuxracer-data",
        "deb",
        "extremetuxracer-data",
        "tune",
        "texture",
        include=("usr/share/games/etr/textures/*", "usr/share/games/etr/terrains/*"),
        exclude=("*/elev.png", "*/terrain.png", "*/trees.png"),
        rules=(("*/textures/*", "texture"),),
        min_side=128,
        ci=4,
    ),
    Collection("pages-a", "render", "pages-a", "tune", "document"),
    # --- test fold --------------------------------------------------------------------------------------------
    Collection(
        "mate-backgrounds",
        "deb",
        "mate-backgrounds",
        "test",
        WALLPAPER,
        include=("usr/share/backgrounds/*",),
        rules=(("*/mate/nature/*", "photo"),),
    ),
    Collection(
        "lomiri-wallpapers-16.04",
        "deb",
        "lomiri-wallpapers-16.04",
        "test",
        "photo",
        include=("usr/share/*",),
        rules=(("*analogpattern*", "abstract"), ("*greentock*", "abstract"), ("*umang*", "abstract")),
    ),
    Collection(
        "lomiri-wallpapers-20.04",
        "deb",
        "lomiri-wallpapers-20.04",
        "test",
        WALLPAPER,
        include=("usr/share/*",),
        rules=(("*Kleiber*", "photo"), ("*Painting-Colors*", "flat-illustration")),
        ci=4,
    ),
    Collection(
        "ukui-wallpapers",
        "deb",
        "ukui-wallpapers",
        "test",
        WALLPAPER,
        include=("usr/share/backgrounds/*",),
        rules=tuple((f"*/{n}.*", "flat-illustration") for n in ("calla", "city", "desert", "rollpaper")),
    ),
    Collection(
        "gnome-backgrounds",
        "deb",
        "gnome-backgrounds",
        "test",
        WALLPAPER,
        include=("usr/share/backgrounds/*",),
        group=r"gnome/([a-z]+)-[dl]\.",
        rules=(("*/wood-*", "texture"),),
    ),
    Collection(  # one picture at several sizes; the portrait one is a re-layout of it
        "sway-backgrounds",
        "deb",
        "sway-backgrounds",
        "test",
        WALLPAPER,
        include=("usr/share/*",),
        exclude=("*Portrait*",),
        ci=1,
    ),
    Collection(
        "matplotlib",
        "python",
        "matplotlib",
        "test",
        "photo",
        rules=(("logo2.png", "icon-logo"), ("Minduka_Present_Blue_Pack.png", "product")),
        min_side=0,
        ci=2,
    ),
    Collection(
        "pysiogame",
        "deb",
        "pysiogame",
        "test",
        "flat-illustration",
        include=("usr/share/games/pysiogame/res/images/art4apps/*",),
        cap=200,
    ),
    Collection(
        "oxygen-icon-theme",
        "deb",
        "oxygen-icon-theme",
        "test",
        "icon-logo",
        include=("usr/share/icons/oxygen/base/*",),
        min_side=128,
        cap=200,
    ),
    Collection(
        "tuxpaint-stamps-default",
        "deb",
        "tuxpaint-stamps-default",
        "test",
        "transparent",
        include=("usr/share/tuxpaint/stamps/*",),
        exclude=("*/alphabets/*", "*_mirror.*"),  # the package ships some stamps mirrored too
        cap=200,
    ),
    Collection(
        "pingus-data",
        "deb",
        "pingus-data",
        "test",
        "texture",
        include=("usr/share/games/pingus/data/images/textures/*", "usr/share/games/pingus/data/images/groundpieces/*"),
        exclude=("*-mirrored.*",),
        rules=(("*/groundpieces/*", "flat-illustration"),),  # rocks, plants, creatures: game sprites
        min_side=128,
        ci=8,
    ),
    Collection(
        "khangman",
        "deb",
        "khangman",
        "test",
        "screenshot",
        include=("usr/share/doc/HTML/*", "usr/share/khangman/*"),
        exclude=("*/gallows/*",),  # a drawing in ten steps: each a near copy of the next
        rules=(("*/Images/handbook*", "icon-logo"), ("usr/share/khangman/*", "abstract")),
        group=r"(?:HTML/[a-z_]+/khangman/|khangman/)(.+?)\.",
        ci=8,
    ),
    Collection("pages-b", "render", "pages-b", "test", "document"),
    # --- wide and tall pictures (2:1 to 10:1 only: :data:`WIDE_OR_TALL`), both folds (issue 34) ----------------
    Collection(  # the GIMP manual: dialogs, menus, tool options; the filters' examples, photo strips, panoramas
        "gimp-help-en",
        "deb",
        "gimp-help-en",
        "tune",
        "screenshot",
        include=("usr/share/gimp/2.0/help/en/images/*",),
        exclude=_stems(*GIMP_SERIES, "*/menus/colors/auto/[!a]*"),
        rules=(
            *_named("photo", *GIMP_PHOTOS),
            ("*/filters/examples/*", "abstract"),
            ("*/spyrogimp-example*", "abstract"),
        ),
        **WIDE_OR_TALL,
    ),
    Collection(
        "doublecmd-help-en",
        "deb",
        "doublecmd-help-en",
        "tune",
        "screenshot",
        include=("usr/share/doublecmd/doc/en/images/*",),
        exclude=_stems("pic55", "pic56", "toolbarexternal", "toolbarinternal2", "variablesample"),  # one dialog
        **WIDE_OR_TALL,
    ),
    Collection(  # Hugin's manual: panoramas (one projection of each scene), the stitcher's screens
        "hugin-data",
        "deb",
        "hugin-data",
        "tune",
        "photo",
        include=("usr/share/hugin/xrc/data/*",),
        exclude=(
            "*/100px-*",
            "*/200px-*",
            "*/220px-*",
            *_stems(
                "250px-Equirectangular",
                "Big_ben_cylindrical",
                "600px-Tuebingen_Neckarfront_withdustspots_small15_2006-06-11",
                "Bubble-distortion",
                "Pincushion-distortion",
                "600px-Hugin2013_move_drag_tab",
            ),
        ),
        rules=(("*Hugin2013*", "screenshot"), ("*/Autopano-prefs.*", "screenshot"), ("*/logo.*", "icon-logo")),
        **WIDE_OR_TALL,
    ),
    Collection(  # what openclipart-png leaves out at 3:1 and more
        "openclipart-png-wide",
        "deb",
        "openclipart-png",
        "tune",
        "flat-illustration",
        include=("usr/share/openclipart/png/*",),
        exclude=(
            "*/shapes/*",
            "*/special/*",
            *_stems("bottled_drink_bw", "glace_03_bw_jean-victor__01", "trumpet_b_flat_colour_ganso"),  # recoloured
            *_stems("linux_hacked_fearzip_01", "boating_rules4", "simbol_donna2"),  # the same drawing again
            *_stems("stylized_yoga_person_ger_06"),  # "Linked image not found"
        ),
        rules=(("*/logos/*", "icon-logo"), ("*/computer/icons/*", "icon-logo"), ("*/signs_and_symbols/*", "icon-logo")),
        **{**WIDE_OR_TALL, "min_aspect": 3.0},
    ),
    Collection("screens-a", "render", "screens-a", "tune", "screenshot", **WIDE_OR_TALL),
    Collection(  # OpenCV's manual: photo strips (a photo and its results side by side), screens, figures
        "opencv-doc",
        "deb",
        "opencv-doc",
        "test",
        "document",
        include=(
            "usr/share/doc/opencv-doc/examples/*",
            "usr/share/doc/opencv-doc/opencv4/html/[!d]*",  # not the class diagrams in d0/ … df/
            "usr/share/doc/opencv-doc/opencv4/html/d[!0-9a-f]*",
            *(f"usr/share/doc/opencv-doc/opencv4/html/{d}.png" for d in OPENCV_TALL_DIAGRAMS),
        ),
        exclude=_stems(*OPENCV_SERIES),
        rules=(
            ("*/html/[01][0-9].jpg", "photo"),
            *_named("photo", *OPENCV_PHOTOS),
            *_named("screenshot", *OPENCV_SCREENS),
            *_named("abstract", *OPENCV_ABSTRACT),
            *_named("flat-illustration", "Moments_Source_Image", "blending", "fuzzy_inp_input"),
        ),
        **WIDE_OR_TALL,
    ),
    Collection(  # SuperTux's backgrounds (parallax layers), decals and title pictures
        "supertux-data",
        "deb",
        "supertux-data",
        "test",
        "flat-illustration",
        include=tuple(
            f"usr/share/games/supertux2/images/{d}/*"
            for d in ("background", "decal", "engine/menu", "credits", "objects", "particles")
        ),
        exclude=(
            "*displacement*",  # a displacement map, not a picture
            "*-preview.*",  # the layers of ice_cave together
            *_stems("bridgeocean-fade", "bridgeocean-nofade", "bridgecloud-light"),  # one picture, other edits
        ),
        rules=(("*/logo_dev.*", "icon-logo"), ("*/milestone.*", "icon-logo"), ("*/heatshimmer.*", "abstract")),
        **WIDE_OR_TALL,
    ),
    Collection(  # what tuxpaint-stamps-default leaves out: 3:1 and more, and under 200 px across
        "tuxpaint-stamps-default-wide",
        "deb",
        "tuxpaint-stamps-default",
        "test",
        "transparent",
        include=("usr/share/tuxpaint/stamps/*",),
        exclude=("*/alphabets/*", "*_mirror.*"),
        **WIDE_OR_TALL,
    ),
    Collection("screens-b", "render", "screens-b", "test", "screenshot", **WIDE_OR_TALL),
)
BY_NAME = {c.name: c for c in COLLECTIONS}

SIZE_TOKEN = re.compile(r"(\d{2,5}x\d{2,5}|@\dx)")


def default_group(path: str) -> str:
    """The group key of a file: its path without extension and without size tokens (``1920x1080``, ``@2x``).

    >>> default_group("usr/share/icons/oxygen/base/256x256/apps/kate.png")
    'usr/share/icons/oxygen/base//apps/kate'
    """
    return SIZE_TOKEN.sub("", path.rsplit(".", 1)[0])


def group_key(collection: Collection, path: str) -> str:
    if collection.group:
        m = re.search(collection.group, path)
        if m:
            return m.group(1)
    return default_group(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


# Pictures -----------------------------------------------------------------------------------------------------


def open_reduced(data: bytes, side: int = 256) -> Image.Image:
    """The picture decoded at about ``side`` px (JPEG draft decoding), RGBA."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (side, side))
        picture = opened.convert("RGBA")
    picture.thumbnail((side, side))
    return picture


def thumbnail(picture: Image.Image) -> npt.NDArray[np.float64]:
    """32×32 grey view (transparent parts on mid grey), standardised: the near-copy check's signature."""
    rgba = picture.convert("RGBA")
    grey = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
    grey.alpha_composite(rgba)
    small = np.asarray(grey.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-9 else small


def dedupe(thumbs: list[npt.NDArray[np.float64]], kept: list[npt.NDArray[np.float64]] | None = None) -> list[bool]:
    """Which of ``thumbs`` (in order) to keep: each is dropped when it, or its mirror image, correlates above
    :data:`NEAR_COPY` with an earlier kept one (or one of ``kept``). Order the candidates largest first to keep
    the largest size. (Packages ship mirrored copies too: tuxpaint's ``*_mirror.png`` stamps.)

    >>> a = thumbnail(Image.linear_gradient("L").rotate(30))
    >>> dedupe([a, a * 1.0, thumbnail(Image.linear_gradient("L"))])
    [True, False, True]
    """
    if not thumbs:
        return []
    t = np.stack(thumbs).astype(np.float32)
    flipped = t.reshape(-1, 32, 32)[:, :, ::-1].reshape(len(thumbs), -1)
    out = np.array([bool(np.any(row)) for row in thumbs])  # a flat picture has no signature: left out
    if kept:
        k = np.stack(kept).astype(np.float32)
        out &= ~np.any(np.maximum(k @ t.T, k @ flipped.T) > NEAR_COPY, axis=0)
    near = np.maximum(t @ t.T, t @ flipped.T) > NEAR_COPY
    for i in range(len(thumbs)):
        if out[i] and np.any(near[i, :i] & out[:i]):
            out[i] = False
    return [bool(k) for k in out]


def measures(picture: Image.Image) -> dict[str, float]:
    """Measured properties on a ≤256 px view: share of transparent pixels, mean luminance (0–1), share of flat
    pixels (grey gradient under 2 levels to both neighbours), distinct colours (of 4-bit-per-channel levels)."""
    rgba = np.asarray(picture.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3]
    opaque = alpha > 200
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    dx = np.abs(np.diff(grey, axis=1))[:-1, :]
    dy = np.abs(np.diff(grey, axis=0))[:, :-1]
    flat = (dx < 2) & (dy < 2)
    mask = opaque[:-1, :-1]
    quant = (rgba[..., :3][opaque] // 16).astype(np.int64)
    colours = len(np.unique(quant[:, 0] * 256 + quant[:, 1] * 16 + quant[:, 2])) if len(quant) else 0
    return {
        "transparent": float(np.mean(alpha < 250)),
        "luminance": float(grey[opaque].mean() / 255) if opaque.any() else 0.0,
        "flat": float(flat[mask].mean()) if mask.any() else 1.0,
        "colours": float(colours),
    }


#: Share of (partly) transparent pixels from which a picture is a ``transparent`` one: the background a decoder
#: puts behind it is most of what a hash sees.
TRANSPARENT = 0.5


def categorise(collection: Collection, path: str, m: dict[str, float]) -> str:
    """The category of one picture: path rules, else the collection's default; then the measured rules.

    >>> dark = {"transparent": 0.0, "luminance": 0.1, "flat": 0.2, "colours": 900.0}
    >>> categorise(BY_NAME["mate-backgrounds"], "usr/share/backgrounds/mate/nature/x.jpg", dark)
    'photo-dark'
    """
    category = next((c for pattern, c in collection.rules if fnmatch.fnmatch(path, pattern)), collection.category)
    if m["transparent"] >= TRANSPARENT and category in ("flat-illustration", "photo", "abstract"):
        return "transparent"
    if category == "photo":
        if m["luminance"] < 0.25:
            return "photo-dark"
        if m["luminance"] > 0.68:
            return "photo-high-key"
    return category


def picture_category(collection: Collection, path: str, saved: bytes) -> str:
    """The category of a picture as saved (the measured rules look at the saved picture)."""
    if collection.kind == "render":
        return page_category(path)
    with unbounded():
        return categorise(collection, path, measures(open_reduced(saved)))


def recategorise(root: Path = ROOT, lock: Path = LOCK, collections: tuple[Collection, ...] = COLLECTIONS) -> int:
    """Apply the category rules again to the fetched pictures of ``root`` and rewrite the lock's categories and
    CI flags (no download, no re-selection); returns how many categories changed."""
    locked = json.loads(lock.read_text())
    by_name = {c.name: c for c in collections}
    changed = 0
    for name, entry in locked["collections"].items():
        for f in entry["files"]:
            category = picture_category(by_name[name], f["path"], (root / name / f["file"]).read_bytes())
            changed += category != f["category"]
            f["category"] = category
        mark_ci(by_name[name], entry["files"])
    lock.write_text(json.dumps(locked, indent=1, ensure_ascii=False) + "\n")
    return changed


def mark_ci(collection: Collection, entries: list[dict[str, Any]]) -> None:
    """Set the CI flag of ``collection.ci`` entries, taking the categories in turn (the first by path of each,
    then the second, …) so that a few pictures still cover the collection's categories.

    >>> entries = [{"path": p, "category": c} for p, c in (("a", "photo"), ("b", "photo"), ("c", "document"))]
    >>> mark_ci(BY_NAME["matplotlib"], entries)
    >>> [e["ci"] for e in entries]
    [True, False, True]
    """
    rank: dict[str, int] = {}
    order = []
    for e in sorted(entries, key=lambda e: e["path"]):
        rank[e["category"]] = rank.get(e["category"], -1) + 1
        order.append((rank[e["category"]], e["category"], e["path"]))
    chosen = {path for _, _, path in sorted(order)[: collection.ci]}
    for e in entries:
        e["ci"] = e["path"] in chosen


def save_bytes(data: bytes, name: str) -> tuple[bytes, str]:
    """The bytes to save for a source file and its file name: unchanged when at most :data:`MAX_SIDE` px and
    PNG/JPEG/WebP; otherwise resized (Lanczos) and saved as JPEG (from a JPEG without alpha) or PNG."""
    with unbounded(), Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "").upper()
        if max(im.size) <= MAX_SIDE and fmt in ("PNG", "JPEG", "WEBP"):
            return data, name
        scale = MAX_SIDE / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        if fmt == "JPEG":
            im.draft("RGB", size)
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
        picture = im.convert("RGBA" if has_alpha else "RGB").resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    stem = name.rsplit(".", 1)[0]
    if fmt == "JPEG" and not has_alpha:
        picture.save(out, "JPEG", quality=92)
        return out.getvalue(), stem + ".jpg"
    picture.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue(), stem + ".png"


def flat_name(path: str) -> str:
    """A file name for a path inside a package: its last parts joined, so that same-named files stay apart.

    >>> flat_name("usr/share/wallpapers/Path/contents/images/1920x1080.jpg")
    'Path-contents-images-1920x1080.jpg'
    """
    parts = path.split("/")
    keep = [p for p in parts[-4:] if p not in ("usr", "share")]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(keep))


# Sources: Debian packages, Python packages, rendered pages -----------------------------------------------------


def apt_version(package: str) -> str:
    """The candidate version apt would download (``apt-get update`` must have run once)."""
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise RuntimeError(f"apt has no candidate for {package}: run `apt-get update` (as root) first")
    return m.group(1)


def deb_path(cache: Path, package: str, version: str) -> Path:
    folder = cache / "debs"
    found = sorted(folder.glob(f"{package}_*.deb"))
    epochless = version.split(":", 1)[-1]
    for p in found:
        if p.name.split("_")[1].replace("%3a", ":").split(":", 1)[-1] == epochless:
            return p
    return folder / f"{package}_{version.replace(':', '%3a')}_all.deb"


def fetch_deb(cache: Path, package: str, version: str, expected: str | None) -> Path:
    """The ``.deb`` of ``package`` at ``version`` in the cache (``apt-get download`` when missing); its SHA-256
    must be ``expected`` (when given)."""
    path = deb_path(cache, package, version)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["apt-get", "download", f"{package}={version}"],
            cwd=path.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"apt-get download {package}={version} failed (run `apt-get update` as root?):\n{result.stderr}"
            )
        path = deb_path(cache, package, version)
        if not path.exists():
            raise RuntimeError(f"apt-get download {package}={version} wrote no {path.name} in {path.parent}")
    if expected is not None:
        got = file_sha256(path)
        if got != expected:
            raise MismatchError(f"{path}: SHA-256 {got}, the lock says {expected}")
    return path


def deb_files(deb: Path, scratch: Path) -> dict[str, Path]:
    """Unpack ``deb`` into ``scratch`` (``dpkg-deb -x``); its picture files by path inside the package."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
    return {
        str(p.relative_to(scratch)): p
        for p in sorted(scratch.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.suffix.lower() in IMAGE_SUFFIXES
    }


def python_files(collection: Collection, scratch: Path) -> tuple[str, dict[str, Path]]:
    """The version and picture files of a Python package's bundled samples."""
    from importlib.metadata import version

    if collection.package == "skimage":  # the harness's old sample set (tooling.eval.sources), as it writes it
        from tooling.eval.sources import write_sources

        return version("scikit-image"), {p.name: p for p in write_sources(scratch)}
    if collection.package == "matplotlib":
        import matplotlib as mpl

        folder = Path(mpl.get_data_path()) / "sample_data"
        return version("matplotlib"), {
            p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
        }
    raise ValueError(f"no Python sample source {collection.package!r}")


# Rendered pages ---------------------------------------------------------------------------------------------

WORDS = (  # noqa: SIM905 (a paragraph reads better than a list of 100 strings)
    "the quick brown fox jumps over lazy dog upload bucket image worker index search query match report table "
    "figure quarterly revenue growth customer order invoice shipping account balance payment policy section "
    "chapter method result analysis sample model threshold recall precision storage cluster region latency "
    "request response error retry queue batch review gallery duplicate original copy photo picture colour "
    "summary overview introduction conclusion appendix reference budget forecast meeting agenda minutes project "
    "schedule milestone release version feature issue ticket status priority owner team member contract"
).split()
FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono", "Liberation Serif", "Liberation Sans")
PALETTES = (
    ("#1f6feb", "#f6f8fa", "#24292f"),
    ("#d1242f", "#fff8f0", "#1b1b1b"),
    ("#2da44e", "#f0fff4", "#0b2e13"),
    ("#8250df", "#faf5ff", "#1f1033"),
    ("#bf8700", "#fffbea", "#3d2e00"),
    ("#0a3069", "#0d1117", "#e6edf3"),  # dark theme
    ("#57606a", "#ffffff", "#000000"),
)
#: Pages per rendered collection; sizes are CSS px (rendered at 1×).
PAGES = 40
#: Renderings of one page before its bytes count as differing from the lock (Chromium's paint is not always the same).
RENDER_TRIES = 3
DOC_SIZE = (816, 1056)
UI_SIZES = ((1280, 800), (1024, 768), (1440, 900), (414, 896), (800, 600))


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def document_html(rng: random.Random, title: str) -> str:
    """A text document page: headings, paragraphs, lists, a table, in one of a few fonts and layouts."""
    font = rng.choice(FONTS)
    accent, _, ink = rng.choice(PALETTES[:5] + PALETTES[6:])
    columns = rng.choice((1, 1, 2))
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for s in range(rng.randint(2, 4)):
        parts.append(f"<h2>{s + 1}. {html.escape(_sentence(rng, rng.randint(2, 5))[:-1])}</h2>")
        for _ in range(rng.randint(1, 3)):
            parts.append(f"<p>{' '.join(_sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 6)))}</p>")
        kind = rng.random()
        if kind < 0.35:
            rows = "".join(
                "<tr>" + "".join(f"<td>{rng.choice(WORDS)} {rng.randint(0, 9999)}</td>" for _ in range(4)) + "</tr>"
                for _ in range(rng.randint(3, 8))
            )
            parts.append(f"<table><tr><th>item</th><th>count</th><th>owner</th><th>total</th></tr>{rows}</table>")
        elif kind < 0.6:
            parts.append("<ul>" + "".join(f"<li>{_sentence(rng, rng.randint(3, 9))}</li>" for _ in range(4)) + "</ul>")
    size = rng.choice((11, 12, 13, 14))
    style = (
        f"body{{font-family:'{font}';font-size:{size}pt;color:{ink};background:#fff;"
        f"margin:{rng.choice((48, 64, 80))}px;"
        f"column-count:{columns};column-gap:32px;line-height:{rng.choice((1.3, 1.45, 1.6))}}}"
        f"h1{{color:{accent};font-size:{size + 10}pt;column-span:all}}h2{{font-size:{size + 3}pt}}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:3px 6px}"
        f"th{{background:{accent};color:#fff}}"
    )
    head = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>"
    return f"{head}<body>{''.join(parts)}</body></html>"


def ui_html(rng: random.Random, title: str) -> str:
    """An application screen: a top bar, a side menu, cards, buttons, a form or a data grid."""
    accent, bg, ink = rng.choice(PALETTES)
    font = rng.choice(FONTS[:2] + FONTS[4:])
    menu = "".join(f"<li>{rng.choice(WORDS).capitalize()}</li>" for _ in range(rng.randint(4, 9)))
    cards = "".join(
        f"<div class='card'><h3>{rng.choice(WORDS).capitalize()}</h3><div class='big'>{rng.randint(1, 99999):,}</div>"
        f"<div class='bar' style='width:{rng.randint(10, 100)}%'></div><p>{_sentence(rng, rng.randint(3, 8))}</p>"
        f"<button>{rng.choice(WORDS)}</button></div>"
        for _ in range(rng.randint(2, 6))
    )
    grid = ""
    if rng.random() < 0.5:
        grid = (
            "<table>"
            + "".join(
                "<tr>" + "".join(f"<td>{rng.choice(WORDS)}</td>" for _ in range(rng.randint(3, 6))) + "</tr>"
                for _ in range(rng.randint(4, 12))
            )
            + "</table>"
        )
    else:
        grid = (
            "<form>"
            + "".join(
                f"<label>{rng.choice(WORDS)}<input value='{rng.choice(WORDS)} {rng.randint(1, 99)}'></label>"
                for _ in range(rng.randint(3, 7))
            )
            + "<button class='primary'>Save</button></form>"
        )
    side = rng.choice(("left", "right", "none"))
    style = (
        f"body{{margin:0;font-family:'{font}';background:{bg};color:{ink};font-size:{rng.choice((13, 14, 15))}px}}"
        f"header{{background:{accent};color:#fff;padding:{rng.choice((10, 14, 18))}px 20px;font-size:20px}}"
        f"nav{{float:{side};width:190px;{'display:none;' if side == 'none' else ''}padding:8px}}"
        "nav li{list-style:none;padding:8px;border-bottom:1px solid rgba(128,128,128,.3)}"
        "main{overflow:hidden;padding:16px}"
        f".card{{display:inline-block;vertical-align:top;width:{rng.choice((180, 220, 260))}px;margin:8px;padding:12px;"
        f"border-radius:{rng.choice((0, 4, 10))}px;box-shadow:0 1px 4px rgba(0,0,0,.3);"
        "background:rgba(128,128,128,.08)}"
        f".big{{font-size:28px;color:{accent}}}.bar{{height:6px;background:{accent}}}"
        f"button{{border:1px solid {accent};background:transparent;color:{ink};padding:6px 12px;border-radius:4px}}"
        f".primary{{background:{accent};color:#fff}}table{{border-collapse:collapse;margin:8px}}"
        "td{border:1px solid rgba(128,128,128,.5);padding:6px 10px}label{display:block;margin:8px}"
        "input{margin-left:8px;padding:4px}"
    )
    body = f"<header>{html.escape(title)}</header><nav><ul>{menu}</ul></nav><main><div>{cards}</div>{grid}</main>"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{body}</body></html>"


#: The shapes of the screens collections (``screens-a``, ``screens-b``), CSS px (rendered at 1×): the wide and tall
#: screenshots people upload. A phone screen is 9:19.5 or near it (tall 2–3:1); its full-page capture, a side
#: panel, an application's top strip, a web banner and a dual or super-ultrawide monitor are 3:1 and more.
PHONE_SIZES = ((390, 844), (412, 915), (360, 800), (393, 852), (375, 812))
SCROLL_SIZES = ((390, 1400), (412, 1700), (360, 2000), (393, 2400))
SIDEBAR_SIZES = ((300, 1000), (280, 1080), (320, 1200), (360, 1200))
TOOLBAR_SIZES = ((1500, 400), (1800, 300), (1600, 320), (1920, 360))
BANNER_SIZES = ((1500, 500), (1200, 300), (970, 250), (1600, 400))
WIDE_SIZES = ((2560, 1080), (3440, 1440), (3840, 1080), (2880, 900))
SCREEN_KINDS = ("phone", "scroll", "toolbar", "phone", "banner", "sidebar", "wide", "scroll")
ICONS = "☰⚙★♥✉⌂☎✎✂⟳◀▶■●▲✓✕⚑☁♪☀☂⚡"


def _gradient(rng: random.Random) -> str:
    """A CSS background standing for a photo or an illustration: a gradient of two or three hues."""
    hues = [rng.randrange(360) for _ in range(rng.choice((2, 3)))]
    stops = ", ".join(f"hsl({h},{rng.randint(35, 80)}%,{rng.randint(25, 70)}%)" for h in hues)
    if rng.random() < 0.5:
        return f"linear-gradient({rng.randrange(360)}deg, {stops})"
    return f"radial-gradient(circle at {rng.randint(0, 100)}% {rng.randint(0, 100)}%, {stops})"


def _style(rng: random.Random, extra: str) -> tuple[str, str, str, str]:
    """A palette and the page's base style: (accent, background, ink, style)."""
    accent, bg, ink = rng.choice(PALETTES)
    font = rng.choice(FONTS[:2] + FONTS[4:])
    base = (
        f"*{{box-sizing:border-box}}body{{margin:0;font-family:'{font}';background:{bg};color:{ink};"
        f"font-size:{rng.choice((13, 14, 15, 16))}px;overflow:hidden}}"
        ".icon{display:inline-block;width:1.6em;text-align:center}.muted{opacity:.6;font-size:.85em}"
        f".avatar{{display:inline-block;width:40px;height:40px;border-radius:50%;color:#fff;text-align:center;"
        f"line-height:40px;font-weight:bold;vertical-align:middle;margin-right:10px}}"
    )
    return accent, bg, ink, base + extra


def _page(style: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{body}</body></html>"


def _mobile_item(rng: random.Random, kind: str, accent: str) -> str:
    word = rng.choice(WORDS).capitalize()
    if kind == "list":
        return (
            f"<div class='row'><span class='avatar' style='background:hsl({rng.randrange(360)},55%,45%)'>{word[0]}"
            f"</span><b>{word} {rng.choice(WORDS)}</b> <span class='muted'>{rng.randint(1, 12)}:{rng.randint(10, 59)}"
            f"</span><div class='muted'>{_sentence(rng, rng.randint(4, 9))}</div></div>"
        )
    if kind == "cards":
        return (
            f"<div class='card'><div class='pic' style='height:{rng.choice((120, 160, 200))}px;"
            f"background:{_gradient(rng)}'></div><h3>{_sentence(rng, rng.randint(2, 4))[:-1]}</h3>"
            f"<p class='muted'>{_sentence(rng, rng.randint(6, 14))}</p></div>"
        )
    if kind == "chat":
        side = rng.choice(("me", "them"))
        return f"<div class='bubble {side}'>{_sentence(rng, rng.randint(2, 14))}</div>"
    if kind == "settings":
        on = rng.random() < 0.5
        return (
            f"<div class='row'><span class='icon'>{rng.choice(ICONS)}</span>{word} {rng.choice(WORDS)}"
            f"<span class='toggle' style='background:{accent if on else '#999'};"
            f"justify-content:{'flex-end' if on else 'flex-start'}'><i></i></span></div>"
        )
    return (  # feed
        f"<div class='post'><span class='avatar' style='background:hsl({rng.randrange(360)},55%,45%)'>{word[0]}</span>"
        f"<b>{word}</b> <span class='muted'>{rng.randint(1, 59)} min</span><p>{_sentence(rng, rng.randint(5, 16))}</p>"
        + (
            f"<div class='pic' style='height:{rng.choice((180, 240))}px;background:{_gradient(rng)}'></div>"
            * (rng.random() < 0.6)
        )
        + f"<div class='muted'>♥ {rng.randint(0, 999)} &nbsp; ✉ {rng.randint(0, 99)} &nbsp; "
        f"⟳ {rng.randint(0, 99)}</div></div>"
    )


def mobile_html(rng: random.Random, title: str, size: tuple[int, int]) -> str:
    """A phone app's screen: a status bar, an app bar, a list, cards, a chat, settings or a feed, a bottom bar;
    as many items as the height holds (a full-page capture is a long one)."""
    accent, bg, ink, style = _style(
        rng,
        ".status{display:flex;justify-content:space-between;padding:6px 16px;font-size:12px}"
        ".bar{display:flex;align-items:center;gap:12px;padding:14px 16px;font-size:19px}"
        ".row{padding:12px 16px;border-bottom:1px solid rgba(128,128,128,.25);display:flow-root}"
        ".card{margin:12px;border-radius:12px;overflow:hidden;box-shadow:0 1px 4px rgba(0,0,0,.3)}"
        ".card h3,.card p{margin:8px 12px}.pic{width:100%}.post{padding:12px 16px;border-bottom:6px solid "
        "rgba(128,128,128,.15)}.post .pic{border-radius:8px;margin:6px 0}"
        ".bubble{max-width:75%;margin:8px 12px;padding:10px 14px;border-radius:18px;clear:both}"
        ".me{float:right;color:#fff}.them{float:left;background:rgba(128,128,128,.2)}.chat{display:flow-root}"
        ".toggle{float:right;width:44px;height:24px;border-radius:12px;display:flex;padding:2px}"
        ".toggle i{width:20px;height:20px;border-radius:50%;background:#fff}"
        ".nav{position:fixed;bottom:0;left:0;right:0;display:flex;justify-content:space-around;padding:8px 0 18px;"
        "border-top:1px solid rgba(128,128,128,.3);font-size:11px;text-align:center}"
        ".nav b{display:block;font-size:20px}"
        ".fab{position:fixed;right:20px;width:56px;height:56px;border-radius:16px;color:#fff;font-size:28px;"
        "text-align:center;line-height:56px}",
    )
    kind = rng.choice(("list", "cards", "chat", "settings", "feed"))
    per_item = {"list": 70, "cards": 260, "chat": 60, "settings": 50, "feed": 220}[kind]
    items = "".join(_mobile_item(rng, kind, accent) for _ in range(size[1] // per_item + 2))
    if kind == "chat":
        items = f"<div class='chat'>{items}</div>".replace(
            "class='bubble me'", f"style='background:{accent}' class='bubble me'"
        )
    header_bg = rng.choice((accent, bg))
    header_ink = "#fff" if header_bg == accent else ink
    nav = "".join(
        f"<span style='color:{accent if i == 0 else ink}'><b>{rng.choice(ICONS)}</b>{rng.choice(WORDS)}</span>"
        for i in range(rng.choice((3, 4, 5)))
    )
    fab = (
        f"<div class='fab' style='background:{accent};bottom:{rng.choice((80, 96))}px'>+</div>"
        if rng.random() < 0.4
        else ""
    )
    body = (
        f"<div style='background:{header_bg};color:{header_ink}'><div class='status'><span>{rng.randint(7, 22)}:"
        f"{rng.randint(10, 59)}</span><span>▮▮▮ ⚡ {rng.randint(5, 100)}%</span></div>"
        f"<div class='bar'><span>{rng.choice('☰◀')}</span><b style='flex:1'>{html.escape(title)}</b>"
        f"<span>{rng.choice(ICONS)}</span></div></div>{items}"
        f"<div class='nav' style='background:{bg}'>{nav}</div>{fab}"
    )
    return _page(style, body)


def sidebar_html(rng: random.Random, title: str, size: tuple[int, int]) -> str:
    """An application's side panel: a header, a search box, sections of items with icons and counts, a footer."""
    accent, bg, _, style = _style(
        rng,
        "header{padding:14px;font-size:18px;font-weight:bold}input{width:calc(100% - 24px);margin:0 12px 8px;"
        "padding:6px;border:1px solid rgba(128,128,128,.5);border-radius:6px;background:transparent}"
        "h4{margin:14px 12px 4px;font-size:11px;letter-spacing:1px;text-transform:uppercase;opacity:.6}"
        ".item{padding:7px 12px;display:flex;gap:8px}.item span:nth-child(2){flex:1}"
        ".count{border-radius:9px;padding:0 7px;color:#fff;font-size:11px;line-height:18px}"
        "footer{position:fixed;bottom:0;left:0;right:0;padding:12px;border-top:1px solid rgba(128,128,128,.3)}",
    )
    parts = [f"<header style='background:{accent};color:#fff'>{html.escape(title)}</header>"]
    parts.append(f"<input value='{rng.choice(WORDS)}'>")
    rows = 0
    while rows * 33 < size[1] - 120:
        parts.append(f"<h4>{rng.choice(WORDS)} {rng.choice(WORDS)}</h4>")
        for _ in range(rng.randint(3, 8)):
            count = (
                f"<span class='count' style='background:{accent}'>{rng.randint(1, 99)}</span>"
                if rng.random() < 0.3
                else ""
            )
            selected = f" style='background:{accent}33'" if rng.random() < 0.08 else ""
            parts.append(
                f"<div class='item'{selected}><span class='icon'>{rng.choice(ICONS)}</span>"
                f"<span>{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)}</span>{count}</div>"
            )
            rows += 1
        rows += 1
    name = rng.choice(WORDS).capitalize()
    parts.append(
        f"<footer style='background:{bg}'><span class='avatar' style='background:{accent}'>{name[0]}</span>"
        f"{name}</footer>"
    )
    return _page(style, "".join(parts))


def toolbar_html(rng: random.Random, title: str, size: tuple[int, int]) -> str:
    """An application window's top strip: a title bar, a menu bar, a toolbar of icon buttons and a search box,
    document tabs, and the first lines of the document or grid underneath."""
    accent, bg, _, style = _style(
        rng,
        ".title{display:flex;padding:6px 10px;font-size:13px}.title b{flex:1;text-align:center;font-weight:normal}"
        ".menu span{display:inline-block;padding:4px 10px}.tools{display:flex;align-items:center;gap:4px;"
        "padding:6px 8px;border-bottom:1px solid rgba(128,128,128,.35)}.tools button{width:34px;height:30px;"
        "border:1px solid transparent;border-radius:4px;background:transparent;color:inherit;font-size:16px}"
        ".sep{width:1px;height:24px;background:rgba(128,128,128,.5);margin:0 4px}.tools input{margin-left:auto;"
        "width:260px;padding:5px 8px;border-radius:14px;border:1px solid rgba(128,128,128,.5)}"
        ".tabs{display:flex;padding:4px 8px 0;gap:2px}.tab{padding:6px 16px;border-radius:6px 6px 0 0;"
        "background:rgba(128,128,128,.18)}.doc{padding:12px 60px;line-height:1.5}"
        "table{border-collapse:collapse;margin:8px}td{border:1px solid rgba(128,128,128,.5);padding:3px 10px}",
    )
    controls = rng.choice(("● ● ●", "— ☐ ✕"))
    title_bar = f"<div class='title' style='background:{rng.choice((accent, '#2b2b2b', '#e8e8e8'))};" + (
        "color:#fff'>" if rng.random() < 0.7 else "color:#222'>"
    )
    menu = "".join(
        f"<span>{m}</span>"
        for m in ("File", "Edit", "View", "Insert", "Format", "Tools", "Window", "Help")[: rng.randint(4, 8)]
    )
    buttons = []
    for _ in range(size[0] // 48):
        buttons.append("<span class='sep'></span>" if rng.random() < 0.15 else f"<button>{rng.choice(ICONS)}</button>")
    tabs = "".join(
        f"<span class='tab'{f' style=background:{bg};font-weight:bold' if i == 0 else ''}>"
        f"{rng.choice(WORDS)}.{rng.choice(('txt', 'csv', 'png', 'odt'))} ✕</span>"
        for i in range(rng.randint(2, 7))
    )
    if rng.random() < 0.5:
        content = (
            "<div class='doc'>" + "".join(f"<p>{_sentence(rng, rng.randint(14, 30))}</p>" for _ in range(4)) + "</div>"
        )
    else:
        content = (
            "<table>"
            + "".join(
                "<tr>"
                + "".join(f"<td>{rng.choice(WORDS)} {rng.randint(0, 999)}</td>" for _ in range(size[0] // 120))
                + "</tr>"
                for _ in range(8)
            )
            + "</table>"
        )
    body = (
        f"{title_bar}<span>{controls}</span><b>{html.escape(title)}</b><span></span></div>"
        f"<div class='menu'>{menu}</div><div class='tools'>{''.join(buttons[:-6])}<input value='{rng.choice(WORDS)}'>"
        f"</div><div class='tabs'>{tabs}</div>{content}"
    )
    return _page(style, body)


def banner_html(rng: random.Random, title: str, size: tuple[int, int]) -> str:
    """A web page's header or a billboard banner: a gradient or flat background, shapes, a title, a line of
    text, buttons, perhaps a navigation row."""
    accent, _, _, style = _style(
        rng,
        ".hero{position:absolute;inset:0}.shape{position:absolute;border-radius:50%;opacity:.35}"
        "nav{position:relative;display:flex;gap:24px;padding:14px 40px;color:#fff;font-size:15px}nav b{flex:1}"
        ".text{position:relative;padding:0 60px;color:#fff;text-shadow:0 1px 3px rgba(0,0,0,.4)}"
        ".text h1{margin:10px 0 6px}.cta{display:inline-block;padding:10px 22px;border-radius:6px;margin:12px 10px 0 0;"
        "font-weight:bold}",
    )
    background = _gradient(rng) if rng.random() < 0.7 else accent
    shapes = "".join(
        f"<div class='shape' style='left:{rng.randint(-10, 100)}%;top:{rng.randint(-50, 80)}%;"
        f"width:{rng.randint(60, 400)}px;height:{rng.randint(60, 400)}px;"
        f"background:hsl({rng.randrange(360)},70%,70%)'></div>"
        for _ in range(rng.randint(0, 6))
    )
    nav = ""
    if size[1] >= 300 and rng.random() < 0.6:
        nav = (
            f"<nav><b>{rng.choice(WORDS).capitalize()}</b>"
            + "".join(f"<span>{rng.choice(WORDS)}</span>" for _ in range(rng.randint(3, 6)))
            + "</nav>"
        )
    heading = rng.choice((28, 36, 44, 56)) * min(1.0, size[1] / 400)
    body = (
        f"<div class='hero' style='background:{background}'>{shapes}</div>{nav}"
        f"<div class='text' style='padding-top:{rng.randint(10, 60) * size[1] // 500}px'>"
        f"<h1 style='font-size:{heading:.0f}px'>{html.escape(title)}</h1>"
        f"<div>{_sentence(rng, rng.randint(6, 14))}</div>"
        + "".join(
            f"<span class='cta' style='background:{rng.choice(('#fff', accent, '#222'))};"
            f"color:{rng.choice(('#222', '#fff'))}'>"
            f"{rng.choice(WORDS).capitalize()}</span>"
            for _ in range(rng.randint(0, 2))
        )
        + "</div>"
    )
    return _page(style, body)


def wide_html(rng: random.Random, title: str, size: tuple[int, int]) -> str:
    """A dashboard on an ultrawide or dual monitor: a header, a side menu and as many cards of figures and bar
    charts as the width holds."""
    accent, _, _, style = _style(
        rng,
        "header{padding:14px 24px;font-size:22px;color:#fff}nav{float:left;width:220px;padding:8px}"
        "nav div{padding:9px;border-bottom:1px solid rgba(128,128,128,.3)}"
        "main{overflow:hidden;padding:12px;display:grid;"
        "grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}.card{padding:12px;border-radius:8px;"
        "box-shadow:0 1px 4px rgba(0,0,0,.3);background:rgba(128,128,128,.08)}.big{font-size:30px}"
        ".chart{display:flex;align-items:flex-end;gap:3px;height:90px;margin-top:8px}.chart i{flex:1}",
    )
    menu = "".join(
        f"<div><span class='icon'>{rng.choice(ICONS)}</span>{rng.choice(WORDS).capitalize()}</div>"
        for _ in range(rng.randint(6, 14))
    )
    cards = []
    for _ in range((size[0] - 240) // 275 * max(1, (size[1] - 60) // 230)):
        bars = "".join(
            f"<i style='height:{rng.randint(5, 100)}%;background:{accent}'></i>" for _ in range(rng.randint(6, 24))
        )
        cards.append(
            f"<div class='card'><b>{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)}</b>"
            f"<div class='big' style='color:{accent}'>{rng.randint(1, 99999):,}</div>"
            f"<div class='muted'>{_sentence(rng, rng.randint(3, 7))}</div><div class='chart'>{bars}</div></div>"
        )
    body = (
        f"<header style='background:{accent}'>{html.escape(title)}</header><nav>{menu}</nav>"
        f"<main>{''.join(cards)}</main>"
    )
    return _page(style, body)


SCREENS = {
    "phone": (PHONE_SIZES, mobile_html),
    "scroll": (SCROLL_SIZES, mobile_html),
    "sidebar": (SIDEBAR_SIZES, sidebar_html),
    "toolbar": (TOOLBAR_SIZES, toolbar_html),
    "banner": (BANNER_SIZES, banner_html),
    "wide": (WIDE_SIZES, wide_html),
}


def screens(collection: str, count: int = PAGES) -> Iterator[tuple[str, str, tuple[int, int], str]]:
    """The generated screens of a ``screens-*`` collection (as :func:`pages`): phone screens and their full-page
    captures, side panels, toolbars, banners and ultrawide dashboards, in turn (:data:`SCREEN_KINDS`).

    >>> [(name, size) for name, _, size, _ in screens("screens-a", 3)]
    [('phone-000.png', (393, 852)), ('scroll-001.png', (393, 2400)), ('toolbar-002.png', (1500, 400))]
    """
    rng = random.Random(f"{collection}-v1")  # noqa: S311 (a fixed layout generator, not a secret)
    for i in range(count):
        kind = SCREEN_KINDS[i % len(SCREEN_KINDS)]
        sizes, make = SCREENS[kind]
        size = rng.choice(sizes)
        title = _sentence(rng, rng.randint(1, 4))[:-1]
        yield f"{kind}-{i:03d}.png", make(rng, title, size), size, "screenshot"


def pages(collection: str, count: int = PAGES) -> Iterator[tuple[str, str, tuple[int, int], str]]:
    """The generated pages of a rendered collection: ``(file name, HTML, window size, category)``, half
    documents and half UI screens; ``pages-a`` and ``pages-b`` draw from different seeds (``screens-*``:
    :func:`screens`).

    >>> name, page, size, category = next(pages("pages-a"))
    >>> name, size, category
    ('doc-000.png', (816, 1056), 'document')
    """
    if collection.startswith("screens-"):
        yield from screens(collection, count)
        return
    rng = random.Random(f"{collection}-v1")  # noqa: S311 (a fixed layout generator, not a secret)
    for i in range(count):
        title = _sentence(rng, rng.randint(2, 5))[:-1]
        if i % 2 == 0:
            yield f"doc-{i:03d}.png", document_html(rng, title), DOC_SIZE, "document"
        else:
            yield f"ui-{i:03d}.png", ui_html(rng, title), rng.choice(UI_SIZES), "screenshot"


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium not found: install Debian's `chromium` (make system-deps does)")
    return found


def chromium_version() -> str:
    return subprocess.run([chromium_binary(), "--version"], capture_output=True, text=True, check=True).stdout.strip()


def render(page: str, size: tuple[int, int], target: Path) -> None:
    """Screenshot ``page`` (HTML) at ``size`` with headless chromium into ``target`` (PNG)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "page.html"
        source.write_text(page, encoding="utf-8")
        argv = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={tmp}/profile",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={target}",
            source.as_uri(),
        ]
        subprocess.run(argv, capture_output=True, check=True, timeout=120)
    if not target.exists():
        raise RuntimeError(f"chromium wrote no screenshot for {target.name}")


def rendered_files(collection: Collection, cache: Path, wanted: set[str] | None) -> tuple[str, dict[str, Path]]:
    """Render the pages of ``collection`` into the cache (those already there are kept); returns files."""
    folder = cache / "rendered" / collection.name
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    files = {}
    for name, page, size, _ in pages(collection.name):
        if wanted is not None and name not in wanted:
            continue
        files[name] = folder / name
        html_file = folder / (name + ".html")
        if not files[name].exists() or not html_file.exists() or html_file.read_text(encoding="utf-8") != page:
            todo.append((name, page, size))
    if todo:
        version = chromium_version()

        def one(job: tuple[str, str, tuple[int, int]]) -> None:
            name, page, size = job
            render(page, size, folder / name)
            (folder / (name + ".html")).write_text(page, encoding="utf-8")

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(one, todo))
        (folder / "chromium-version.txt").write_text(version + "\n")
    version_file = folder / "chromium-version.txt"
    return (version_file.read_text().strip() if version_file.exists() else chromium_version()), files


def page_category(name: str) -> str:
    return "document" if name.startswith("doc-") else "screenshot"


# Selection (relock) and fetch ---------------------------------------------------------------------------------


@dataclass
class Candidate:
    collection: Collection
    path: str  # inside the package
    data: bytes
    pixels: int
    thumb: npt.NDArray[np.float64]
    source_sha: str = field(init=False)

    def __post_init__(self) -> None:
        self.source_sha = sha256(self.data)


def source_files(
    collection: Collection,
    cache: Path,
    scratch: Path,
    version: str | None,
    deb_sha: str | None,
    wanted: set[str] | None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The source's identity for the lock and its picture files by path."""
    if collection.kind == "deb":
        version = version or apt_version(collection.package)
        deb = fetch_deb(cache, collection.package, version, deb_sha)
        return {"version": version, "deb_sha256": deb_sha or file_sha256(deb), "deb": deb.name}, deb_files(deb, scratch)
    if collection.kind == "python":
        found_version, files = python_files(collection, scratch)
        if version is not None and found_version != version:
            raise MismatchError(
                f"{collection.name}: {collection.package} {found_version} installed, the lock says {version}"
            )
        return {"version": found_version}, files
    found_version, files = rendered_files(collection, cache, wanted)
    return {"version": found_version, "renderer": "chromium --headless --screenshot"}, files


def _size(file: Path) -> tuple[int, int] | None:
    try:
        with Image.open(file) as im:
            return im.size
    except (OSError, ValueError):
        return None


def largest_per_group(collection: Collection, files: dict[str, Path]) -> tuple[list[tuple[str, Path, int]], int]:
    """The files that pass the collection's patterns and size limits, the one with most pixels per group key
    (ties: the last path), as ``(path, file, pixels)``, largest first; and how many were other sizes."""
    best: dict[str, tuple[int, str, Path]] = {}
    passing = 0
    with unbounded():
        sizes = {path: _size(file) for path, file in files.items() if matches(path, collection.include)}
    for path, file in files.items():
        if not matches(path, collection.include) or matches(path, collection.exclude):
            continue
        if sizes.get(path) is None:
            continue
        w, h = sizes[path] or (0, 0)
        aspect = max(w, h) / max(1, min(w, h))
        if min(w, h) < collection.min_side or not collection.min_aspect <= aspect <= collection.max_aspect:
            continue
        if w * h > MAX_SOURCE_PIXELS:
            continue
        passing += 1
        key = group_key(collection, path)
        if key not in best or (w * h, path) > best[key][:2]:
            best[key] = (w * h, path, file)
    ordered = [(path, file, pixels) for pixels, path, file in sorted(best.values(), key=lambda b: (-b[0], b[1]))]
    return ordered, passing - len(ordered)


def select(
    collection: Collection, files: dict[str, Path], kept: list[npt.NDArray[np.float64]]
) -> tuple[list[Candidate], dict[str, int]]:
    """Largest per group, then the near-copy check against everything kept so far, then the cap. Returns the
    selection and how many files were dropped as other sizes of a kept one, and as near copies."""
    ordered = []
    largest, other_sizes = largest_per_group(collection, files)
    for path, file, pixels in largest:
        data = file.read_bytes()
        try:
            with unbounded():
                view = open_reduced(data)
        except (OSError, ValueError):
            continue
        ordered.append(Candidate(collection, path, data, pixels, thumbnail(view)))
    keep = dedupe([c.thumb for c in ordered], kept)
    distinct = [c for c, k in zip(ordered, keep, strict=True) if k]
    distinct.sort(key=lambda c: c.source_sha)
    chosen = distinct[: collection.cap] if collection.cap else distinct
    kept.extend(c.thumb for c in chosen)
    return sorted(chosen, key=lambda c: c.path), {
        "other sizes": other_sizes,
        "near copies": len(ordered) - len(distinct),
    }


def saved_thumbnails(root: Path, name: str, entry: dict[str, Any]) -> list[npt.NDArray[np.float64]]:
    """The near-copy signatures (:func:`thumbnail`) of a locked collection's pictures as fetched in ``root``."""
    found = [root / name / f["file"] for f in entry["files"]]
    missing = [p for p in found if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} pictures of {name} are not in {root}: fetch the corpus first")
    with unbounded():
        return [thumbnail(open_reduced(p.read_bytes())) for p in found]


def relock(
    cache: Path = CACHE,
    lock: Path = LOCK,
    only: Iterable[str] = (),
    collections: tuple[Collection, ...] = COLLECTIONS,
    root: Path = ROOT,
) -> dict[str, Any]:
    """Select every collection afresh (in :data:`COLLECTIONS` order, so earlier collections win near-copies)
    and write the lock. ``only``: re-select these collections (and select those the lock lacks) and keep the
    others' entries as they are; the near-copy check then looks at the kept collections' pictures as fetched in
    ``root`` (a fetched corpus is needed), so that no picture is in two collections."""
    selected = set(only)
    old = json.loads(lock.read_text()) if lock.exists() and selected else {"collections": {}}
    out: dict[str, Any] = {"max_side": MAX_SIDE, "near_copy": NEAR_COPY, "collections": {}, "dropped": {}}
    kept: list[npt.NDArray[np.float64]] = []
    as_they_are = {c.name for c in collections if selected and c.name not in selected and c.name in old["collections"]}
    for name in sorted(as_they_are):
        kept.extend(saved_thumbnails(root, name, old["collections"][name]))
    for collection in collections:
        if collection.name in as_they_are:
            out["collections"][collection.name] = old["collections"][collection.name]
            out["dropped"][collection.name] = old.get("dropped", {}).get(collection.name, {})
            continue
        with tempfile.TemporaryDirectory() as tmp:
            identity, files = source_files(collection, cache, Path(tmp), None, None, None)
            chosen, dropped = select(collection, files, kept)
            entries = []
            for c in chosen:
                data, name = save_bytes(c.data, flat_name(c.path))
                category = picture_category(collection, c.path, data)
                entries.append(
                    {
                        "path": c.path,
                        "file": name,
                        "source_sha256": c.source_sha,
                        "sha256": sha256(data),
                        "category": category,
                    }
                )
            mark_ci(collection, entries)
        out["collections"][collection.name] = {
            "kind": collection.kind,
            "package": collection.package,
            "fold": collection.fold,
            **identity,
            "files": entries,
        }
        out["dropped"][collection.name] = dropped
        typer.echo(f"{collection.name}: {len(entries)} pictures (dropped: {dropped})", err=True)
    lock.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return out


def _source_bytes(collection: Collection, cache: Path, file: Path, locked: dict[str, Any]) -> bytes:
    """A picture's source bytes; a rendered page whose bytes differ from the lock's is rendered again (at most
    :data:`RENDER_TRIES` renderings): headless Chromium now and then paints a page differently (measured: one page
    of 80 on a fresh machine, which the next rendering gave with the locked bytes)."""
    data = file.read_bytes()
    for _ in range(RENDER_TRIES - 1 if collection.kind == "render" else 0):
        if sha256(data) == locked["source_sha256"]:
            break
        file.unlink()
        _, again = rendered_files(collection, cache, {locked["path"]})
        data = again[locked["path"]].read_bytes()
    return data


def fetch(
    root: Path = ROOT,
    cache: Path = CACHE,
    lock: Path = LOCK,
    subset: str | None = None,
    collections: tuple[Collection, ...] = COLLECTIONS,
) -> dict[str, Any]:
    """Make ``root`` hold exactly the locked pictures (of ``subset``: ``ci`` or None for all) and write its
    manifest. Files already there with the locked SHA-256 are kept; packages come from the cache when there.
    Raises :class:`MismatchError` when a package, a source file or a saved picture differs from the lock."""
    locked = json.loads(lock.read_text())
    by_name = {c.name: c for c in collections}
    root.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, Any]] = []
    for name, entry in locked["collections"].items():
        files = [f for f in entry["files"] if subset is None or (subset == "ci" and f["ci"])]
        if not files:
            continue
        folder = root / name
        folder.mkdir(exist_ok=True)
        missing = [
            f for f in files if not (folder / f["file"]).exists() or file_sha256(folder / f["file"]) != f["sha256"]
        ]
        if entry["kind"] == "deb":  # the package is checked even when every picture is there
            fetch_deb(cache, entry["package"], entry["version"], entry["deb_sha256"])
        if missing:
            with tempfile.TemporaryDirectory() as tmp:
                _, sources = source_files(
                    by_name[name],
                    cache,
                    Path(tmp),
                    entry["version"],
                    entry.get("deb_sha256"),
                    {f["path"] for f in missing},
                )
                for f in missing:
                    if f["path"] not in sources:
                        raise MismatchError(f"{name}: {f['path']} is not in {entry['package']} {entry['version']}")
                    data = _source_bytes(by_name[name], cache, sources[f["path"]], f)
                    if sha256(data) != f["source_sha256"]:
                        raise MismatchError(
                            f"{name}/{f['path']}: SHA-256 {sha256(data)}, the lock says {f['source_sha256']}"
                            + (
                                f" (the lock's pages were rendered by {entry['version']}; this is "
                                f"{chromium_version()}: `python -m tooling.eval.corpus relock --only {name}`)"
                                if entry["kind"] == "render"
                                else ""
                            )
                        )
                    saved, _ = save_bytes(data, f["file"])
                    if sha256(saved) != f["sha256"]:
                        raise MismatchError(
                            f"{name}/{f['file']}: saved SHA-256 {sha256(saved)}, the lock says {f['sha256']}"
                        )
                    (folder / f["file"]).write_bytes(saved)
        for stale in set(folder.iterdir()) - {folder / f["file"] for f in files}:  # e.g. after a relock
            if stale.is_file():
                stale.unlink()
        for f in files:
            manifest.append(
                {
                    "path": f"{name}/{f['file']}",
                    "collection": name,
                    "category": f["category"],
                    "fold": entry["fold"],
                    "sha256": f["sha256"],
                    "size": (folder / f["file"]).stat().st_size,
                }
            )
    out = {"subset": subset or "all", "pictures": manifest}
    (root / MANIFEST).write_text(json.dumps(out, indent=1) + "\n")
    return out


# Reading a fetched corpus --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Picture:
    path: Path
    name: str  # collection/file
    collection: str
    category: str
    fold: str


def load(root: Path, fold: str = "all", *, verify: bool = True) -> list[Picture]:
    """The pictures of ``fold`` (``tune``, ``test`` or ``all``) from ``root``'s manifest, in manifest order;
    with ``verify``, each file's SHA-256 is checked (:class:`MismatchError`)."""
    if fold not in (*FOLDS, "all"):
        raise ValueError(f"fold {fold!r}: use tune, test or all")
    manifest = json.loads((root / MANIFEST).read_text())
    out = []
    for p in manifest["pictures"]:
        if fold != "all" and p["fold"] != fold:
            continue
        path = root / p["path"]
        if verify and file_sha256(path) != p["sha256"]:
            raise MismatchError(f"{path}: SHA-256 differs from {root / MANIFEST}: fetch again")
        out.append(Picture(path, p["path"], p["collection"], p["category"], p["fold"]))
    return out


def check_folds(manifest: dict[str, Any]) -> None:
    """Raise ValueError when a collection has pictures in both folds."""
    folds: dict[str, set[str]] = {}
    for p in manifest["pictures"]:
        folds.setdefault(p["collection"], set()).add(p["fold"])
    shared = sorted(c for c, f in folds.items() if len(f) > 1)
    if shared:
        raise ValueError(f"collections on both folds: {shared}")


def counts(manifest: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Pictures per fold and category."""
    out: dict[str, dict[str, int]] = {}
    for p in manifest["pictures"]:
        per = out.setdefault(p["fold"], {})
        per[p["category"]] = per.get(p["category"], 0) + 1
    return out


def table(manifest: dict[str, Any]) -> str:
    """A Markdown table of pictures per category × fold."""
    c = counts(manifest)
    lines = ["| category | tune | test |", "|---|---|---|"]
    for category in CATEGORIES:
        lines.append(f"| {category} | {c.get('tune', {}).get(category, 0)} | {c.get('test', {}).get(category, 0)} |")
    total = [sum(c.get(f, {}).values()) for f in FOLDS]
    lines.append(f"| **all** | {total[0]} | {total[1]} |")
    return "\n".join(lines)


# CLI -------------------------------------------------------------------------------------------------------------

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command("fetch")
def fetch_command(
    root: Annotated[Path, typer.Option(help="Where the pictures and manifest.json go.")] = ROOT,
    cache: Annotated[Path, typer.Option(help="Downloaded packages and rendered pages.")] = CACHE,
    subset: Annotated[str, typer.Option(help="'ci' for the small fixed subset; '' for everything.")] = "",
    lock: Annotated[Path, typer.Option(help="The lock file to follow.")] = LOCK,
) -> None:
    """Fetch (or check) the locked corpus; prints counts per fold and category."""
    if subset not in ("", "ci"):
        raise typer.BadParameter("use 'ci' or ''", param_hint="--subset")
    started = time.monotonic()
    manifest = fetch(root, cache, lock, subset or None)
    check_folds(manifest)
    typer.echo(table(manifest))
    typer.echo(f"{len(manifest['pictures'])} pictures in {root} ({time.monotonic() - started:.0f} s)")


@app.command("relock")
def relock_command(
    cache: Annotated[Path, typer.Option(help="Downloaded packages and rendered pages.")] = CACHE,
    lock: Annotated[Path, typer.Option(help="The lock file to write.")] = LOCK,
    only: Annotated[str, typer.Option(help="Comma-separated collections to re-select ('': all).")] = "",
    root: Annotated[Path, typer.Option(help="The fetched corpus (with --only: the others' pictures).")] = ROOT,
) -> None:
    """Select the pictures of every collection afresh (current package versions) and rewrite the lock; with
    ``--only``, those collections alone (and any the lock lacks), the others' entries kept as they are."""
    names = [o for o in only.split(",") if o]
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise typer.BadParameter(f"no collection {unknown}", param_hint="--only")
    out = relock(cache, lock, names, root=root)
    total = sum(len(c["files"]) for c in out["collections"].values())
    sizes = sum(d.get("other sizes", 0) for d in out["dropped"].values())
    near = sum(d.get("near copies", 0) for d in out["dropped"].values())
    typer.echo(f"{total} pictures locked in {lock}; dropped: {sizes} other sizes, {near} near copies")


@app.command("recategorise")
def recategorise_command(
    root: Annotated[Path, typer.Option(help="A fetched corpus (all of it).")] = ROOT,
    lock: Annotated[Path, typer.Option(help="The lock file to rewrite.")] = LOCK,
) -> None:
    """Re-apply the category rules to the fetched pictures and rewrite the lock's categories (then fetch again)."""
    typer.echo(f"{recategorise(root, lock)} categories changed in {lock}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
