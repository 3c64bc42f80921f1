"""The one netlink framing loop (sources/netlink.py), on recorded dumps and hand-made messages."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tcpwatchd.errors import ParseError
from tcpwatchd.sources.netlink import (
    ERRNO,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_NOOP,
    NLMSGHDR,
    SOCK_DIAG_BY_FAMILY,
    Cursor,
    NetlinkError,
    walk_messages,
)

NETLINK = Path(__file__).resolve().parents[1] / "fixtures" / "netlink"
DONE = (NETLINK / "done_ok.bin").read_bytes()


def message(mtype: int, payload: bytes, flags: int = NLM_F_MULTI) -> bytes:
    """A netlink message with its padding to 4 bytes."""
    body = NLMSGHDR.pack(16 + len(payload), mtype, flags, 1, 0) + payload
    return body + bytes(-len(body) % 4)


def walk(data: bytes, cursor: Cursor | None = None, limit: int = -1) -> tuple[list[tuple[int, int]], Cursor]:
    seen: list[tuple[int, int]] = []
    cursor = cursor or Cursor()
    walk_messages(data, cursor, lambda off, end: seen.append((off, end)), limit)
    return seen, cursor


def test_every_diag_message_of_a_recorded_dump_is_handed_over_then_done() -> None:
    data = (NETLINK / "population_inet4.bin").read_bytes()
    seen, cursor = walk(data)
    assert len(seen) == 24 and cursor.done and not cursor.interrupted
    assert cursor.off == len(data) - len(DONE)  # left on NLMSG_DONE
    assert all(NLMSGHDR.unpack_from(data, off)[:2] == (end - off, SOCK_DIAG_BY_FAMILY) for off, end in seen)


def test_padding_noop_and_odd_lengths_are_framed() -> None:
    odd = message(SOCK_DIAG_BY_FAMILY, b"x" * 5)  # 21 bytes, padded to 24
    data = odd + message(NLMSG_NOOP, b"") + odd + DONE
    seen, cursor = walk(data)
    assert seen == [(0, 21), (40, 61)] and cursor.done


def test_a_limit_stops_the_walk_where_the_next_call_goes_on() -> None:
    one = message(SOCK_DIAG_BY_FAMILY, bytes(8))
    data = one * 5 + DONE
    first, cursor = walk(data, limit=2)
    assert (len(first), cursor.off, cursor.done) == (2, 48, False)
    rest, cursor = walk(data, cursor)
    assert [off for off, _ in rest] == [48, 72, 96] and cursor.done


def test_dump_intr_on_any_message_is_kept() -> None:
    data = message(SOCK_DIAG_BY_FAMILY, bytes(8)) + message(SOCK_DIAG_BY_FAMILY, bytes(8), NLM_F_DUMP_INTR)
    _, cursor = walk(data)
    assert cursor.interrupted and not cursor.done


@pytest.mark.parametrize(
    ("data", "err"),
    [
        ((NETLINK / "error_enoent.bin").read_bytes(), errno.ENOENT),
        ((NETLINK / "done_ebusy.bin").read_bytes(), errno.EBUSY),
    ],
)
def test_error_replies_raise(data: bytes, err: int) -> None:
    with pytest.raises(NetlinkError) as caught:
        walk(data)
    assert caught.value.errno == err


@pytest.mark.parametrize("mlen", [0, 15, 1000])
def test_a_length_that_breaks_the_framing_is_a_parse_error_at_its_offset(mlen: int) -> None:
    good = message(SOCK_DIAG_BY_FAMILY, bytes(8))
    bad = NLMSGHDR.pack(mlen, SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, 1, 0) + bytes(8)
    with pytest.raises(ParseError) as caught:
        walk(good + bad)
    assert caught.value.line_no == len(good)


def test_a_done_without_payload_is_success() -> None:
    _, cursor = walk(NLMSGHDR.pack(16, NLMSG_DONE, NLM_F_MULTI, 1, 0))
    assert cursor.done
    _, clean = walk(NLMSGHDR.pack(20, NLMSG_DONE, NLM_F_MULTI, 1, 0) + ERRNO.pack(0))
    assert clean.done
