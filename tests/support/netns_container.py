"""A "container" for the namespace tests: a loopback server and its client on fixed ports (so two namespaces
hold the same 4-tuple), and with `close_wait` one connection the server never closes.
Prints READY; lives <= 120 s."""

from __future__ import annotations

import socket
import sys
import time

PORT = 47000
server = socket.socket()
server.bind(("127.0.0.1", PORT))
server.listen()
client = socket.socket()
client.bind(("127.0.0.1", PORT + 1))
client.connect(("127.0.0.1", PORT))
keep = [server, client, server.accept()[0]]
if "close_wait" in sys.argv:
    leaving = socket.socket()
    leaving.bind(("127.0.0.1", PORT + 2))
    leaving.connect(("127.0.0.1", PORT))
    keep.append(server.accept()[0])  # never closed: CLOSE_WAIT once the peer closes
    leaving.close()  # FIN_WAIT2 until the kernel times it out
print("READY", flush=True)
time.sleep(120)
