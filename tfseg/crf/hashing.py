"""Deduplicate and look up int64 keys with TFLite builtin ops only: an open-addressing hash table.

TFLite's UNIQUE kernel inserts every element into a ``std::map``: measured here it takes about 1.7 s
for a million int64 keys and about 20 s for 3.6 million, which made the portable lattice's build
dominate its run time. This table is built from elementwise ops, GATHER, UNSORTED_SEGMENT_MIN/MAX,
CUMSUM and WHERE instead, in a fixed number of vectorised rounds of linear probing:

- the table has a prime number of slots, at least twice the number of keys inserted, and holds
  for each slot the index of the element that owns it (or an empty mark). A key's first slot is
  ``key mod size``: nearby keys land in nearby slots, so the mostly coherent order of the lattice's
  keys (neighbouring pixels, similar colours) becomes mostly local memory access, which matters
  more than anything else here (a random GATHER from a table of millions costs about 20 times a
  local one on the target machine);
- in round r, every key not yet placed looks at slot ``home + r``: if the slot is empty, the
  keys that look at it claim it (the smallest element index wins); a key whose slot now holds an
  equal key is placed. All elements with the same key move together, so each key owns one slot;
- keys still unplaced after the last round (rare) are numbered by ``tf.unique`` on that short
  list; they are known not to be in the table.

The distinct keys are then numbered in order of first occurrence, as ``tf.unique`` numbers them:
the lattice's keys come in pixel order, so later gathers and segment sums by these numbers
touch memory in nearly increasing order.

Lookups follow the same probe sequence: an empty slot means absent, an equal key means found, and
queries still open after the last round are matched against the leftover keys with ``tf.unique``.
"""

from __future__ import annotations

import tensorflow as tf

# Primes just below powers of two; the table size is the smallest one >= 2 * count.
_PRIMES = (1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139, 524287, 1048573, 2097143,
           4194301, 8388593, 16777213, 33554393, 67108859, 134217689, 268435399, 536870909, 1073741789)
PROBE_ROUNDS = 4
# Tagged keys (key, tag) start probing at (key + tag * _TAG_STRIDE) mod size; keys stay below 2**62
# (the lattice checks its key space), so the sum stays below 2**63.
_TAG_STRIDE = 1048583
_MAX_TAG_BOUND = 2**30


def _table_size(count):
    """The smallest listed prime >= 2 * count (int32 scalar); the largest one if none is."""
    primes = tf.constant(_PRIMES, tf.int32)
    position = tf.reduce_sum(tf.cast(primes < 2 * count, tf.int32))
    return tf.gather(primes, tf.minimum(position, len(_PRIMES) - 1))


def _probe(home, size, round_index):
    slot = home + round_index
    return tf.where(slot >= size, slot - size, slot)


def _rows(mask):
    """int32 positions of the true entries of a 1-D mask."""
    return tf.cast(tf.reshape(tf.where(mask), [-1]), tf.int32)


