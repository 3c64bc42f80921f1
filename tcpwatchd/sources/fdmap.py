"""A process's fd table as the owner cache keeps it between polls: compact, because a host has 100k+ fds.

As a dict, fd name -> socket inode costs ~60 bytes an fd (the entry and an int object per inode); as a
u32 array indexed by fd number, 5. The kernel hands out the lowest free fd number, so tables are dense;
a sparse one (fds dup2()ed far up) stays a dict.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import compress, repeat

SPARSE_SLACK = 64  # a table is kept dense while its highest fd is below 2 x its size + this


class FdMap:
    """fd name -> socket inode (0: not a socket), read-only; `get` and `values` as a dict's.

    >>> fds = FdMap.of({"0": 0, "3": 12345})
    >>> fds.get("3"), fds.get("1"), sorted(fds.values()), len(fds)
    (12345, None, [0, 12345], 2)
    """

    __slots__ = ("_count", "_inodes", "_present", "_sparse")

    def __init__(self) -> None:
        self._inodes = array("I")
        self._present = bytearray()
        self._sparse: dict[str, int] | None = None
        self._count = 0

    @classmethod
    def of(cls, fds: Mapping[str, int]) -> FdMap:
        table = cls()
        table._count = len(fds)
        numbers = list(map(int, fds))
        top = max(numbers, default=-1)
        if top >= 2 * len(fds) + SPARSE_SLACK or max(fds.values(), default=0) >= 1 << 32:
            table._sparse = dict(fds)
            return table
        if top + 1 == len(numbers) and numbers == list(range(len(numbers))):  # 0..n-1, the usual case
            table._inodes = array("I", fds.values())
            table._present = bytearray(b"\x01" * len(numbers))
            return table
        table._inodes = array("I", bytes(4 * (top + 1)))
        table._present = bytearray(top + 1)
        # Scattered in C (map over the bound __setitem__s): a full scan stores every fd of the host.
        deque(map(table._inodes.__setitem__, numbers, fds.values()), maxlen=0)
        deque(map(table._present.__setitem__, numbers, repeat(1)), maxlen=0)
        return table

    def __len__(self) -> int:
        return self._count

    def get(self, name: str) -> int | None:
        if self._sparse is not None:
            return self._sparse.get(name)
        try:
            number = int(name)
        except ValueError:
            return None
        if 0 <= number < len(self._present) and self._present[number]:
            return self._inodes[number]
        return None

    def values(self) -> Iterable[int]:
        if self._sparse is not None:
            return self._sparse.values()
        return compress(self._inodes, self._present)

    def __iter__(self) -> Iterator[str]:
        if self._sparse is not None:
            return iter(self._sparse)
        return map(str, compress(range(len(self._present)), self._present))
