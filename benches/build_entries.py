"""Fill a cache with many entries of one function, for the large-cache hit benchmark.

``python benches/build_entries.py LOCATION N`` makes ``Memory(LOCATION).cache(add_one)`` a
function with N entries: 1,000 real ones (computed through the cache, so they are exactly what
a user's calls leave) plus N - 1,000 fillers written straight into the store's layout. A filler
is an entry directory (the ``<key[:3]>/<key[3:]>`` names a real entry has) without its two
files: a hit only resolves names, so its cost depends on how many names each directory holds,
not on what the other entries contain, and a million fillers cost ~0.5 GB of tmpfs instead of
the ~8 GB that a million pairs of 4 KiB-page files would.
"""

from __future__ import annotations

import os
import secrets
import sys

import joblite

REAL = 1000


def add_one(x):
    """The cached function of the benchmark."""
    return x + 1


def build(location: str, n: int) -> joblite.MemorizedFunc:
    """Make ``add_one`` cached at ``location`` hold ``n`` entries; returns the cached function."""
    f = joblite.Memory(location, verbose=0).cache(add_one)
    for i in range(min(n, REAL)):
        f(i)
    func_dir = f.store_backend.func_dir(f.func_id)
    made = 0
    while made < n - REAL:
        key = secrets.token_hex(16)
        os.makedirs(os.path.join(func_dir, key[:3], key[3:]), exist_ok=True)
        made += 1
    return f


if __name__ == "__main__":
    build(sys.argv[1], int(sys.argv[2]))
