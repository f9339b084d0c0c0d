"""Tensors by value: torch through its own byte view, other array libraries via DLPack.

A tensor's content is its dtype, shape, device type, ``requires_grad``, its values in C
order and its ``grad`` when it has one; strides, storage offsets and the storage beyond the
tensor are not content. A tensor on another device is copied to the host to be hashed. Never
a pickle of the storage (whose bytes and order depend on how the tensor was made).
"""

from __future__ import annotations

from typing import Any

__all__ = ["array_content", "register_jax", "register_torch", "tensor_content"]


def tensor_content(tensor: Any) -> tuple:
    """Content of a ``torch.Tensor`` (dense); sparse and other layouts by their dense value."""
    import torch

    layout = str(tensor.layout)
    data = tensor.detach()
    if data.layout != torch.strided:
        data = data.to_dense()
    if data.is_quantized:
        return ("tensor", layout, str(tensor.dtype), tensor.device.type, data.__reduce_ex__(5))
    data = data.resolve_conj().resolve_neg()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.contiguous()
    raw = data.reshape(-1).view(torch.uint8).numpy()  # the bytes, no copy, any dtype
    content: tuple = (
        "tensor",
        layout,
        str(tensor.dtype),
        tensor.device.type,
        bool(tensor.requires_grad),
        tuple(tensor.shape),
        raw,
    )
    # attributes set on the tensor (a subclass's state; pickle keeps them too)
    state = getattr(tensor, "__dict__", None)
    if state:
        content = (*content, dict(state))
    # the gradient an optimizer step or a gradient norm reads (pickle drops it; reading it
    # on a tensor that keeps none warns)
    grad = tensor.grad if tensor.is_leaf or tensor.retains_grad else None
    return content if grad is None else (*content, ("grad", tensor_content(grad)))


def array_content(array: Any) -> tuple:
    """Content of an array of any library: its values read through DLPack (``__dlpack__``,
    host memory) or ``__array__``, with the DLPack device type.

    Register it for a type whose value is the array and nothing else (jax and cupy arrays
    are registered already)::

        joblite.register_hash_handler(MyArray, joblite.hashing.array_content)
    """
    import numpy as np

    device = array.__dlpack_device__()[0] if hasattr(array, "__dlpack_device__") else 1
    if hasattr(array, "__dlpack__") and int(device) == 1:  # kDLCPU: read in place
        try:
            values = np.from_dlpack(array)
        except (TypeError, BufferError, RuntimeError):  # a dtype numpy lacks (bfloat16)
            values = np.asarray(array)
    elif hasattr(array, "get"):  # cupy: to the host
        values = array.get()
    else:
        values = np.asarray(array)
    return ("array", int(device), values.dtype.str, values)


def register_torch() -> None:
    import torch

    from ._registry import register_hash_handler

    register_hash_handler(torch.Tensor, tensor_content)


def register_jax() -> None:
    import jax

    from ._registry import register_hash_handler

    register_hash_handler(jax.Array, array_content)


def register_cupy() -> None:
    import cupy

    from ._registry import register_hash_handler

    register_hash_handler(cupy.ndarray, array_content)
