"""A "pod" whose client crashed and came back: one idle connection to its server on port 48000, and a newer
one from the same peer address once a line arrives on stdin (the old one is then a phantom).
Prints READY, then AGAIN after the second connection; lives <= 120 s."""

from __future__ import annotations

import socket
import sys
import time

PORT = 48000
server = socket.socket()
server.bind(("127.0.0.1", PORT))
server.listen()
first = socket.create_connection(("127.0.0.1", PORT))
keep = [server, first, server.accept()[0]]
print("READY", flush=True)
sys.stdin.readline()
second = socket.create_connection(("127.0.0.1", PORT))
keep += [second, server.accept()[0]]
print("AGAIN", flush=True)
time.sleep(120)
