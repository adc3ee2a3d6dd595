"""The README's promises, checked: its agent example runs under Trio and under asyncio, and
its configuration table lists every configuration key with its variable and default."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jarvis_trio import MeshConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def example_program() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## An agent in twenty lines", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its agent example"
    return match.group(1)


@pytest.mark.parametrize("host", ["trio", "asyncio"])
def test_readme_agent_example_runs(tmp_path: Path, host: str) -> None:
    program = example_program()
    assert len(program.strip().splitlines()) <= 25
    if host == "asyncio":
        program = program.replace("trio.run(main)", "import asyncio\nasyncio.run(main())")
    script = tmp_path / "agent.py"
    script.write_text(program, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "{'summary': '3 rows look fine'}" in result.stdout


def test_configuration_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {
        m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| `?(\w+)`? \|", table, re.M)
    }
    documented = MeshConfig.documented_keys()
    assert set(rows) == set(documented)
    for key, (env, _doc) in documented.items():
        assert rows[key] == env, key
