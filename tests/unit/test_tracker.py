from __future__ import annotations

from dataclasses import replace

from tcpwatchd.model import ProcessLabels, Socket, TcpState
from tcpwatchd.tracker import Tracker, connection_key
from tests.support.builders import owner, snapshot, sock

EST, CW, TW, LISTEN, FW1 = (
    TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.TIME_WAIT, TcpState.LISTEN, TcpState.FIN_WAIT1,
)  # fmt: skip


def test_first_poll_is_the_baseline_and_opens_nothing() -> None:
    t = Tracker()
    view = t.update(snapshot(0.0, [sock(EST), sock(LISTEN, remote=("0.0.0.0", 0), inode=5)]))
    assert view.poll == 1
    assert view.opened == ()
    assert all(tr.preexisting and tr.first_seen_poll == 1 for tr in view.tracks.values())


def test_new_connection_after_start_is_opened_and_counted_per_process() -> None:
    t = Tracker()
    t.update(snapshot(0.0, [sock(LISTEN, remote=("0.0.0.0", 0), inode=5)]))
    new = sock(EST, remote=("198.18.0.2", 5000), inode=7)
    view = t.update(
        snapshot(10.0, [sock(LISTEN, remote=("0.0.0.0", 0), inode=5), new], {7: owner("api", 42)})
    )
    assert [(o.remote_address, o.local_port, o.process, o.pid) for o in view.opened] == [
        ("198.18.0.2", 80, "api", 42)
    ]
    assert view.opened_totals == {ProcessLabels("api"): 1}
    track = view.track_of(new)
    assert not track.preexisting and track.first_seen == 10.0 and track.first_seen_poll == 2


def test_state_age_survives_polls_and_resets_on_change() -> None:
    t = Tracker()
    t.update(snapshot(0.0, [sock(EST, inode=9)]))
    t.update(snapshot(10.0, [sock(CW, inode=9)]))
    view = t.update(snapshot(20.0, [sock(CW, inode=9)]))
    track = view.track_of(sock(CW, inode=9))
    assert track.state is CW and track.state_since == 10.0 and track.first_seen == 0.0


def test_unchanged_tracks_are_reused_not_rebuilt() -> None:
    t = Tracker()
    a = t.update(snapshot(0.0, [sock(EST, inode=9)]))
    b = t.update(snapshot(10.0, [sock(EST, inode=9)]))
    key = connection_key(sock(EST, inode=9))
    assert a.tracks[key] is b.tracks[key]


def test_orphaned_socket_keeps_its_identity() -> None:
    """close() orphans the socket: its inode drops to 0 but it is the same connection, not a new one."""
    t = Tracker()
    t.update(snapshot(0.0, [sock(EST, inode=9)]))
    t.update(snapshot(10.0, [sock(EST, inode=9)]))
    view = t.update(snapshot(20.0, [sock(FW1, inode=0)]))
    assert view.opened == ()
    assert view.track_of(sock(FW1, inode=0)).first_seen == 0.0


def test_time_wait_then_reuse_of_the_four_tuple_is_a_new_connection() -> None:
    t = Tracker()
    t.update(snapshot(0.0, [sock(EST, inode=9)]))
    t.update(snapshot(10.0, [sock(TW, inode=0)]))
    view = t.update(snapshot(20.0, [sock(EST, inode=11)]))
    assert len(view.opened) == 1
    assert view.track_of(sock(EST, inode=11)).first_seen == 20.0


def test_unread_data_age_counts_data_not_the_fin() -> None:
    t = Tracker()
    t.update(snapshot(0.0, [sock(EST, inode=9, rqueue=0)]))
    v1 = t.update(snapshot(10.0, [sock(EST, inode=9, rqueue=100)]))
    v2 = t.update(snapshot(20.0, [sock(EST, inode=9, rqueue=50)]))
    assert v1.track_of(sock(inode=9)).unread_since == 10.0
    assert v2.track_of(sock(inode=9)).unread_since == 10.0
    # CLOSE_WAIT with Recv-Q 1 is the unread FIN alone: no data is queued.
    v3 = t.update(snapshot(30.0, [sock(CW, inode=9, rqueue=1)]))
    assert v3.track_of(sock(CW, inode=9)).unread_since is None
    # The accept backlog of a listener is not unread data.
    v4 = t.update(snapshot(40.0, [sock(LISTEN, remote=("0.0.0.0", 0), inode=3, rqueue=5)]))
    assert v4.track_of(sock(LISTEN, remote=("0.0.0.0", 0), inode=3)).unread_since is None


