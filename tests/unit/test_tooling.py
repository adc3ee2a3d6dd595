"""The habits kept in the repository stay true: pinned tools agree everywhere, the changelog
keeps its form, and the architecture document names every layer the layering test knows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    return dict(pin.split("==") for pin in dev if "==" in pin)


def test_dev_tools_are_pinned() -> None:
    assert {"ruff", "mypy", "pytest"} <= set(_pins())


def test_the_commit_hooks_use_the_pinned_tools() -> None:
    config = (ROOT / ".pre-commit-config.yaml").read_text()
    revs = re.findall(r"repo: https://github.com/astral-sh/ruff-pre-commit\s+rev: v(\S+)", config)
    assert revs == [_pins()["ruff"]]
    assert "entry: .venv/bin/mypy" in config  # the project's pinned mypy, with its deps


def test_the_changelog_keeps_its_form() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert versions[-1] == "0.1.0"
    for version in versions[1:]:
        assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d\d-\d\d$", text, re.M)
    sections = set(re.findall(r"^### (\w+)$", text, flags=re.MULTILINE))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_architecture_names_every_layer() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "layering", Path(__file__).with_name("test_layering.py")
    )
    assert spec is not None and spec.loader is not None
    layering = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layering)
    text = (ROOT / "docs" / "architecture.md").read_text()
    for module in layering.LAYERS:
        if module == "jarvis_trio":
            continue
        short = module.removeprefix("jarvis_trio.")
        assert f"`{short}`" in text or f"`{short}/`" in text, short
