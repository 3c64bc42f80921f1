"""Short connections on loopback, as fast as one process can: connect, send, close (a crash-looping client).

    python3 close_loops.py COUNT PORT [SOURCES] [client|server]

Each cycle connects from 127.0.x.y (SOURCES distinct source addresses, in turn), sends 5 bytes that
the server reads, then the named side closes first. Prints READY when listening, DONE COUNT at the end.
"""

from __future__ import annotations

import socket
import sys


def source(i: int, sources: int) -> str:
    n = i % sources + 1  # 127.0.0.1 upwards, all on lo
    return f"127.0.{n >> 8 & 255}.{n & 255}"


def main() -> int:
    count, port = int(sys.argv[1]), int(sys.argv[2])
    sources = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    server_first = len(sys.argv) > 4 and sys.argv[4] == "server"
    with socket.create_server(("127.0.0.1", port), backlog=128) as srv:
        print("READY", flush=True)
        for i in range(count):
            client = socket.socket()
            client.bind((source(i, sources), 0))
            client.connect(("127.0.0.1", port))
            accepted, _ = srv.accept()
            client.sendall(b"PING\n")
            accepted.recv(16)
            first, second = (accepted, client) if server_first else (client, accepted)
            first.close()
            second.close()
    print(f"DONE {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
