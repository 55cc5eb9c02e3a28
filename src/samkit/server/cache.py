"""A thread-safe LRU cache bounded in bytes (image embeddings of the web app)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class ByteLRUCache:
    """Least-recently-used cache whose entries' declared sizes never sum above `max_bytes`.

    Older entries are evicted *before* a new one is inserted, so the bound holds at every moment,
    not only after an insertion settles.

    Args:
        max_bytes: the bound, > 0.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.peak_bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> Any | None:
        """The value for `key` (marking it most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: Any, nbytes: int) -> None:
        """Insert or replace `key`, evicting least recently used entries to stay in bounds.

        Raises:
            ValueError: a single entry larger than the whole bound.
        """
        nbytes = int(nbytes)
        if nbytes > self.max_bytes:
            raise ValueError(
                f"an entry of {nbytes:,} bytes cannot fit a cache bounded at {self.max_bytes:,} bytes"
            )
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._items and self._bytes + nbytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
                self.evictions += 1
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self._bytes)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._items),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "peak_bytes": self.peak_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
