"""A small bounded cache (least recently used out first) for prepared per-host data."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

_MISSING = object()


class LRUCache:
    """At most ``maxsize`` entries; :meth:`get` makes a missing entry with ``make()``.

    ``hits`` and ``misses`` count the look-ups (a training loop can check that
    its hosts are prepared once). Safe to share between threads (``make`` runs
    outside the lock, so two threads may both make a missing entry; one is kept);
    the lock is re-entrant because weak-reference callbacks may call :meth:`discard`
    from inside a look-up, when the garbage collector runs there.
    """

    def __init__(self, maxsize: int):
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict:  # pickled (e.g. into spawned DataLoader workers) without the lock
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The entry for ``key``, made by ``make()`` (and the oldest dropped) when missing."""
        with self._lock:
            value = self._items.get(key, _MISSING)
            if value is not _MISSING:
                self.hits += 1
                self._items[key] = self._items.pop(key, value)  # now the most recent
                return value
            self.misses += 1
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def discard(self, key: Hashable) -> None:
        """Drop the entry for ``key`` if there is one."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._items.clear()
