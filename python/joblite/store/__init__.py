"""Where cache entries live: the local filesystem (default) and, later, fsspec stores."""


class StoreBackendBase:
    """Placeholder until issue 4 lands."""
