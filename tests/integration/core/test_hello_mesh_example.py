"""The runnable example, run as a user would: a subprocess with a fresh working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "hello_mesh.py"


def test_hello_mesh_runs_and_the_agents_talk(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fr: {'greeting': 'Bonjour, Ada!'}" in out
    assert "es: {'greeting': 'Hola, Ada!'}" in out
    assert "'status': 'failure'" in out and "'error_type': 'KeyError'" in out
    assert "thank-you note delivered: True" in out
    assert "translator got a note from greeter-" in out
    assert out.rstrip().endswith("mesh hello-node: stopped")
    assert "ERROR" not in result.stderr
