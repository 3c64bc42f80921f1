"""`tcpwatchd top`: the live view on a terminal, or one plain frame on a pipe or a dumb terminal."""

from __future__ import annotations

import curses
import getpass
import locale
import os
import sys
from typing import TextIO

from tcpwatchd.config import Config
from tcpwatchd.top.fetcher import Fetcher
from tcpwatchd.top.render import Inputs, Status, render_plain
from tcpwatchd.top.source import (
    API_PATH,
    PASSWORD_ENV,
    DocumentSource,
    HttpSource,
    LocalSource,
    SourceError,
    default_url,
)
from tcpwatchd.top.state import State, query
from tcpwatchd.top.trends import Trends

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
PLAIN_WIDTH = 120  # a pipe has no width: COLUMNS, else the terminal on stderr, else this


def wants_plain(out: TextIO) -> bool:
    """A pipe, a dumb terminal or no terminal to read keys from: print one frame instead of the live view."""
    term = os.environ.get("TERM", "")
    return term in ("", "dumb", "unknown") or not out.isatty() or not sys.stdin.isatty()


def plain_width() -> int:
    try:
        return max(int(os.environ["COLUMNS"]), 20)
    except (KeyError, ValueError):
        pass
    try:
        return max(os.get_terminal_size(sys.stderr.fileno()).columns, 20)
    except OSError:
        return PLAIN_WIDTH


def is_utf8(encoding: str | None) -> bool:
    return (encoding or "").lower().replace("-", "").replace("_", "") == "utf8"


def make_source(cfg: Config, url: str | None, local: bool, user: str, ca_file: str) -> DocumentSource:
    """The source the flags ask for; SourceError with the reason when it cannot be built."""
    if local:
        source = LocalSource(cfg)
        source.check()
        return source
    password = ""
    if user:
        password = os.environ.get(PASSWORD_ENV, "")
        if not password and sys.stdin.isatty():
            password = getpass.getpass(f"password for {user}: ")
        if not password:
            raise SourceError(f"--user {user} needs a password: set {PASSWORD_ENV}")
    return HttpSource(url or default_url(cfg), user=user, password=password, ca_file=ca_file)


def plain_frame(source: DocumentSource, label: str, out: TextIO, err: TextIO) -> int:
    result = Fetcher(source).fetch_once(query(State()))
    if result.document is None:
        print(f"tcpwatchd top: {result.error}", file=err)
        return EXIT_UNREACHABLE
    trends = Trends()
    trends.record(result.document)
    inp = Inputs(State(), result.document, None, trends, Status(label), not is_utf8(out.encoding))
    out.write(render_plain(inp, plain_width()))
    out.flush()
    return EXIT_OK


def top_command(
    cfg: Config,
    url: str | None = None,
    local: bool = False,
    interval: float = 0.0,
    user: str = "",
    ca_file: str = "",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        source = make_source(cfg, url, local, user, ca_file)
    except SourceError as e:
        print(f"tcpwatchd top: {e}", file=err)
        return EXIT_USAGE
    label = "local poll" if local else getattr(source, "url", "").removesuffix(API_PATH)
    if wants_plain(out):
        return plain_frame(source, label, out, err)
    locale.setlocale(locale.LC_ALL, "")  # curses draws UTF-8 only under a UTF-8 locale
    ascii_only = not is_utf8(locale.getpreferredencoding(False))
    from tcpwatchd.top.terminal import Screen, run

    fetcher = Fetcher(source, interval=interval)
    fetcher.start()
    try:
        return curses.wrapper(run, Screen(fetcher, label, ascii_only))
    except KeyboardInterrupt:
        return EXIT_OK
    except curses.error as e:  # a TERM without a terminfo entry, a terminal too odd for curses
        print(f"tcpwatchd top: cannot drive this terminal ({e}); printing one frame", file=err)
        return plain_frame(source, label, out, err)
    finally:
        fetcher.stop()
