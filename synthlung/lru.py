"""A small bounded cache (least recently used out first) for prepared per-host data."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable


class LRUCache:
    """At most ``maxsize`` entries; :meth:`get` makes a missing entry with ``make()``.

    ``hits`` and ``misses`` count the look-ups (a training loop can check that
    its hosts are prepared once).
    """

    def __init__(self, maxsize: int):
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The entry for ``key``, made by ``make()`` (and the oldest dropped) when missing."""
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = make()
        self._items[key] = value
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return value

    def discard(self, key: Hashable) -> None:
        """Drop the entry for ``key`` if there is one."""
        self._items.pop(key, None)

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        self._items.clear()
