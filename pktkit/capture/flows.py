"""Flow ids: one number per bidirectional flow, in order of first appearance, across files.

The key (see :mod:`~pktkit.capture.schema`) holds both endpoints in a fixed order, the
innermost VNI, the encapsulation chain and the protocol. The reference engine numbers keys
with a dict (:class:`FlowNumbering`); the fast path packs them into integer words and looks a
whole batch up at once in a numpy hash table (:class:`FlowIds`), numbering exactly alike.
"""

from __future__ import annotations

import numpy as np

from pktkit.capture.decode import DecodedPacket

FlowKey = tuple[str, int | None, int | None, tuple[str, int], tuple[str, int]]


class FlowNumbering:
    """Bidirectional flow ids in order of first appearance, one decoded packet at a time."""

    def __init__(self) -> None:
        self._ids: dict[FlowKey, int] = {}

    def id_of(self, p: DecodedPacket, encap: str, vni: int | None) -> int | None:
        if p.src is None or p.dst is None:
            return None
        # -1 stands for "no port" so that the endpoints sort without None comparisons
        a = (p.src, -1 if p.sport is None else p.sport)
        b = (p.dst, -1 if p.dport is None else p.dport)
        key: FlowKey = (encap, vni, p.proto, *sorted((a, b)))  # type: ignore[assignment]
        return self._ids.setdefault(key, len(self._ids))


class HashIndex:
    """A growing map uint64 value → id, looked up for a whole array at once.

    Open addressing with linear probing in two numpy arrays, at most half full: a lookup is one
    or two vectorized gather-and-compare rounds where a dict would cost a Python call per row
    (and ``searchsorted`` a cache miss per level)."""

    def __init__(self, bits: int = 12) -> None:
        self.count = 0
        self._allocate(bits)

    def _allocate(self, bits: int) -> None:
        self.shift = np.uint64(64 - bits)
        self.mask = (1 << bits) - 1
        self.keys = np.zeros(1 << bits, np.uint64)
        self.ids = np.full(1 << bits, -1, np.int64)  # -1: empty slot

    def _home(self, x: np.ndarray) -> np.ndarray:
        return ((x * np.uint64(0x9E3779B97F4A7C15)) >> self.shift).astype(np.int64)

    def lookup(self, x: np.ndarray) -> np.ndarray:
        """The id of every value, -1 where absent."""
        out = np.full(len(x), -1, np.int64)
        todo = np.arange(len(x))
        slot = self._home(x)
        while len(todo):
            ids = self.ids[slot]
            hit = (ids >= 0) & (self.keys[slot] == x[todo])
            out[todo[hit]] = ids[hit]
            on = (ids >= 0) & ~hit  # the slot holds another value: probe the next one
            todo, slot = todo[on], (slot[on] + 1) & self.mask
        return out

    def add(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Add distinct ``values`` that are not present yet."""
        if 2 * (self.count + len(values)) > len(self.keys):  # keep it at most half full
            used = self.ids >= 0
            old_values, old_ids = self.keys[used], self.ids[used]
            bits = max(int(2 * (self.count + len(values))).bit_length() + 1, 12)
            self._allocate(bits)
            self.count = 0
            self.add(old_values, old_ids)
        pending = np.arange(len(values))
        slot = self._home(values)
        while len(pending):
            free = np.flatnonzero(self.ids[slot] < 0)
            _, first = np.unique(slot[free], return_index=True)
            placed = free[first]  # one value per free slot; the others probe on
            self.keys[slot[placed]] = values[pending[placed]]
            self.ids[slot[placed]] = ids[pending[placed]]
            on = np.ones(len(pending), bool)
            on[placed] = False
            pending, slot = pending[on], (slot[on] + 1) & self.mask
        self.count += len(values)


# Multipliers of the 64-bit flow-key digest (odd constants from splitmix/xxhash/murmur).
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x27D4EB2F165667C5], np.uint64)
FLOW_KEY_WORDS = len(_MIX)


def flow_digest(words: list[np.ndarray]) -> np.ndarray:
    """A 64-bit digest of flow keys given as FLOW_KEY_WORDS uint64 columns (equal keys, equal
    digests; a collision only costs speed, see :class:`FlowIds`)."""
    digest = words[0] * _MIX[0]
    for word, mix in zip(words[1:], _MIX[1:], strict=True):
        digest ^= word * mix
    digest ^= digest >> np.uint64(29)
    return digest


class FlowIds:
    """Flow ids in order of first appearance, across batches: key → id.

    Keys are found through their 64-bit digest in a :class:`HashIndex` and then compared
    whole with the stored key of the id found, so a digest collision can never merge two flows:
    the first one seen switches this numbering to an exact dict (slower, equally correct)."""

    def __init__(self) -> None:
        self.index = HashIndex()
        self.keys = np.empty((1024, FLOW_KEY_WORDS), np.uint64)  # row = id; grows by doubling
        self.count = 0
        self.exact: dict[bytes, int] | None = None

    def ids(self, words: list[np.ndarray]) -> np.ndarray:
        """The id of each key (given as FLOW_KEY_WORDS uint64 columns)."""
        key = np.stack(words, axis=1)
        if self.exact is not None:
            return self._exact_ids(key)
        digest = flow_digest(words)
        ids = self.index.lookup(digest)
        known = ids >= 0
        stored = self.keys[ids] if known.all() else self.keys[ids[known]]
        if not np.array_equal(stored, key if known.all() else key[known]):
            return self._switch_to_exact(key)  # a new key whose digest is taken
        todo = np.flatnonzero(ids < 0)
        if not len(todo):
            return ids
        # New flows: number their distinct keys in order of first appearance.
        new_key, new_digest = key[todo], digest[todo]
        _, first, inverse = np.unique(new_digest, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        if not (new_key[first[inverse]] == new_key).all():
            return self._switch_to_exact(key)  # two new keys share a digest
        order = np.argsort(first)
        numbered = np.empty(len(first), np.int64)
        numbered[order] = np.arange(self.count, self.count + len(first))
        ids[todo] = numbered[inverse]
        self._store(new_key[first[order]])
        self.index.add(new_digest[first], numbered)
        return ids

    def key_table(self) -> np.ndarray:
        """The keys numbered so far, row = id ((count, FLOW_KEY_WORDS) uint64, a copy): fed in
        this order to another :class:`FlowIds`, they number as they did here (a dataset's
        parts decoded apart are numbered as one table so)."""
        return self.keys[:self.count].copy()

    def _store(self, keys: np.ndarray) -> None:
        need = self.count + len(keys)
        if need > len(self.keys):
            grown = np.empty((max(need, 2 * len(self.keys)), FLOW_KEY_WORDS), np.uint64)
            grown[:self.count] = self.keys[:self.count]
            self.keys = grown
        self.keys[self.count:need] = keys
        self.count = need

    def _switch_to_exact(self, key: np.ndarray) -> np.ndarray:
        stored = np.ascontiguousarray(self.keys[:self.count]).view(f"V{8 * FLOW_KEY_WORDS}")
        self.exact = {k: i for i, k in enumerate(stored.ravel().tolist())}
        return self._exact_ids(key)

    def _exact_ids(self, key: np.ndarray) -> np.ndarray:
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rows = np.ascontiguousarray(key[first[order]])
        words = rows.view(f"V{8 * FLOW_KEY_WORDS}").ravel().tolist()
        exact = self.exact
        assert exact is not None
        numbered = np.empty(len(first), np.int64)
        numbered[order] = [exact.setdefault(k, len(exact)) for k in words]
        new = numbered[order] >= self.count
        self._store(rows[new])
        return numbered[inverse.ravel()]
