"""The typed user program runs, too: the API it type-checks against is the one that works."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

PROGRAM = Path(__file__).with_name("user_program.py")


async def test_the_typed_user_program_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blob_storage/ is created in the working directory
    spec = importlib.util.spec_from_file_location("user_program", PROGRAM)
    assert spec is not None and spec.loader is not None
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    await program.main()
    assert os.listdir(tmp_path / "blob_storage" / "escalations")
