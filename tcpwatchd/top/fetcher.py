"""One background thread, created once, that fetches the screen's queries at the daemon's poll rhythm.

The terminal loop never blocks on the network: a daemon that hangs costs the fetch timeout in this
thread, while keys keep working. Results go through a small queue; the newest always wins.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tcpwatchd.top.document import Document, DocumentError, parse_document
from tcpwatchd.top.source import DocumentSource, SourceError

Query = tuple[tuple[str, str], ...]  # sorted items: hashable and comparable
MIN_DELAY = 0.5  # never more than two fetches a second, whatever the clocks say
MAX_RETRY = 5.0


def freeze(query: dict[str, str]) -> Query:
    return tuple(sorted(query.items()))


@dataclass(frozen=True, slots=True)
class Result:
    query: Query
    document: Document | None
    error: str  # "" on success
    next_at: float  # monotonic time of the next attempt (the banner's "retrying in")


def next_delay(doc: Document | None, override: float, now: float) -> float:
    """Seconds until the daemon's next poll should be readable (wall clock `now`).

    With `--interval` that interval; else the poll's own interval, aimed just after the daemon's next
    poll ends (taken_at + interval + duration). A clock that disagrees falls back to the plain interval.

    >>> round(next_delay(None, 2.0, 0.0), 1)
    2.0
    """
    if override > 0:
        return max(override, MIN_DELAY)
    if doc is None or doc.poll.interval_seconds <= 0:
        return MAX_RETRY
    p = doc.poll
    ready = p.taken_at + p.interval_seconds + p.duration_seconds + 0.25
    delay = ready - now
    if not 0 < delay <= p.interval_seconds + p.duration_seconds + 0.25:
        delay = p.interval_seconds
    return max(delay, MIN_DELAY)


class Fetcher:
    def __init__(
        self, source: DocumentSource, interval: float = 0.0, wall: Callable[[], float] = time.time
    ) -> None:
        self._source = source
        self._interval = interval
        self._wall = wall
        self._queries: Sequence[Query] = ()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.results: queue.Queue[Result] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="tcpwatchd-top-fetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Asks the thread to end; it is a daemon thread, so a fetch stuck in its timeout never holds exit."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=0.2)

    def want(self, queries: Sequence[dict[str, str]], now: bool = False) -> None:
        """The queries the screen needs from now on; `now` fetches them at once (a key changed them)."""
        with self._lock:
            self._queries = [freeze(q) for q in queries]
        if now:
            self._wake.set()

    def fetch_once(self, query: dict[str, str]) -> Result:
        """One fetch on the caller's thread (the plain, one-frame mode)."""
        return self._fetch(freeze(query))

    def _fetch(self, q: Query) -> Result:
        try:
            doc: Document | None = parse_document(self._source.fetch(dict(q)))
            error = ""
        except SourceError as e:
            doc, error = None, str(e)
        except DocumentError as e:
            doc, error = None, f"daemon sent a document top cannot read: {e}"
        delay = next_delay(doc, self._interval, self._wall()) if doc else min(self._retry(), MAX_RETRY)
        return Result(q, doc, error, time.monotonic() + delay)

    def _retry(self) -> float:
        return max(self._interval, 1.0) if self._interval > 0 else MAX_RETRY

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                queries = list(self._queries)
            next_at = time.monotonic() + MAX_RETRY
            for q in queries:
                result = self._fetch(q)
                next_at = min(next_at, result.next_at) if result.document else result.next_at
                self._put(result)
            self._wake.wait(timeout=max(next_at - time.monotonic(), 0.0) if queries else None)
            self._wake.clear()

    def _put(self, result: Result) -> None:
        while True:
            try:
                self.results.put_nowait(result)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.results.get_nowait()  # the screen is behind: drop the oldest result
