"""synthlung.lru: the bounded cache behind prepared hosts, zone samplers and kept seeds."""
from __future__ import annotations

import pickle

import pytest

from synthlung.lru import LRUCache


def test_least_recently_used_goes_first_and_counts_are_kept():
    cache = LRUCache(2)
    assert cache.get("a", lambda: 1) == 1 and cache.get("b", lambda: 2) == 2
    assert cache.get("a", lambda: 9) == 1  # a hit: "a" is now the most recent
    cache.get("c", lambda: 3)  # "b" goes
    assert cache.get("b", lambda: 5) == 5 and cache.get("c", lambda: 0) == 3
    assert (cache.hits, cache.misses, len(cache)) == (2, 4, 2)
    cache.discard("c")
    assert cache.get("c", lambda: 7) == 7
    again = pickle.loads(pickle.dumps(cache))  # into a spawned worker
    assert again.get("b", lambda: 0) == 5 and again.maxsize == 2
    with pytest.raises(ValueError):
        LRUCache(0)
