"""The README stays true: its configuration table lists exactly the settings the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from worker import lite
from worker.config import Settings, env_name

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    table = text[text.index("### Configuration") : text.index("### Metrics")]
    documented = set(re.findall(r"^\| `(DEDUP_[A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    assert documented == {env_name(name) for name in Settings.model_fields}


def test_the_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text


def test_every_test_the_readme_cites_exists() -> None:
    cited = set(re.findall(r"`(tests/test_\w+\.py)(?:::(\w+))?`", README.read_text()))
    assert cited
    for path, name in cited:
        source = (README.parent / path).read_text()
        assert not name or f"def {name}(" in source, f"{path}::{name}"


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
