"""The README stays true: its configuration table lists exactly the settings the code reads."""

from __future__ import annotations

import re
from pathlib import Path

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
