"""`tcpwatchd top`: a live terminal view of the daemon's JSON API (docs/api.md, version 1).

Layers, each testable without a terminal: `document` (API JSON → typed), `model` (rows, sorting,
filtering), `trends` (history over polls), `state` (keys → view state), `render`/`detail`/`frame`
(→ lines of a given width and height, every string sanitized by `text`); at the edges `source`
(HTTP or local poll), `fetcher` (one reused thread), `terminal` (curses) and `command` (the CLI).
"""
