"""The thin curses loop: draw `render`'s lines, turn keys into `handle_key` calls, apply fetch results.

curses.wrapper restores the terminal (and leaves the alternate screen) on `q`, on Ctrl-C and on any
exception.
"""

from __future__ import annotations

import contextlib
import curses
import queue
import time
from dataclasses import replace

from tcpwatchd.top import state as st
from tcpwatchd.top.fetcher import Fetcher, Result, freeze
from tcpwatchd.top.render import Inputs, Line, Status, Style, context, render
from tcpwatchd.top.trends import Trends

TICK_MS = 200  # key wait: the "retrying in Ns" countdown and new results show within this

_KEYS = {
    curses.KEY_UP: "up",
    curses.KEY_DOWN: "down",
    curses.KEY_LEFT: "left",
    curses.KEY_RIGHT: "right",
    curses.KEY_PPAGE: "pgup",
    curses.KEY_NPAGE: "pgdn",
    curses.KEY_HOME: "home",
    curses.KEY_END: "end",
    curses.KEY_ENTER: "enter",
    curses.KEY_BACKSPACE: "backspace",
    curses.KEY_RESIZE: "resize",
}
_CHARS = {"\n": "enter", "\r": "enter", "\x1b": "esc", "\x7f": "backspace", "\x08": "backspace", "\t": "tab"}


def key_name(key: int | str) -> str:
    if isinstance(key, int):
        return _KEYS.get(key, "")
    return _CHARS.get(key, key)


class Screen:
    """The loop's mutable state: the last documents, the trends, the fetch status."""

    def __init__(self, fetcher: Fetcher, source: str, ascii_only: bool) -> None:
        self.fetcher = fetcher
        self.source = source
        self.ascii_only = ascii_only
        self.state = st.State()
        self.trends = Trends()
        self.inputs = Inputs(self.state, None, None, self.trends, Status(source), ascii_only)
        self.error = ""
        self.retry_at: float | None = None

    def queries(self) -> list[dict[str, str]]:
        list_query = st.query(replace(self.state, view=st.View.LIST))
        if self.state.view is st.View.DETAIL:
            return [st.query(self.state), list_query]
        return [list_query]

    def apply(self, r: Result) -> None:
        if r.document is None:
            self.error, self.retry_at = r.error, r.next_at
            return
        self.error, self.retry_at = "", None
        if r.query == freeze(st.query(replace(self.state, view=st.View.LIST))):
            self.trends.record(r.document)
            self.inputs = replace(self.inputs, doc=r.document)
        elif self.state.view is st.View.DETAIL and r.query == freeze(st.query(self.state)):
            self.inputs = replace(self.inputs, detail=r.document)

    def key(self, name: str, height: int) -> bool:
        """False when the key quits."""
        new, action = st.handle_key(self.state, name, context(self.inputs, height))
        if new.view is not self.state.view or new.page != self.state.page:
            self.inputs = replace(self.inputs, detail=None)
        self.state = new
        if action is st.Action.QUIT:
            return False
        self.fetcher.want(self.queries(), now=action is st.Action.REFETCH)
        return True

    def frame(self) -> Inputs:
        retry = None if self.retry_at is None else self.retry_at - time.monotonic()
        status = Status(self.source, self.error, retry)
        self.inputs = replace(self.inputs, state=self.state, status=status)
        return self.inputs


def _attrs() -> dict[Style, int]:
    banner = curses.A_BOLD
    if curses.has_colors():
        curses.use_default_colors()
        curses.init_pair(1, curses.COLOR_RED, -1)
        banner |= curses.color_pair(1)
    return {
        Style.NORMAL: curses.A_NORMAL,
        Style.TITLE: curses.A_BOLD,
        Style.HEADER: curses.A_REVERSE,
        Style.SELECTED: curses.A_REVERSE | curses.A_BOLD,
        Style.STALE: curses.A_DIM,
        Style.BANNER: banner,
        Style.FOOTER: curses.A_DIM,
    }


def _draw(win: curses.window, lines: list[Line], attrs: dict[Style, int]) -> None:
    win.erase()
    for y, ln in enumerate(lines):
        # Writing the bottom-right cell moves the cursor past the end (an error): the text is drawn anyway.
        with contextlib.suppress(curses.error):
            win.addstr(y, 0, ln.text, attrs[ln.style])
    win.refresh()


def run(win: curses.window, screen: Screen) -> int:
    with contextlib.suppress(curses.error):  # a terminal without an invisible cursor
        curses.curs_set(0)
    win.keypad(True)
    curses.set_escdelay(25)  # Esc answers at once instead of after ncurses' default 1 s
    win.timeout(TICK_MS)
    attrs = _attrs()
    screen.fetcher.want(screen.queries(), now=True)
    dirty = True
    while True:
        while True:
            try:
                screen.apply(screen.fetcher.results.get_nowait())
                dirty = True
            except queue.Empty:
                break
        height, width = win.getmaxyx()
        # Redraw on a change only (a sort of 5,000 rows costs ~15 ms), but each tick while the
        # "retrying in Ns" countdown shows.
        if dirty or screen.error:
            _draw(win, render(screen.frame(), width, height), attrs)
            dirty = False
        try:
            key = win.get_wch()
        except curses.error:
            continue  # no key within TICK_MS
        dirty = True
        name = key_name(key)
        if name and name != "resize" and not screen.key(name, height):
            return 0
