"""Execution backends of Parallel behind one interface. (Issue 5 fills this in.)"""


class ParallelBackendBase:
    """Placeholder until issue 5 lands."""
