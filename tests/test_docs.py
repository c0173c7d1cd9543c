"""The README and the pages under docs/ stay true: the configuration table lists exactly the settings the code
reads, every test they cite exists, every relative link resolves, and the README stays a front door (≤ 25 KB)."""

from __future__ import annotations

import re
from pathlib import Path

from worker import lite
from worker.config import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: The README is the front door: what it is, the two commands, configuration, running and sizing it, the code
#: map; everything else is a page under docs/. 25 KB, counted in bytes as `wc -c` counts them.
README_MAX_BYTES = 25_000


def pages() -> list[Path]:
    """Every Markdown page a reader is sent to: the README, BENCHMARKS.md and the pages under docs/."""
    return [README, ROOT / "BENCHMARKS.md", *sorted(DOCS.glob("*.md"))]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole line) up to the next heading of the same or a higher level."""
    start = text.index(f"\n{heading}\n") + 1
    level = len(heading) - len(heading.lstrip("#"))
    following = re.compile(rf"^#{{1,{level}}} ", flags=re.MULTILINE)
    after = following.search(text, start + len(heading))
    return text[start : after.start() if after else len(text)]


def test_the_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    table = text[text.index("### Configuration") : text.index("### Metrics")]
    documented = set(re.findall(r"^\| `(DEDUP_[A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    assert documented == {env_name(name) for name in Settings.model_fields}


def test_the_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text


CITED_TEST = re.compile(r"`(tests/test_\w+\.py)(?:::(\w+))?`")


def test_every_test_the_docs_cite_exists() -> None:
    # The guarantees table (docs/operations.md) names the test that proves each promise.
    guarantees = section((DOCS / "operations.md").read_text(), "## Guarantees")
    assert CITED_TEST.findall(guarantees)
    for page in pages():
        for path, name in set(CITED_TEST.findall(page.read_text())):
            source = (ROOT / path).read_text()
            assert not name or f"def {name}(" in source, f"{page.relative_to(ROOT)} cites {path}::{name}"


def test_the_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes: move detail to a page under docs/"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, … as on GitHub."""
    found: set[str] = set()
    repeats: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", without_fences(page.read_text()), flags=re.MULTILINE):
        base = slug(heading)
        n = repeats[base] = repeats.get(base, -1) + 1
        found.add(f"{base}-{n}" if n else base)
    return found


def without_fences(text: str) -> str:
    """Markdown without its fenced code blocks, where a line starting with # is no heading."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def without_code(text: str) -> str:
    """Markdown without code, fenced or inline, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", without_code(page.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_quality_table_is_the_committed_fold_comparison() -> None:
    from tooling.eval.folds import TABLE_END, TABLE_START

    folds = (README.parent / "docs" / "quality" / "folds.md").read_text()
    table = folds[folds.index(TABLE_START) : folds.index(TABLE_END) + len(TABLE_END)]
    assert table in README.read_text()
    makefile = (README.parent / "Makefile").read_text()
    for fold in ("tune", "test"):
        report = (README.parent / "docs" / "quality" / fold / "report.md").read_text()
        command = re.search(r"^Produced by `([^`]+)`", report, flags=re.MULTILINE)
        assert command is not None
        assert f"--fold {fold} --out docs/quality/{fold}" in command.group(1)
        assert "python -m tooling.eval --corpus data/corpus" in makefile
    assert "python -m tooling.eval.folds docs/quality" in makefile


def test_the_default_thresholds_are_the_ones_the_tuning_fold_chose() -> None:
    import json

    from worker.decision import DESCRIPTOR_DIM, DETAIL
    from worker.hashing import PERCEPTUAL

    chosen = json.loads((README.parent / "docs" / "quality" / "tune" / "report.json").read_text())
    assert chosen["hasher"] == {"name": PERCEPTUAL.name, "bits": PERCEPTUAL.bits, "dim": DESCRIPTOR_DIM}
    assert chosen["chosen"]["detail"] == DETAIL
    assert Settings.model_fields["perceptual_threshold"].default == chosen["chosen"]["perceptual"]
    assert f"| `DEDUP_PERCEPTUAL_THRESHOLD` | `{chosen['chosen']['perceptual']}` |" in README.read_text()


def test_the_readme_states_the_lite_settings_the_service_uses() -> None:
    text = README.read_text()
    assert f"| `{lite.MEMTABLE_ENV}` | `{lite.MEMTABLE_BYTES}` |" in text
    assert f"{lite.MEMTABLE_ENV}={lite.MEMTABLE_BYTES} milvus-lite server" in text
    assert f"starts on Lite holding {lite.LARGE:,} originals or more logs a warning" in " ".join(text.split())


def test_the_code_map_lists_every_module_and_only_modules_that_exist() -> None:
    text = README.read_text()
    section = text[text.index("### Code map") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    listed = re.findall(r"^\* `((?:worker|producer|tooling)/[\w/]+\.py)`", section, flags=re.MULTILINE)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    modules = {
        path.relative_to(README.parent).as_posix()
        for package in ("worker", "producer", "tooling")
        for path in (README.parent / package).rglob("*.py")
    }
    assert set(listed) - modules == set(), "listed in README's code map but not in the tree"
    assert modules - set(listed) == set(), "in the tree but not in README's code map"
