from bot.lru import LRU


def test_least_recently_used_goes_first():
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the least recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)
    cache.put("a", 10)  # rewriting keeps one entry
    assert len(cache) == 2 and cache.get("a") == 10
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None
