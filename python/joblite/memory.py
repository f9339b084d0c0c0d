"""Memory: transparent disk caching of function results. (Issue 4 fills this in.)"""

from __future__ import annotations

from typing import Any


class Memory:
    """Placeholder until issue 4 lands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Memory is not implemented yet")


class MemorizedFunc:
    """Placeholder until issue 4 lands."""


class MemorizedResult:
    """Placeholder until issue 4 lands."""


def expires_after(*args: Any, **kwargs: Any) -> Any:
    """Placeholder until issue 4 lands."""
    raise NotImplementedError


def register_store_backend(*args: Any, **kwargs: Any) -> None:
    """Placeholder until issue 4 lands."""
    raise NotImplementedError
