"""The LMDB backend's transactions: read and write steps, map growth, and replay.

Every unit of work is a *step*: a function of an LMDB transaction returning
``(result, crc)``, where ``crc`` is a CRC-32 of what the step read or wrote (the
bytes, so nothing is copied). :meth:`Engine.read` and :meth:`Engine.write` run a step
in a transaction of its own, or in the thread's open ``transaction()`` block.

Growth of the memory map: before a write starts, the map is grown (doubled, or more
for a large batch) unless it leaves room for the estimated new data plus the whole
used size (what copy-on-write may touch). A step run outside a block that still hits
``MapFullError`` is aborted and run again after growing. Inside a block the caller's
code cannot be run again, so every step run in it is recorded with its crc; when the
map fills up, the transaction is aborted, the map grown, and the recorded steps
replayed in a new transaction. If another process changed what the block had read in
between, or the caller changed an element it had passed in, a step gives another crc
and the transaction fails with ``StorageError`` (nothing written) instead of
committing a mix. A write step that fails half-way inside a block voids the whole
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb
from damas_core.backends.lmdb_env import META_INDEXES, Env

from damas_core.errors import StorageError

T = TypeVar("T")
#: A unit of work: ``step(txn) -> (result, crc of what it read or wrote)``.
Step = Callable[[Any], tuple[T, int]]

# Bytes kept free above twice the used size before any write starts (see room).
_SLACK = 1 << 20
#: Room a transaction block gets before it starts, in bytes.
BLOCK_ROOM = 256 << 20


class Block:
    """A thread's open write transaction and the steps run in it (for replay)."""

    __slots__ = ("holding", "log", "room", "spent", "txn")

    def __init__(self) -> None:
        self.txn: Any = None
        self.holding = False
        self.log: list[tuple[Step[Any], int]] = []
        self.room = 0
        self.spent = 0


