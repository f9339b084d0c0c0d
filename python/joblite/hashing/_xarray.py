"""xarray objects by content: names, dimensions, data, coordinates and attrs (not encoding)."""

from __future__ import annotations

from typing import Any

__all__ = ["dataarray_content", "dataset_content", "register", "variable_content"]


def variable_content(variable: Any) -> tuple:
    """Content of a Variable: dimensions, values (a dask array is computed), attrs."""

    return ("Variable", tuple(variable.dims), _values(variable), dict(variable.attrs))


def _values(variable: Any) -> Any:
    """The values; those held by a pandas Index or extension array of a dtype numpy lacks
    (categorical, tz-aware, period, interval) by their pandas content, since ``.values``
    would turn them into objects and drop categories, their order or the time zone; a
    DatetimeIndex or TimedeltaIndex with a ``freq`` likewise (``.values`` drops it)."""
    import numpy as np

    held = getattr(getattr(variable, "_data", None), "array", None)
    if held is not None and (
        not isinstance(getattr(held, "dtype", None), np.dtype)
        or getattr(held, "freq", None) is not None  # a time index's frequency is content
    ):
        import pandas as pd

        from ._pandas import index_content, values_content

        if isinstance(held, pd.Index):
            return ("pandas", index_content(held.rename(None)))
        if isinstance(held, pd.api.extensions.ExtensionArray):
            return ("pandas", values_content(held))
    return np.asarray(variable.values)


def dataarray_content(array: Any) -> tuple:
    """Content of a DataArray: name, its variable and each coordinate's variable."""
    coords = {name: variable_content(c.variable) for name, c in array.coords.items()}
    return (array.name, variable_content(array.variable), coords)


def dataset_content(dataset: Any) -> tuple:
    """Content of a Dataset: every variable, which of them are coordinates, attrs."""
    variables = {name: variable_content(v) for name, v in dataset.variables.items()}
    return (variables, set(dataset.coords), dict(dataset.attrs))


def register() -> None:
    import xarray

    from ._registry import register_hash_handler

    register_hash_handler(xarray.Variable, variable_content)
    register_hash_handler(xarray.DataArray, dataarray_content)
    register_hash_handler(xarray.Dataset, dataset_content)