def test_a_quiet_peer_is_forgotten_after_the_history_window() -> None:
    t = Tracker(history_seconds=25.0)
    listen = sock(LISTEN, remote=("0.0.0.0", 0), inode=5)
    t.update(snapshot(0.0, [listen]))
    t.update(snapshot(10.0, [listen, sock(EST, remote=("198.18.0.2", 1), inode=1)]))
    t.update(snapshot(20.0, [listen, sock(EST, remote=("198.18.0.3", 2), inode=2)]))
    view = t.update(snapshot(40.0, [listen]))
    assert set(view.openings.peers) == {(0, "198.18.0.3", 80)}  # (netns, peer, service port)
    assert view.closed == 1  # port 1 closed in the previous poll


def test_listeners_sharing_an_address_are_distinct() -> None:
    """SO_REUSEPORT listeners share the local address; their inodes tell them apart."""
    t = Tracker()
    any_ = ("0.0.0.0", 0)
    view = t.update(snapshot(0.0, [sock(LISTEN, remote=any_, inode=1), sock(LISTEN, remote=any_, inode=2)]))
    assert len(view.tracks) == 2


def test_unowned_opening_counts_under_the_listener_of_its_port() -> None:
    """Not yet accepted (inode 0): the peer connected to whoever listens on the port."""
    t = Tracker()
    listen = sock(LISTEN, remote=("0.0.0.0", 0), inode=5)
    t.update(snapshot(0.0, [listen], {5: owner("api", 7)}))
    pending = sock(EST, remote=("198.18.0.2", 5000), inode=0)
    client = sock(EST, local=("127.0.0.1", 41000), remote=("127.0.0.1", 9999), inode=0)
    view = t.update(snapshot(10.0, [listen, pending, client], {5: owner("api", 7)}))
    assert sorted((o.process, o.pid) for o in view.opened) == [("", 0), ("api", 7)]
    assert view.opened_totals == {ProcessLabels("api"): 1, ProcessLabels(""): 1}


def _cookie_sock(cookie: int, state: TcpState = EST, remote_port: int = 40000, inode: int = 9) -> Socket:
    return replace(sock(state, remote=("198.18.0.2", remote_port), inode=inode), cookie=cookie)


def test_an_unchanged_poll_reuses_every_track_without_a_pass() -> None:
    t = Tracker()
    socks = [_cookie_sock(1), _cookie_sock(2, remote_port=40001, inode=10)]
    a = t.update(snapshot(0.0, socks))
    b = t.update(snapshot(10.0, socks))
    assert b.unchanged and not a.unchanged
    assert dict(a.tracks) == dict(b.tracks) and b.opened == () and b.closed == 0
    c = t.update(snapshot(20.0, [socks[0], _cookie_sock(2, CW, remote_port=40001, inode=10)]))
    assert not c.unchanged and c.tracks[2].state is CW and c.tracks[2].state_since == 20.0


def test_first_poll_tracks_are_shared_per_state() -> None:
    view = Tracker().update(snapshot(0.0, [_cookie_sock(i, remote_port=40000 + i) for i in range(1, 50)]))
    assert len({id(track) for track in view.tracks.values()}) == 1


def test_an_accepted_handshake_continues_the_request_sockets_track() -> None:
    """The kernel's request socket and the accepted socket have different cookies: one connection."""
    t = Tracker()
    t.update(snapshot(0.0, []))
    t.update(snapshot(10.0, [_cookie_sock(7, TcpState.SYN_RECV, inode=0)]))
    view = t.update(snapshot(20.0, [_cookie_sock(8, EST, inode=12)]))
    assert view.opened == ()
    assert view.opened_totals == {ProcessLabels(""): 1}
    assert view.tracks[8].first_seen == 10.0 and view.tracks[8].state_since == 20.0