class Engine:
    """Runs steps on one environment ``h``; ``on_indexes`` hears of every index name
    found in the environment (another process may add one)."""

    def __init__(self, h: Env, on_indexes: Callable[[list[str]], None]) -> None:
        self.h = h
        self._on_indexes = on_indexes

    def block(self) -> Block | None:
        """The thread's open ``transaction()`` block, if any."""
        return self.h.local.block

    def read(self, step: Step[T], *, buffers: bool = False) -> T:
        """Run a read step: in the thread's write transaction if one is open (so it
        sees its uncommitted writes), else in a read-only transaction of its own."""
        h = self.h
        block = h.local.block
        if block is not None:
            return self._in_block(block, step, 0)
        gate = h.gate
        gate.enter()
        try:
            while True:
                try:
                    txn = h.env.begin(buffers=buffers)
                except lmdb.MapResizedError:
                    gate.exit()
                    try:
                        self.adopt_map()
                    finally:
                        gate.enter()
                    continue
                try:
                    return step(txn)[0]
                finally:
                    txn.abort()
        finally:
            gate.exit()

    def write(self, step: Step[T], *, need: int) -> T:
        """Run a write step atomically: in the thread's open transaction, or in one of
        its own, run again after growing the map if it fills up (``need``: the bytes
        it may add, estimated)."""
        h = self.h
        block = h.local.block
        if block is not None:
            return self._in_block(block, step, need)
        full = False
        while True:
            self.ensure_room(need, double=full)
            h.gate.enter()
            try:
                txn = self.begin_write()
                try:
                    result = step(txn)[0]
                    txn.commit()
                    return result
                except BaseException:
                    txn.abort()
                    raise
            except lmdb.MapFullError:
                full = True
            finally:
                h.gate.exit()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The thread's write transaction block (re-entrant: a nested one joins)."""
        h = self.h
        if h.local.block is not None:
            yield
            return
        # Growing the map means replaying the block: leave it room for a large one
        # first (the map is address space; the file grows only as pages are written).
        self.ensure_room(BLOCK_ROOM)
        block = Block()
        h.gate.enter()
        block.holding = True
        try:
            block.txn = self.begin_write()
            block.room = self.room()
        except BaseException:
            h.gate.exit()
            raise
        h.local.block = block
        try:
            yield
        except BaseException:
            h.local.block = None
            self._end_block(block)
            raise
        h.local.block = None
        try:
            while True:
                if block.txn is None:
                    raise StorageError("this transaction was aborted by an earlier failure")
                try:
                    block.txn.commit()
                    block.txn = None
                    break
                except lmdb.MapFullError:
                    block.txn = None  # a failed commit frees the transaction
                    self._regrow(block, 0, replay_only=True)
        finally:
            self._end_block(block)

    def _in_block(self, block: Block, step: Step[T], need: int) -> T:
        """Run ``step`` in the block's transaction and record it for a replay."""
        if block.txn is None:
            raise StorageError("this transaction was aborted by an earlier failure")
        if need and need > block.room - block.spent:
            self._regrow(block, need)
        while True:
            try:
                result, crc = step(block.txn)
                break
            except lmdb.MapFullError:
                self._regrow(block, need, full=True)
            except BaseException:
                if need:  # a write step failed half-way: the whole transaction is void
                    block.txn.abort()
                    block.txn = None
                raise
        block.spent += need
        block.log.append((step, crc))
        return result

    def _regrow(
        self, block: Block, need: int, *, full: bool = False, replay_only: bool = False
    ) -> None:
        """Abort the block's transaction, grow the map, and replay its steps in a new
        one; ``StorageError`` (transaction closed) if a step now gives another crc."""
        h = self.h
        if block.txn is not None:
            block.txn.abort()
            block.txn = None
        if block.holding:
            h.gate.exit()
            block.holding = False
        full = full or replay_only
        while True:
            self.ensure_room(block.spent + need, double=full)
            h.gate.enter()
            block.holding = True
            txn = self.begin_write()
            try:
                for step, crc in block.log:
                    if step(txn)[1] != crc:
                        raise StorageError(
                            "transaction aborted: the LMDB map had to grow and the data "
                            "this transaction had read or written changed meanwhile; retry it"
                        )
            except lmdb.MapFullError:
                txn.abort()
                h.gate.exit()
                block.holding = False
                full = True
                continue
            except BaseException:
                txn.abort()
                raise
            block.txn = txn
            block.room = self.room()
            return

    def _end_block(self, block: Block) -> None:
        if block.txn is not None:
            block.txn.abort()
            block.txn = None
        if block.holding:
            self.h.gate.exit()
            block.holding = False

    def begin_write(self) -> Any:
        """A write transaction that knows every index (call with the gate entered)."""
        h = self.h
        while True:
            try:
                txn = h.env.begin(write=True)
            except lmdb.MapResizedError:
                h.gate.exit()
                try:
                    self.adopt_map()
                finally:
                    h.gate.enter()
                continue
            # Another process may have added an index: maintain it too.
            raw = txn.get(META_INDEXES, db=h.meta)
            if raw == h.meta_raw:
                return txn
            txn.abort()
            self._on_indexes(h.refresh_indexes(raw))

    def room(self) -> int:
        """Bytes of the map a new write may fill: what is left once the used size is
        reserved a second time, since copy-on-write may rewrite every used page."""
        h = self.h
        info = h.env.info()
        used = (info["last_pgno"] + 1) * h.psize
        return int(info["map_size"]) - 2 * used - _SLACK

    def ensure_room(self, need: int, *, double: bool = False) -> None:
        """Grow the map unless it has room for ``need`` more bytes (``double``: grow)."""
        if not double and self.room() >= need:
            return
        h = self.h
        with h.gate.alone():
            info = h.env.info()
            size = int(info["map_size"])
            used = (info["last_pgno"] + 1) * h.psize
            room = size - 2 * used - _SLACK
            if room >= need and not double:
                return  # another thread grew it meanwhile
            new = max(size * 2, 2 * used + need + _SLACK)
            new = -(-new // (1 << 20)) * (1 << 20)
            h.env.set_mapsize(new)

    def adopt_map(self) -> None:
        """Take the map size another process has grown the store to."""
        with self.h.gate.alone():
            self.h.env.set_mapsize(0)


__all__ = ["BLOCK_ROOM", "Block", "Engine", "Step"]
