"""Helpers shared by the Redis integration tests (the server fixtures live in tests/conftest.py)."""

from __future__ import annotations

import uuid


def unique(name: str) -> str:
    """``name`` made unique for this run, so tests sharing one server never share keys."""
    return f"{name}-{uuid.uuid4().hex[:8]}"
