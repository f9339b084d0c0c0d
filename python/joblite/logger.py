"""joblib-style progress printing (PrintTime, Logger). (Issue 4 fills this in.)"""


class Logger:
    """Placeholder until issue 4 lands."""


class PrintTime:
    """Placeholder until issue 4 lands."""
