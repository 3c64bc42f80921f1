"""Read a small regular file without letting its type or size hurt us.

A config path can name anything: a FIFO (a plain open() blocks until a writer appears, and SIGTERM
waits behind it), /dev/zero (read() never ends), a directory. So the file is opened non-blocking
(open(2): O_NONBLOCK makes opening a FIFO return at once) and checked with fstat(2) on the open fd, so
a rename between the check and the read cannot swap the file, and the read stops one byte past the cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a real config is a few KiB


class FileRefused(Exception):
    """Not a regular file, or larger than the cap; the message says which."""


def read_regular_file(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
    """The whole file, or FileRefused/OSError. `read_regular_file("/dev/zero")` raises
    FileRefused("not a regular file (character device)")."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRefused(f"not a regular file ({_kind(mode)})")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileRefused(f"larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "directory",
        stat.S_IFIFO: "FIFO",
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
        stat.S_IFSOCK: "socket",
    }
    return kinds.get(stat.S_IFMT(mode), "special file")
