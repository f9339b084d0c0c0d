"""``joblib.memory`` under joblite's alias: Memory and its cached functions, joblite's."""

from __future__ import annotations

from ...memory import (
    JobLibCollisionWarning,
    MemorizedFunc,
    MemorizedResult,
    Memory,
    NotMemorizedFunc,
    NotMemorizedResult,
    expires_after,
    register_store_backend,
)

__all__ = [
    "JobLibCollisionWarning",
    "MemorizedFunc",
    "MemorizedResult",
    "Memory",
    "NotMemorizedFunc",
    "NotMemorizedResult",
    "expires_after",
    "register_store_backend",
]
