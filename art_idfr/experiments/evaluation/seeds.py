"""The seed of every evaluation cell, shared by the suite and its gradient-masking checks."""
import zlib
from typing import Any


def cell_seed(seed: int, *parts: Any) -> int:
    """A seed per cell, from the run seed and the cell's coordinates (order-independent across cells)."""
    key = "|".join(str(p) for p in parts).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(key)) % (2**31 - 1)
