"""Parallel, delayed and their configuration. (Issue 5 fills this in.)"""

from __future__ import annotations

from typing import Any


class Parallel:
    """Placeholder until issue 5 lands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Parallel is not implemented yet")


def delayed(function: Any) -> Any:
    """Placeholder until issue 5 lands."""
    raise NotImplementedError


def cpu_count(only_physical_cores: bool = False) -> int:
    """Placeholder until issue 5 lands."""
    import os

    return os.cpu_count() or 1


def effective_n_jobs(n_jobs: int = -1) -> int:
    """Placeholder until issue 5 lands."""
    raise NotImplementedError


def wrap_non_picklable_objects(obj: Any, keep_wrapper: bool = True) -> Any:
    """Placeholder until issue 5 lands."""
    raise NotImplementedError


def parallel_config(*args: Any, **kwargs: Any) -> Any:
    """Placeholder until issue 5 lands."""
    raise NotImplementedError


def parallel_backend(*args: Any, **kwargs: Any) -> Any:
    """Placeholder until issue 5 lands."""
    raise NotImplementedError


def register_parallel_backend(*args: Any, **kwargs: Any) -> None:
    """Placeholder until issue 5 lands."""
    raise NotImplementedError
