"""Names itself with hostile bytes (given as hex) and listens on loopback; prints READY; lives <= 120 s."""

from __future__ import annotations

import ctypes
import socket
import sys
import time

PR_SET_NAME = 15

name = bytes.fromhex(sys.argv[1])
ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("READY", s.getsockname()[1], flush=True)
time.sleep(120)
