"""Seeding: every random stream is a pure function of named integer keys.

Streams never share a generator, so adding one (say, noise on drop scores) does not
shift another, and a resumed run draws exactly what an uninterrupted one would.
"""
from __future__ import annotations

import numpy as np
import torch

_STREAMS = {"init": 0, "mask": 1, "set": 2, "noise": 3, "shuffle": 4, "sparse_init": 5, "signal_propagation": 6,
            "augment": 7, "probe": 8}


def derive(*keys) -> int:
    """A 63-bit seed from integer keys or stream names."""
    ints = [_STREAMS[k] if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence(ints).generate_state(1, dtype=np.uint64)[0]) >> 1


def generator(*keys) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive(*keys)``."""
    return torch.Generator().manual_seed(derive(*keys))
