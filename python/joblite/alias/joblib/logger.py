"""``joblib.logger`` under joblite's alias."""

from __future__ import annotations

from ...logger import Logger, PrintTime, format_time, short_format_time

__all__ = ["Logger", "PrintTime", "format_time", "short_format_time"]
