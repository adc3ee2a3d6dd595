"""Property: whatever path string is given, a save either is refused with UnsafePathError or
writes a file inside the root -- never anywhere else."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis_trio.errors import StorageError, UnsafePathError
from jarvis_trio.storage.blob import BlobStorage

SEGMENTS = st.sampled_from(
    [
        "a",
        "b.txt",
        ".",
        "..",
        "",
        "blob_storage_evil",
        "blob_storage",
        "\\",
        "\x00",
        "C:",
        "~",
        ".blobtmp-x",
        "link",
        " ",
    ]
)
PATHS = st.lists(SEGMENTS, min_size=0, max_size=6).map("/".join) | st.text(max_size=20)


def files_under(folder: Path) -> set[Path]:
    return {Path(d, f) for d, _, fs in os.walk(folder) for f in fs}


@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=PATHS)
def test_a_save_never_lands_outside_the_root(path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "blob_storage"
        (base / "blob_storage_evil").mkdir()
        root.mkdir()
        (root / "link").symlink_to(base / "blob_storage_evil", target_is_directory=True)
        store = BlobStorage(root)

        async def attempt() -> str | None:
            try:
                return await store.save(path, "x")
            except UnsafePathError:
                return None
            except StorageError:  # e.g. the path names an existing folder
                return None

        written = trio.run(attempt)
        outside = files_under(base) - files_under(root)
        assert outside == set(), f"path {path!r} wrote {outside}"
        assert files_under(base / "blob_storage_evil") == set()
        if written is not None:
            assert (root / written).resolve().is_relative_to(root.resolve())
            assert (root / written).read_text() == "x"
