"""Basic auth against bcrypt hashes: right and wrong passwords, unknown users, malformed headers, cache."""

from __future__ import annotations

import base64
import time

import bcrypt
import pytest

from tcpwatchd.web.auth import BasicAuth, parse_basic

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
HASH_2Y = HASH.replace("$2b$", "$2y$", 1)  # what `htpasswd -B` writes


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("prometheus", "s3cret"), True),
        (basic("htpasswd", "s3cret"), True),
        ("basic " + basic("prometheus", "s3cret")[6:], True),  # the scheme is case-insensitive
        (basic("prometheus", "wrong"), False),
        (basic("prometheus", "s3cret "), False),
        (basic("nobody", "s3cret"), False),
        (basic("prometheus", "x" * 100), False),  # bcrypt refuses > 72 bytes: a refusal, not an error
        (None, False),
        ("", False),
        ("Bearer abc", False),
        ("Basic !!!not-base64", False),
        ("Basic " + base64.b64encode(b"no-colon").decode(), False),
    ],
)
def test_allows(header: str | None, ok: bool) -> None:
    auth = BasicAuth({"prometheus": HASH, "htpasswd": HASH_2Y})
    assert auth.allows(header) is ok


def test_a_verified_pair_is_cached_briefly() -> None:
    now = [0.0]
    slow = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(12)).decode()  # ~0.2 s or more per check
    auth = BasicAuth({"p": slow}, cache_seconds=60, clock=lambda: now[0])
    t0 = time.perf_counter()
    assert auth.allows(basic("p", "s3cret"))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        assert auth.allows(basic("p", "s3cret"))
    cached = (time.perf_counter() - t0) / 100
    assert cached < first / 50
    now[0] = 61  # expired: checked again (still right)
    t0 = time.perf_counter()
    assert auth.allows(basic("p", "s3cret"))
    assert time.perf_counter() - t0 > cached * 50
    assert not auth.allows(basic("p", "other"))


def test_parse_basic_keeps_colons_in_the_password() -> None:
    assert parse_basic(basic("u", "a:b")) == (b"u", b"a:b")
