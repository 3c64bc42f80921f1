"""HTTP basic auth (RFC 7617) against bcrypt hashes, as exporter-toolkit checks `basic_auth_users`.

bcrypt costs ~50-300 ms by design, and Prometheus sends the same credentials every scrape: a verdict is
cached for a short while, keyed by a SHA-256 of (user, hash, password) so no password is kept. Unknown
users are checked against a fixed dummy hash so that timing does not tell which users exist, and one
bcrypt runs at a time, so a flood of wrong passwords costs at most one core.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import bcrypt

# A fixed cost-10 hash (exporter-toolkit's, of "fakepassword") checked for unknown users so they cost the
# same time as known ones; an unknown user is refused whatever it matches.
_DUMMY_HASH = b"$2b$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 1024


class BasicAuth:
    """`allows(authorization_header)` for the users of a web config (user -> bcrypt hash)."""

    def __init__(
        self,
        users: Mapping[str, str],
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = {u.encode(): h.encode() for u, h in users.items()}
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        """Whether an `Authorization` header value carries a valid user and password."""
        creds = parse_basic(header)
        if creds is None:
            return False
        user, password = creds
        hashed = self._users.get(user, _DUMMY_HASH)
        key = hashlib.sha256(b"\0".join((user, hashed, password))).digest()
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._bcrypt_lock:
            ok = _checkpw(password, hashed) and user in self._users
        self._remember(key, ok)
        return ok

    def _cached(self, key: bytes) -> bool | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None or self._clock() - hit[0] > self._cache_seconds:
                return None
            return hit[1]

    def _remember(self, key: bytes, ok: bool) -> None:
        with self._cache_lock:
            self._cache[key] = (self._clock(), ok)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)  # compares in constant time
    except ValueError:  # a malformed hash (refused at load; belt and braces)
        return False


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from `Basic dXNlcjpwYXNz`, or None when absent or malformed.

    >>> parse_basic("Basic dXNlcjpwYXNz")
    (b'user', b'pass')
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if not hmac.compare_digest(scheme.lower().encode(), b"basic"):
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None
