"""History survives what is not news about connections: a poll whose socket sources all failed, and a
change of socket source (cookies from sock_diag, 4-tuples from /proc). Each of these failed before:
every open connection counted as opened again and CLOSE_WAIT ages restarted."""

from __future__ import annotations

from dataclasses import replace

from tcpwatchd.model import SourceStatus, TcpState
from tcpwatchd.tracker import Tracker
from tests.support.builders import owner, snapshot, sock

EST, CW, LISTEN = TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.LISTEN
API = {5: owner("api", 7), 6: owner("api", 7), 8: owner("api", 7)}


def _table(cookies: bool) -> list:  # type: ignore[type-arg]
    socks = [
        sock(LISTEN, remote=("0.0.0.0", 0), inode=5),
        sock(EST, remote=("198.18.0.2", 5000), inode=6),
        sock(CW, remote=("198.18.0.3", 5001), inode=8),
    ]
    return [replace(s, cookie=100 + i) for i, s in enumerate(socks)] if cookies else socks


def test_a_failed_poll_is_not_consumed() -> None:
    t = Tracker()
    t.update(snapshot(0.0, _table(True), API))
    failed = replace(snapshot(10.0, [], API), sources=(SourceStatus("sockdiag", False, 0.0, "EMFILE"),))
    lost = t.update(failed)
    assert not lost.consumed and lost.closed == 0 and len(lost.tracks) == 3
    after = t.update(snapshot(20.0, _table(True), API))
    assert after.opened == () and after.closed == 0 and after.opened_totals == {}
    [cw] = [tr for tr in after.tracks.values() if tr.state == CW]
    assert cw.state_since == 0.0  # the CLOSE_WAIT age goes on from the first poll


def test_a_failed_first_poll_does_not_make_the_second_one_open_everything() -> None:
    t = Tracker()
    t.update(replace(snapshot(0.0, [], API), sources=(SourceStatus("procnet", False, 0.0, "EACCES"),)))
    view = t.update(snapshot(10.0, _table(True), API))
    assert view.opened == () and all(tr.preexisting for tr in view.tracks.values())


def test_a_change_of_source_keeps_every_connection() -> None:
    t = Tracker()
    t.update(snapshot(0.0, _table(True), API))  # sock_diag: cookies
    procnet = t.update(replace(snapshot(10.0, _table(False), API), source="procnet"))
    assert procnet.opened == () and procnet.closed == 0
    back = t.update(snapshot(20.0, _table(True), API))
    assert back.opened == () and back.closed == 0 and back.opened_totals == {}
    [cw] = [tr for tr in back.tracks.values() if tr.state == CW]
    assert cw.state_since == 0.0
