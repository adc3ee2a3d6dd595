"""The installed benchmarks as a user runs them: ``--quick --json``, then ``--compare`` and
``--plot`` against that file, as separate processes (the Nexus questions only: a few seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(
    *args: str, cwd: Path, module: str = "jarvis_trio.bench"
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_quick_json_then_compare_and_plot(tmp_path: Path) -> None:
    old, new, png = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "runs.png"
    # the jarvis-trio command's subcommand, then the module: the same runner
    first = bench(
        "bench",
        "--quick",
        "--only",
        "bench_nexus",
        "--json",
        str(old),
        cwd=tmp_path,
        module="jarvis_trio",
    )
    # progress goes to stderr while it runs: which module, what it does, when it finished
    assert "running bench_nexus" in first.stderr and "proxied calls" in first.stderr
    assert "✓ bench_nexus: 2 answers" in first.stderr
    saved = json.loads(old.read_text())
    assert saved["format"] == 1 and saved["mode"] == "quick"
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["python"]
    questions = [r["question"] for r in saved["results"]]
    assert len(questions) == 2 and all(q.startswith("Nexus") for q in questions)
    overhead = saved["results"][1]
    assert overhead["samples"] and overhead["sample_unit"] == "ms"

    second = bench(
        "--quick",
        "--only",
        "nexus",
        "--json",
        str(new),
        "--compare",
        str(old),
        "--plot",
        str(png),
        cwd=tmp_path,
    )
    lines = second.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.startswith("question") and "new/old" in line
    )
    rows = lines[header + 2 : header + 4]
    newer = json.loads(new.read_text())["results"]
    for row, before, after in zip(rows, saved["results"], newer, strict=True):
        assert row.startswith(before["question"])
        ratio = float(row.rsplit(None, 1)[1].rstrip("x"))
        assert ratio == pytest.approx(after["figure"] / before["figure"], rel=0.01)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_results_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    done = subprocess.run(
        [sys.executable, "-m", "jarvis_trio.bench", "--load", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "bad.json" in done.stderr


def test_the_repository_alias_runs_installed_and_local_questions() -> None:
    listed = bench("--list", cwd=REPO, module="benchmarks").stdout.split()
    assert "bench_swarm" in listed  # the repository's own (it needs the examples)
    assert "bench_core" in listed and "(jarvis_trio.bench.questions.bench_core)" in listed
