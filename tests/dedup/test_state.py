"""The compact table against a dict model: random inserts, overwrites, deletes, growth and sweeps."""

from __future__ import annotations

import random

from voicecall.dedup.state import MIN_CAPACITY, State


def test_matches_a_dict_under_random_operations() -> None:
    rng = random.Random(7)
    state, model = State(), {}
    # Few distinct low bits force long probe runs and wrap-around, where backward-shift deletion is delicate.
    keys = [rng.getrandbits(64) | 1 for _ in range(3000)] + [(i << 20) | 5 for i in range(1, 300)]
    for step in range(40_000):
        key = rng.choice(keys)
        action = rng.random()
        if action < 0.55:
            value = (rng.getrandbits(64), rng.getrandbits(32))
            state.put(key, *value)
            model[key] = value
        elif action < 0.85:
            assert state.delete(key) == (model.pop(key, None) is not None)
        else:
            assert state.get(key) == model.get(key)
        if step % 5000 == 0:
            assert len(state) == len(model)
    assert len(state) == len(model)
    assert sorted(state.items()) == sorted((k, fp, t) for k, (fp, t) in model.items())
    for key in keys:
        assert state.get(key) == model.get(key)


def test_sweep_removes_exactly_the_old_entries() -> None:
    state = State()
    for key in range(1, 2001):
        state.put(key * 0x9E3779B97F4A7C15 % (1 << 64) or 1, key, key)  # time = key
    removed: list[int] = []
    for _ in range(state.capacity):  # more than one full pass
        removed.extend(state.sweep(cutoff=1001, slots=7))
    assert len(removed) == 1000
    assert len(state) == 1000
    assert sorted(t for _, _, t in state.items()) == list(range(1001, 2001))


def test_grows_and_stays_compact() -> None:
    state = State()
    assert state.capacity == MIN_CAPACITY
    for key in range(1, 100_001):
        state.put(key * 0x9E3779B97F4A7C15 % (1 << 64) or 1, key, 1)
    assert len(state) == 100_000
    assert state.capacity >= 100_000 / 0.7
    assert state.nbytes / len(state) <= 64


def test_sweep_skips_while_nothing_can_expire_and_still_finds_late_old_entries() -> None:
    state = State()
    for key in range(1, 500):
        state.put(key << 1 | 1, key, 1000 + key)
    for _ in range(100):  # full passes learn the true minimum (1001)
        assert state.sweep(cutoff=900, slots=64) == []
    state.put(12345 << 1 | 1, 0, 10)  # an older entry arrives later: the bound must drop with it
    removed = []
    for _ in range(100):
        removed += state.sweep(cutoff=500, slots=64)
    assert removed == [12345 << 1 | 1]
    assert len(state) == 499
