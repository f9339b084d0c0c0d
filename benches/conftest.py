"""Shared fixtures of the benchmarks: data sizes can be scaled down with JOBLITE_BENCH_SCALE."""

from __future__ import annotations

import os

import pytest


def scaled(nbytes: int) -> int:
    """``nbytes`` times JOBLITE_BENCH_SCALE (default 1: the sizes the issues quote)."""
    return max(1, int(nbytes * float(os.environ.get("JOBLITE_BENCH_SCALE", "1"))))


@pytest.fixture(scope="session")
def bench_scale() -> float:
    return float(os.environ.get("JOBLITE_BENCH_SCALE", "1"))