class HashTable:
    """The distinct values of a 1-D int64 tensor, numbered in order of first occurrence (as ``tf.unique``).

    With ``tags`` (int [N] in [0, ``tag_bound``)), the distinct (key, tag) pairs instead.

    After construction: ``ids`` int32 [N] (the number of each element's key), ``representatives``
    int32 [U] (for each number, the index of the first element with that key, increasing),
    ``keys`` int64 [U] (the distinct keys by number), ``count`` (U, int32 scalar) and ``slot_order``
    int32 [U] (the numbers in table slot order: a permutation).
    ``lookup(queries)`` gives the number of each query key, -1 where it is absent.
    """

    def __init__(self, keys, tags=None, tag_bound=None, rounds=PROBE_ROUNDS):
        keys = tf.convert_to_tensor(keys, tf.int64)
        if keys.shape.rank != 1:
            raise ValueError(f"keys must be 1-D; got shape {keys.shape}")
        if int(rounds) < 1:
            raise ValueError(f"rounds must be at least 1; got {rounds!r}")
        if (tags is None) != (tag_bound is None):
            raise ValueError("tags and tag_bound go together: tags int [N] in [0, tag_bound)")
        if tags is not None:
            tags = tf.convert_to_tensor(tags, tf.int64)
            if tags.shape.rank != 1:
                raise ValueError(f"tags must be 1-D like keys; got shape {tags.shape}")
            if not 0 < int(tag_bound) <= _MAX_TAG_BOUND:
                raise ValueError(f"tag_bound must be in [1, {_MAX_TAG_BOUND}]; got {tag_bound!r}")
        self.rounds = int(rounds)
        self._tagged = tags is not None
        count = tf.shape(keys)[0]
        size = _table_size(count)
        home = self._home(keys if tags is None else keys + tags * _TAG_STRIDE, size)
        elements = tf.range(count)

        def same(owners, element_keys, element_tags):
            equal = tf.equal(tf.gather(keys, owners), element_keys)
            if tags is not None:
                equal = tf.logical_and(equal, tf.equal(tf.gather(tags, owners), element_tags))
            return equal

        def key_and_tag(rows):
            return tf.gather(keys, rows), None if tags is None else tf.gather(tags, rows)

        # owner[slot]: the smallest element index claiming it (int32 max: empty; the last slot is a sink).
        # The smallest index wins, so a key's owner is its first element.
        # Round 0 for every element (all slots empty): no compaction, no scatter afterwards.
        owner = tf.math.unsorted_segment_min(elements, home, size + 1)
        placed_first = same(tf.gather(owner, home), keys, tags)
        pending = _rows(tf.logical_not(placed_first))
        late_rows, late_slots = [], []
        for round_index in range(1, self.rounds):
            slot = _probe(tf.gather(home, pending), size, round_index)
            empty = tf.gather(owner, slot) >= count
            owner = tf.minimum(owner, tf.math.unsorted_segment_min(pending, tf.where(empty, slot, size), size + 1))
            placed = same(tf.gather(owner, slot), *key_and_tag(pending))
            hit = _rows(placed)
            late_rows.append(tf.gather(pending, hit))
            late_slots.append(tf.gather(slot, hit))
            pending = tf.gather(pending, _rows(tf.logical_not(placed)))
        owner = owner[:size]
        occupied = owner < count
        # Keys left after the last round are absent from the table; number them after its keys.
        leftover_keys, leftover_ids = tf.unique(tf.gather(keys, pending), out_idx=tf.int32)
        if tags is not None:  # number the distinct (key, tag) pairs: key number * tag_bound + tag
            pairs = tf.cast(leftover_ids, tf.int64) * int(tag_bound) + tf.gather(tags, pending)
            leftover_keys, leftover_ids = tf.unique(pairs, out_idx=tf.int32)
        leftover_first = tf.math.unsorted_segment_min(pending, leftover_ids, tf.shape(leftover_keys)[0])
        slot_number = tf.cumsum(tf.cast(occupied, tf.int32)) - 1  # a provisional number, in slot order
        table_count = slot_number[-1] + 1
        provisional = tf.where(placed_first, tf.gather(slot_number, home), tf.math.unsorted_segment_max(
            tf.concat([tf.gather(slot_number, tf.concat(late_slots, axis=0)) if late_slots
                       else tf.zeros([0], tf.int32), leftover_ids + table_count], axis=0),
            tf.concat(late_rows + [pending], axis=0), count))
        # Renumber in order of first occurrence: element e comes first for its key iff it is the
        # key's first element; the running count of such elements is the new number.
        first = tf.concat([tf.gather(owner, _rows(occupied)), leftover_first], axis=0)  # by provisional number
        is_first = tf.equal(tf.gather(first, provisional), elements)
        renumber = tf.gather(tf.cumsum(tf.cast(is_first, tf.int32)) - 1, first)  # provisional -> final
        self.ids = tf.gather(renumber, provisional)
        self.representatives = _rows(is_first)
        self.keys = tf.gather(keys, self.representatives)
        self.count = tf.shape(self.representatives)[0]
        # slot_order[i]: the number of the i-th key in table slot order (leftover keys last). Keys that
        # differ by a constant sit a nearly constant number of slots apart in this order.
        self.slot_order = renumber
        padded = tf.concat([renumber, [-1]], axis=0)  # never gathers from an empty tensor
        self._slot_number = tf.where(occupied, tf.gather(padded, tf.maximum(slot_number, 0)), -1)
        self._leftover_numbers = renumber[table_count:]
        self._size, self._owner, self._leftover_keys = size, owner, leftover_keys
        self._padded_keys = tf.concat([keys, tf.zeros([1], tf.int64)], axis=0)  # row `count`: for empty slots
        self._empty = count  # owner values >= this mean an empty slot

    @staticmethod
    def _home(keys, size):
        return tf.cast(tf.math.floormod(keys, tf.cast(size, tf.int64)), tf.int32)

    def lookup(self, queries):
        """int32 number of each int64 query key [Q]; -1 where the key is not in the table (untagged tables)."""
        if self._tagged:
            raise ValueError("lookup needs a table built without tags")
        queries = tf.convert_to_tensor(queries, tf.int64)
        count = tf.shape(queries)[0]
        home = self._home(queries, self._size)
        owner = tf.gather(self._owner, home)
        occupied = owner < self._empty
        match = tf.logical_and(occupied, tf.equal(tf.gather(self._padded_keys, tf.minimum(owner, self._empty)),
                                                  queries))
        first = tf.where(match, tf.gather(self._slot_number, home), -1)
        pending = _rows(tf.logical_and(occupied, tf.logical_not(match)))
        late_rows, late_numbers = [], []
        for round_index in range(1, self.rounds):
            slot = _probe(tf.gather(home, pending), self._size, round_index)
            owner = tf.gather(self._owner, slot)
            occupied = owner < self._empty
            match = tf.logical_and(occupied, tf.equal(tf.gather(self._padded_keys, tf.minimum(owner, self._empty)),
                                                      tf.gather(queries, pending)))
            hit = _rows(match)
            late_rows.append(tf.gather(pending, hit))
            late_numbers.append(tf.gather(self._slot_number, tf.gather(slot, hit)))
            pending = tf.gather(pending, _rows(tf.logical_and(occupied, tf.logical_not(match))))
        # Queries still open can only be leftover keys: unique over the leftovers followed by them.
        leftover_count = tf.shape(self._leftover_keys)[0]
        _, joint = tf.unique(tf.concat([self._leftover_keys, tf.gather(queries, pending)], axis=0),
                             out_idx=tf.int32)
        joint = joint[leftover_count:]
        is_leftover = _rows(joint < leftover_count)
        late_rows.append(tf.gather(pending, is_leftover))
        late_numbers.append(tf.gather(self._leftover_numbers, tf.gather(joint, is_leftover)))
        late = tf.math.unsorted_segment_max(tf.concat(late_numbers, axis=0), tf.concat(late_rows, axis=0), count)
        return tf.maximum(first, late)


def hash_unique(keys, rounds=PROBE_ROUNDS):
    """``(distinct keys, ids)`` of a 1-D int64 tensor with builtin ops only, like ``tf.unique``; see ``HashTable``."""
    table = HashTable(keys, rounds=rounds)
    return table.keys, table.ids
