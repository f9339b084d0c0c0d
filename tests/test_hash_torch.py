"""torch tensors and modules by content (skipped without torch, which CI does not install)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import joblite
import numpy as np
import pytest

torch = pytest.importorskip("torch")
h = joblite.hash


def test_equal_tensors_one_key():
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    t = torch.tensor(a)
    assert h(t) == h(t.clone())
    assert h(t) == h(torch.from_numpy(a))
    assert h(t) == h(t.t().contiguous().t())  # other strides
    big = torch.arange(100.0)
    assert h(big[10:34].reshape(4, 6)) == h(torch.arange(10.0, 34.0).reshape(4, 6))  # offset


def test_changes_give_another_key():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    changed = t.clone()
    changed[1, 2] = -1
    assert h(changed) != h(t)
    assert h(t.reshape(3, 2)) != h(t)
    assert h(t.to(torch.float64)) != h(t)
    assert h(t.to(torch.bfloat16)) != h(t.to(torch.float16))
    assert h(t.clone().requires_grad_(True)) != h(t)
    assert h(t) != h(t.numpy())  # a tensor is not a numpy array


def test_bfloat16_and_conjugate_views():
    t = torch.randn(8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    assert h(t) == h(t.clone())
    c = torch.tensor([1 + 2j, 3 - 1j])
    assert h(c.conj()) == h(c.conj().resolve_conj())
    assert h(c.conj()) != h(c)


def test_modules_built_with_one_seed_hit():
    def build(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))

    assert h(build(0)) == h(build(0))
    assert h(build(0)) != h(build(1))
    model = build(0)
    other = build(0)
    with torch.no_grad():
        other[0].weight[0, 0] += 1
    assert h(model) != h(other)
    assert h(model) != h(build(0).eval())  # training mode is state


def test_a_tensor_has_one_key_in_every_run():
    code = textwrap.dedent(
        """
        import torch, joblite
        torch.manual_seed(0)
        print(joblite.hash({"w": torch.randn(3, 4), "m": torch.nn.Linear(2, 2)}))
        """
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout
    assert len(runs[0].stdout.strip()) == 64


class _Tagged(torch.Tensor):
    pass


def test_state_of_a_tensor_subclass_is_content():
    a = torch.arange(4.0).as_subclass(_Tagged)
    b = torch.arange(4.0).as_subclass(_Tagged)
    a.unit, b.unit = "m", "s"
    assert h(a) != h(b)
    c = torch.arange(4.0).as_subclass(_Tagged)
    c.unit = "m"
    assert h(a) == h(c)
    assert h(torch.nn.Parameter(torch.ones(2))) == h(torch.nn.Parameter(torch.ones(2)))
