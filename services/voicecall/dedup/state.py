"""Compact dedup state of one partition: sessionId hash → (fingerprint, window time), 20 bytes per slot.

A dict of Python ints costs well over 100 bytes per key in CPython; this is an open-addressing table (linear
probing, backward-shift deletion, no tombstones) in three flat arrays: 8-byte id hashes (0 = empty slot), 8-byte
fingerprints and 4-byte times (seconds since the epoch, unsigned: good until 2106). At a load of 0.35–0.7 that is
29–57 bytes per key. Ids are already uniform hashes, so the slot is the low bits of the id.
"""

from __future__ import annotations

from array import array

MIN_CAPACITY = 1024
MAX_LOAD = 0.7
_NO_TIME = 1 << 32


def _table(kind: str, size: int) -> array[int]:
    return array(kind, bytes(array(kind).itemsize * size))


class State:
    __slots__ = ("_cursor", "_fps", "_ids", "_mask", "_min_time", "_pass_clean", "_pass_min", "_size", "_times")

    def __init__(self, capacity: int = MIN_CAPACITY) -> None:
        self._alloc(max(MIN_CAPACITY, 1 << (max(capacity, 1) - 1).bit_length()))
        self._size = 0
        self._cursor = 0
        # A lower bound of every entry's time: while the expiry cutoff is below it, a sweep has nothing to do.
        # Each full, undisturbed sweep pass tightens it to the true minimum.
        self._min_time = _NO_TIME
        self._pass_min = _NO_TIME
        self._pass_clean = True

    def _alloc(self, capacity: int) -> None:
        self._ids = _table("Q", capacity)
        self._fps = _table("Q", capacity)
        self._times = _table("I", capacity)
        self._mask = capacity - 1

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return self._mask + 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays (the object headers are a constant few hundred bytes)."""
        return sum(a.itemsize * len(a) for a in (self._ids, self._fps, self._times))

    def _slot(self, key: int) -> int:
        """The slot holding ``key``, or the empty slot where it would go."""
        ids, mask = self._ids, self._mask
        i = key & mask
        while True:
            current = ids[i]
            if current == key or current == 0:
                return i
            i = (i + 1) & mask

    def get(self, key: int) -> tuple[int, int] | None:
        """``(fingerprint, time)`` of ``key`` (a non-zero 64-bit id), or None."""
        i = self._slot(key)
        if self._ids[i] == 0:
            return None
        return self._fps[i], self._times[i]

    def put(self, key: int, fingerprint: int, moment: int) -> None:
        ids, mask = self._ids, self._mask
        i = key & mask
        while True:  # _slot, inlined: this is the hot path of processing and of restoring
            current = ids[i]
            if current == key:
                break
            if current == 0:
                if self._size >= MAX_LOAD * mask:
                    self._grow()
                    self.put(key, fingerprint, moment)
                    return
                ids[i] = key
                self._size += 1
                break
            i = (i + 1) & mask
        self._fps[i] = fingerprint
        self._times[i] = moment
        if moment < self._min_time:
            self._min_time = moment
        if moment < self._pass_min:
            self._pass_min = moment

    def delete(self, key: int) -> bool:
        i = self._slot(key)
        if self._ids[i] == 0:
            return False
        self._remove_at(i)
        self._pass_clean = False  # the shift may have moved an unvisited entry behind the sweep cursor
        return True

    def _remove_at(self, i: int) -> None:
        """Backward-shift deletion: pull later members of the probe run into the hole, so lookups stay correct."""
        ids, fps, times, mask = self._ids, self._fps, self._times, self._mask
        hole = i
        j = i
        while True:
            j = (j + 1) & mask
            current = ids[j]
            if current == 0:
                break
            home = current & mask
            # Move ``current`` into the hole unless its home lies cyclically in (hole, j].
            if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole and home > j):
                ids[hole], fps[hole], times[hole] = current, fps[j], times[j]
                hole = j
        ids[hole] = 0
        fps[hole] = 0
        times[hole] = 0
        self._size -= 1

    def _grow(self) -> None:
        ids, fps, times = self._ids, self._fps, self._times
        self._alloc(2 * len(ids))
        new_ids, new_fps, new_times, mask = self._ids, self._fps, self._times, self._mask
        for i, key in enumerate(ids):
            if key:
                j = key & mask
                while new_ids[j]:
                    j = (j + 1) & mask
                new_ids[j] = key
                new_fps[j] = fps[i]
                new_times[j] = times[i]
        self._cursor = 0
        self._pass_min = self._min_time
        self._pass_clean = False

    def sweep(self, cutoff: int, slots: int) -> list[int]:
        """Remove entries older than ``cutoff`` among the next ``slots`` slots (a cursor walks the table round and
        round, so the cost is spread over many calls); returns the removed keys."""
        if cutoff <= self._min_time:
            return []
        removed: list[int] = []
        ids, times, mask = self._ids, self._times, self._mask
        i = self._cursor
        low = self._pass_min
        for _ in range(min(slots, mask + 1)):
            key = ids[i]
            if key:
                moment = times[i]
                if moment < cutoff:
                    removed.append(key)
                    self._remove_at(i)
                    # The shift may have pulled an unvisited entry into slot i: look at it again.
                    continue
                if moment < low:
                    low = moment
            i = (i + 1) & mask
            if i == 0:  # a full pass: every remaining entry was seen (unless a delete or growth moved some)
                if self._pass_clean:
                    self._min_time = low
                low = _NO_TIME
                self._pass_clean = True
        self._cursor = i
        self._pass_min = low
        return removed

    def items(self) -> list[tuple[int, int, int]]:
        """Every ``(key, fingerprint, time)`` — for tests and diagnostics, not the hot path."""
        return [(k, self._fps[i], self._times[i]) for i, k in enumerate(self._ids) if k]
