"""``joblib.compressor`` under joblite's alias."""

from __future__ import annotations

from ...compressor import CompressorWrapper, register_compressor

__all__ = ["CompressorWrapper", "register_compressor"]
